import CSodium

/// Identifies one running client for the life of its process, across reconnects and re-keys,
/// so that a conversation can resume (and be told apart from a new peer) after a reconnect.
public struct InstanceID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 16
    /// All zeros: "no instance" in a hello.
    public static let none = InstanceID(unchecked: [UInt8](repeating: 0, count: byteCount))

    public let bytes: [UInt8]

    private init(unchecked bytes: [UInt8]) {
        self.bytes = bytes
    }

    public init?(_ bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = Array(bytes)
    }

    /// A fresh random identifier (never `none`).
    public static func random(entropy: some EntropySource) -> InstanceID {
        // Bounded: a 128-bit draw is all zeros with probability 2^-128.
        for _ in 0..<4 {
            let candidate = InstanceID(unchecked: entropy.publicBytes(count: byteCount))
            if candidate != .none { return candidate }
        }
        preconditionFailure("entropy source returns only zeros")
    }

    public static func < (lhs: InstanceID, rhs: InstanceID) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    public var description: String { Hex.encode(bytes.prefix(4)) }
}

/// Why a handshake message was refused. The frame is dropped; the session carries on (failures
/// that end a session are `AuthenticationFailure`s).
public enum HandshakeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The KEY_EXCHANGE or PAKE has no key, a key of the wrong size, or a malformed hello payload.
    case malformedHello
    /// The hello speaks a protocol version we do not.
    case unsupportedVersion(UInt8)
    /// A hello older than the peer's current one (a delayed duplicate or a replay).
    case staleHello
    /// A hello from a peer instance that was already replaced.
    case retiredInstance
    /// A PAKE share that is not a valid ristretto255 element (or is the identity).
    case invalidShare
    /// The key confirmation is malformed, did not open, or confirmed a different transcript: the
    /// two sides do not hold the same keys (a man in the middle, or a corrupted handshake).
    case confirmationFailed
    /// A key confirmation for another run of the handshake (a delayed copy from an earlier one).
    case staleConfirmation
    /// Our own key confirmation, sent back to us (by a relay).
    case reflectedConfirmation
    /// The hello claims more than we ever sent, or an ack acknowledges what was never sent.
    case inconsistentResume
    /// A handshake message arrived when none was expected.
    case unexpected

    public var description: String {
        switch self {
        case .malformedHello: "malformed hello (KEY_EXCHANGE or PAKE)"
        case let .unsupportedVersion(version): "unsupported protocol version \(version)"
        case .staleHello: "stale hello"
        case .retiredInstance: "hello from a replaced peer instance"
        case .invalidShare: "PAKE share is not a valid ristretto255 element"
        case .confirmationFailed: "key confirmation failed"
        case .staleConfirmation: "key confirmation for another handshake run"
        case .reflectedConfirmation: "our own key confirmation, reflected"
        case .inconsistentResume: "the peer claims messages never sent"
        case .unexpected: "unexpected handshake message"
        }
    }
}

/// The session protocol (docs/PROTOCOL.md, "Session layer").
public enum SessionProtocol {
    /// The version byte that leads every hello; a peer with another one is refused
    /// (`SessionEndReason.incompatiblePeer`).
    public static let version: UInt8 = HandshakeHello.version
}

/// Which opening a KEY_CONFIRM pairs: the opener's instance and that opening's epoch (an
/// instance's epochs only grow, so the two name one opening).
struct HelloReference: Hashable {
    static let byteCount = InstanceID.byteCount + 8

    let instance: InstanceID
    let epoch: UInt64

    func append(to bytes: inout [UInt8]) {
        bytes.append(contentsOf: instance.bytes)
        BigEndian.append(epoch, to: &bytes)
    }
}

/// The public opening of a handshake, the same in both modes: the sender's 32-byte key and its
/// hello.
///
/// Wire form: `key` = the sender's ephemeral X25519 public key (kind KEY_EXCHANGE, no password)
/// or its CPace share Y (kind PAKE, with a password); `payload` = the hello: version (1 byte, = 3)
/// ‖ instance ID (16) ‖ handshake epoch (8, big-endian, grows with every opening) ‖ the peer
/// instance whose conversation the sender remembers (16; zeros: none) ‖ the next sequence number
/// the sender expects from that peer (8; 1 when none) ‖ the number of retained secrets (1, at
/// most 4) ‖ their ids (16 each, newest first). In PAKE the hello is CPace's associated data, so
/// ISK authenticates it; without a password the transcript hash covers it.
struct HandshakeHello: Hashable {
    static let version: UInt8 = 3
    static let keyByteCount = 32
    /// The payload without the retained-secret ids.
    static let fixedByteCount = 1 + InstanceID.byteCount + 8 + InstanceID.byteCount + 8 + 1
    static let payloadByteCountMax = fixedByteCount + RetainedSecret.idsMax * RetainedSecret.idByteCount

    /// `.keyExchange` or `.pake`.
    var kind: SignalKind
    var key: [UInt8]
    var instance: InstanceID
    var epoch: UInt64
    /// The conversation the sender resumes (`.none`: it remembers none).
    var knownPeer: InstanceID
    /// The next sequence number the sender expects from `knownPeer` (1 when none).
    var nextExpected: UInt64
    /// The ids of the secrets the sender keeps from earlier handshakes, newest first (at most 4):
    /// a handshake that both sides can key with one of them needs no password and proves
    /// continuity (`KeyContinuity`).
    var retainedIDs: [[UInt8]]

    init(kind: SignalKind, key: [UInt8], instance: InstanceID, epoch: UInt64, knownPeer: InstanceID,
         nextExpected: UInt64, retainedIDs: [[UInt8]]) {
        precondition(kind == .keyExchange || kind == .pake)
        precondition(key.count == Self.keyByteCount && nextExpected >= 1)
        precondition(retainedIDs.count <= RetainedSecret.idsMax)
        self.kind = kind
        self.key = key
        self.instance = instance
        self.epoch = epoch
        self.knownPeer = knownPeer
        self.nextExpected = nextExpected
        self.retainedIDs = retainedIDs
    }

    /// The hello payload: what CPace takes as AD before the share exists.
    static func payload(
        instance: InstanceID, epoch: UInt64, knownPeer: InstanceID, nextExpected: UInt64, retainedIDs: [[UInt8]]
    ) -> [UInt8] {
        var bytes = [version]
        bytes.reserveCapacity(fixedByteCount + retainedIDs.count * RetainedSecret.idByteCount)
        bytes.append(contentsOf: instance.bytes)
        BigEndian.append(epoch, to: &bytes)
        bytes.append(contentsOf: knownPeer.bytes)
        BigEndian.append(nextExpected, to: &bytes)
        bytes.append(UInt8(retainedIDs.count))
        for id in retainedIDs { bytes.append(contentsOf: id) }
        return bytes
    }

    var payload: [UInt8] {
        Self.payload(
            instance: instance, epoch: epoch, knownPeer: knownPeer, nextExpected: nextExpected,
            retainedIDs: retainedIDs)
    }

    var signal: Signal {
        Signal(kind: kind, payload: payload, key: key)
    }

    var reference: HelloReference {
        HelloReference(instance: instance, epoch: epoch)
    }

    /// The party as the safety number sees it.
    var safetyNumberParty: SafetyNumber.Party {
        SafetyNumber.Party(key: key, hello: payload)
    }

    init(signal: Signal) throws(HandshakeError) {
        precondition(signal.kind == .keyExchange || signal.kind == .pake)
        guard let key = signal.key, key.count == Self.keyByteCount, let payload = signal.payload,
              let version = payload.first else { throw .malformedHello }
        guard version == Self.version else { throw .unsupportedVersion(version) }
        let instanceRange = 1..<(1 + InstanceID.byteCount)
        let knownRange = (instanceRange.upperBound + 8)..<(instanceRange.upperBound + 8 + InstanceID.byteCount)
        let countIndex = knownRange.upperBound + 8
        guard payload.count >= Self.fixedByteCount,
              case let count = Int(payload[countIndex]), count <= RetainedSecret.idsMax,
              payload.count == Self.fixedByteCount + count * RetainedSecret.idByteCount,
              let instance = InstanceID(payload[instanceRange]), instance != .none,
              let knownPeer = InstanceID(payload[knownRange])
        else { throw .malformedHello }
        let nextExpected = BigEndian.uint64(payload, at: knownRange.upperBound)
        guard nextExpected >= 1, knownPeer != .none || nextExpected == 1 else { throw .malformedHello }
        self.kind = signal.kind
        self.key = key
        self.instance = instance
        self.epoch = BigEndian.uint64(payload, at: instanceRange.upperBound)
        self.knownPeer = knownPeer
        self.nextExpected = nextExpected
        self.retainedIDs = (0..<count).map { index in
            let start = Self.fixedByteCount + index * RetainedSecret.idByteCount
            return Array(payload[start..<(start + RetainedSecret.idByteCount)])
        }
    }
}

/// The transcript hash binds the session keys of a handshake without a password to everything
/// both sides said in it.
enum Transcript {
    static let context = Array("securechat/v3/transcript".utf8)

    /// BLAKE2b-256 over the context, the room and both (key, hello), low side first (lengths 2
    /// bytes each).
    static func hash(room: RoomCode, low: HandshakeHello, high: HandshakeHello) -> [UInt8] {
        var input = context
        appendLengthPrefixed(Array(room.value.utf8), to: &input)
        for hello in [low, high] {
            appendLengthPrefixed(hello.key, to: &input)
            appendLengthPrefixed(hello.payload, to: &input)
        }
        return Digest.blake2b(input, outputByteCount: 32)
    }

    private static func appendLengthPrefixed(_ bytes: [UInt8], to output: inout [UInt8]) {
        precondition(bytes.count <= UInt16.max)
        output.append(UInt8(bytes.count >> 8))
        output.append(UInt8(bytes.count & 0xFF))
        output.append(contentsOf: bytes)
    }
}
/// Hash functions over public data.
public enum Digest {
    /// Unkeyed BLAKE2b (`crypto_generichash`) with a 16...64-byte output.
    public static func blake2b(_ input: [UInt8], outputByteCount: Int) -> [UInt8] {
        precondition((16...64).contains(outputByteCount))
        Sodium.ensureInitialized()
        var output = [UInt8](repeating: 0, count: outputByteCount)
        let status = output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { inp in
                crypto_generichash(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), outputByteCount,
                    inp.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(inp.count), nil, 0)
            }
        }
        precondition(status == 0)
        return output
    }
}

/// Big-endian integer helpers for the binary payloads.
enum BigEndian {
    static func uint64(_ bytes: some Collection<UInt8>, at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        var index = bytes.index(bytes.startIndex, offsetBy: offset)
        for _ in 0..<8 {
            value = value << 8 | UInt64(bytes[index])
            index = bytes.index(after: index)
        }
        return value
    }

    static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    static func append(_ value: UInt16, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
