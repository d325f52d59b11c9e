import CSodium

/// Identifies one running client for the life of its process, across reconnects and re-keys,
/// so that a conversation can resume (and be told apart from a new peer) after a reconnect.
public struct InstanceID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 16
    /// All zeros: "no instance" in a key confirmation.
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

/// Why a handshake message was refused.
public enum HandshakeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The KEY_EXCHANGE has no key, a key of the wrong size, or a malformed hello payload.
    case malformedKeyExchange
    /// The KEY_EXCHANGE speaks a protocol version we do not.
    case unsupportedVersion(UInt8)
    /// A KEY_EXCHANGE older than the peer's current one (a delayed duplicate or a replay).
    case staleKeyExchange
    /// A KEY_EXCHANGE from a peer instance that was already replaced.
    case retiredInstance
    /// The key confirmation did not open, or confirmed a different transcript: the two sides do
    /// not hold the same keys (a man in the middle, or a corrupted handshake).
    case confirmationFailed
    /// The key confirmation claims more than we ever sent.
    case inconsistentResume
    /// A handshake message arrived when none was expected.
    case unexpected

    public var description: String {
        switch self {
        case .malformedKeyExchange: "malformed KEY_EXCHANGE"
        case let .unsupportedVersion(version): "unsupported protocol version \(version)"
        case .staleKeyExchange: "stale KEY_EXCHANGE"
        case .retiredInstance: "KEY_EXCHANGE from a replaced peer instance"
        case .confirmationFailed: "key confirmation failed"
        case .inconsistentResume: "key confirmation claims messages never sent"
        case .unexpected: "unexpected handshake message"
        }
    }
}

/// The public part of a KEY_EXCHANGE: the sender's ephemeral key and its hello.
///
/// Wire form: `key` = the 32-byte X25519 public key; `payload` = version (1 byte, = 1) ||
/// instance ID (16 bytes) || handshake epoch (8 bytes, big-endian, grows with every new key pair).
struct KeyExchangeHello: Hashable {
    static let version: UInt8 = 1
    static let payloadByteCount = 1 + InstanceID.byteCount + 8

    var key: PublicKey
    var instance: InstanceID
    var epoch: UInt64

    var payload: [UInt8] {
        var bytes = [Self.version]
        bytes.append(contentsOf: instance.bytes)
        withUnsafeBytes(of: epoch.bigEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    var signal: Signal {
        Signal(kind: .keyExchange, payload: payload, key: key.bytes)
    }

    init(key: PublicKey, instance: InstanceID, epoch: UInt64) {
        self.key = key
        self.instance = instance
        self.epoch = epoch
    }

    init(signal: Signal) throws(HandshakeError) {
        guard let keyBytes = signal.key, let key = try? PublicKey(keyBytes), let payload = signal.payload,
              let version = payload.first else { throw .malformedKeyExchange }
        guard version == Self.version else { throw .unsupportedVersion(version) }
        guard payload.count == Self.payloadByteCount,
              let instance = InstanceID(payload[1..<(1 + InstanceID.byteCount)]), instance != .none
        else { throw .malformedKeyExchange }
        self.key = key
        self.instance = instance
        self.epoch = BigEndian.uint64(payload, at: 1 + InstanceID.byteCount)
    }
}

/// The transcript hash binds a session's keys to everything both sides said in the handshake.
enum Transcript {
    static let context = Array("securechat/v1/transcript".utf8)

    /// BLAKE2b-256 over the context, the room and both hellos, low side first.
    static func hash(room: RoomCode, low: KeyExchangeHello, high: KeyExchangeHello) -> [UInt8] {
        var input = context
        appendLengthPrefixed(Array(room.value.utf8), to: &input)
        for hello in [low, high] {
            appendLengthPrefixed(hello.key.bytes, to: &input)
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
