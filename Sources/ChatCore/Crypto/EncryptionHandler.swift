import CSodium

/// XSalsa20-Poly1305 for one session, over a crypto_box precomputed key (`crypto_box_beforenm`).
///
/// Nonces are never random and never repeat: each is built from a purpose, the sender's
/// direction and a per-direction counter (`Nonce`), so the two directions and the three kinds of
/// sealed data (chat records, key confirmations, acknowledgements) can never collide, and a
/// counter only moves forward. Opening enforces order: a sequence number below the next expected
/// one is a replay, one above it is out of order; both are refused before any decryption.
public final class EncryptionHandler {
    /// What a sealed box carries; part of every nonce, so the three spaces never overlap.
    public enum Purpose: UInt8, Sendable {
        case record = 1
        case confirm = 2
        case ack = 3
    }

    /// Which side sealed a box. The side whose public key sorts first is `low`.
    public enum Side: UInt8, Sendable {
        case low = 0
        case high = 1

        public var other: Side { self == .low ? .high : .low }
    }

    private let key: SecureBytes
    /// Our side; we seal as `localSide` and open as `localSide.other`.
    public let localSide: Side
    /// The sequence number the next sealed record must have at least.
    public private(set) var nextSendSequence: UInt64
    /// The sequence number the next opened record must have.
    public private(set) var nextReceiveSequence: UInt64
    private var nextAckCounter: UInt64 = 1
    /// A planted bug (PlantedBugs.skipCounterCheck): open records whatever their number.
    var skipsCounterCheck = false
    private var lastOpenedAckCounter: UInt64 = 0

    /// - Parameters:
    ///   - boxKey: the 32-byte precomputed key; the handler takes ownership and wipes it.
    ///   - localSide: which direction we seal in.
    ///   - nextSendSequence, nextReceiveSequence: where the counters start (sessions that resume
    ///     a conversation after a reconnect continue its numbering under the new key).
    public init(boxKey: SecureBytes, localSide: Side, nextSendSequence: UInt64 = 1, nextReceiveSequence: UInt64 = 1) {
        precondition(boxKey.count == SodiumSizes.boxBeforeNM, "crypto_box precomputed keys are 32 bytes")
        precondition(nextSendSequence >= 1 && nextReceiveSequence >= 1, "sequence numbers start at 1")
        self.key = boxKey
        self.localSide = localSide
        self.nextSendSequence = nextSendSequence
        self.nextReceiveSequence = nextReceiveSequence
    }

    deinit {
        key.wipe()
    }

    /// True once `wipe()` has run.
    public var isWiped: Bool { key.isWiped }

    /// Wipe the key. Every later seal or open fails with `noKeys`.
    public func wipe() {
        key.wipe()
    }

    /// Move both counters to where a resumed conversation continues. Only forward, only before use.
    public func resume(nextSendSequence send: UInt64, nextReceiveSequence receive: UInt64) {
        precondition(send >= 1 && receive >= 1)
        nextSendSequence = send
        nextReceiveSequence = receive
    }

    // MARK: Chat records

    /// Seal a chat record with sequence number `sequence` (at least `nextSendSequence`).
    public func sealRecord(sequence: UInt64, _ plaintext: UnsafeRawBufferPointer) throws(CryptoError) -> [UInt8] {
        precondition(sequence >= nextSendSequence, "a record sequence number may never be reused")
        guard sequence < UInt64.max else { throw .sequenceExhausted }
        let sealed = try seal(purpose: .record, side: localSide, counter: sequence, plaintext)
        nextSendSequence = sequence + 1
        return sealed
    }

    /// Open the record `sequence`, which must be exactly the next expected one.
    public func openRecord(sequence: UInt64, _ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        guard sequence >= nextReceiveSequence || skipsCounterCheck else {
            throw .replayed(sequence: sequence, expected: nextReceiveSequence)
        }
        guard sequence == nextReceiveSequence || skipsCounterCheck else {
            throw .outOfOrder(sequence: sequence, expected: nextReceiveSequence)
        }
        let plaintext = try open(purpose: .record, side: localSide.other, counter: sequence, ciphertext)
        nextReceiveSequence = sequence + 1
        return plaintext
    }

    // MARK: Key confirmation

    /// Seal our key confirmation (once per session: counter 0 of the confirm space).
    public func sealConfirmation(_ body: UnsafeRawBufferPointer) throws(CryptoError) -> [UInt8] {
        try seal(purpose: .confirm, side: localSide, counter: 0, body)
    }

    /// Open the peer's key confirmation. Our own, reflected back, fails: its nonce is ours.
    public func openConfirmation(_ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        try open(purpose: .confirm, side: localSide.other, counter: 0, ciphertext)
    }

    // MARK: Acknowledgements

    /// Seal an acknowledgement; returns its counter and box. Each ack uses a fresh counter.
    public func sealAck(_ body: UnsafeRawBufferPointer) throws(CryptoError) -> (counter: UInt64, box: [UInt8]) {
        let counter = nextAckCounter
        guard counter < UInt64.max else { throw .sequenceExhausted }
        let sealed = try seal(purpose: .ack, side: localSide, counter: counter, body)
        nextAckCounter += 1
        return (counter, sealed)
    }

    /// Open a peer acknowledgement. Acks older than the newest one opened are replays.
    public func openAck(counter: UInt64, _ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        guard counter > lastOpenedAckCounter else {
            throw .replayed(sequence: counter, expected: lastOpenedAckCounter + 1)
        }
        let body = try open(purpose: .ack, side: localSide.other, counter: counter, ciphertext)
        lastOpenedAckCounter = counter
        return body
    }

    // MARK: Primitive

    /// The 24-byte nonce: purpose, side, 14 zero bytes, then the counter big-endian.
    static func nonce(purpose: Purpose, side: Side, counter: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: 24)
        nonce[0] = purpose.rawValue
        nonce[1] = side.rawValue
        withUnsafeBytes(of: counter.bigEndian) { counterBytes in
            for index in 0..<8 { nonce[16 + index] = counterBytes[index] }
        }
        return nonce
    }

    private func seal(purpose: Purpose, side: Side, counter: UInt64, _ plaintext: UnsafeRawBufferPointer)
        throws(CryptoError) -> [UInt8]
    {
        guard !key.isWiped else { throw .noKeys }
        let nonce = Self.nonce(purpose: purpose, side: side, counter: counter)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + SodiumSizes.boxMAC)
        let status = ciphertext.withUnsafeMutableBytes { out in
            key.withUnsafeBytes { k in
                nonce.withUnsafeBytes { n in
                    crypto_box_easy_afternm(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(plaintext.count),
                        n.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        k.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        precondition(status == 0, "crypto_box_easy_afternm cannot fail for in-range lengths")
        return ciphertext
    }

    private func open(purpose: Purpose, side: Side, counter: UInt64, _ ciphertext: UnsafeRawBufferPointer)
        throws(CryptoError) -> SecureBytes
    {
        guard !key.isWiped else { throw .noKeys }
        guard ciphertext.count >= SodiumSizes.boxMAC else { throw .truncated(length: ciphertext.count) }
        let nonce = Self.nonce(purpose: purpose, side: side, counter: counter)
        let plaintextCount = ciphertext.count - SodiumSizes.boxMAC
        // The plaintext goes straight into guarded memory, never into an ordinary array.
        let plaintext = SecureBytes(count: plaintextCount)
        let status = plaintext.withUnsafeMutableBytes { out in
            key.withUnsafeBytes { k in
                nonce.withUnsafeBytes { n in
                    crypto_box_open_easy_afternm(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(ciphertext.count),
                        n.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        k.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        guard status == 0 else {
            plaintext.wipe()
            throw .authenticationFailed
        }
        return plaintext
    }
}
