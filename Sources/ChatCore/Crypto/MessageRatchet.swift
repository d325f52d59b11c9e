import CSodium

/// Derivation of a session's master key from what the handshake agreed.
public enum SessionKeyDerivation {
    /// Domain separation for the master key.
    static let label = Array("securechat/v2/session-master".utf8)

    /// master = BLAKE2b-256(key: handshakeSecret, message: label || transcriptHash).
    ///
    /// `handshakeSecret` is CPace's ISK (64 bytes) or the raw X25519 shared secret (32 bytes);
    /// `transcriptHash` binds the keys to everything both sides said in the handshake. CPace's
    /// §10.3 recommends running ISK through a KDF before use; keyed BLAKE2b is libsodium's
    /// (`crypto_generichash`), and it accepts keys of 16 to 64 bytes.
    public static func masterKey(handshakeSecret: SecureBytes, transcriptHash: [UInt8]) -> SecureBytes {
        precondition((16...64).contains(handshakeSecret.count), "BLAKE2b keys are 16...64 bytes")
        Sodium.ensureInitialized()
        let message = label + transcriptHash
        return SecureBytes(count: SodiumSizes.kdfKey) { out in
            handshakeSecret.withUnsafeBytes { key in
                message.withUnsafeBytes { input in
                    _ = crypto_generichash(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                        input.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(input.count),
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count)
                }
            }
        }
    }
}

/// Session encryption with forward secrecy inside the session: Signal's symmetric-key ratchet.
///
/// From the master key come four keys (libsodium's `crypto_kdf_derive_from_key`, keyed BLAKE2b,
/// one context per purpose and one subkey id per direction): a chain key for each direction and
/// a control key for each direction. Each chat record is sealed under its own message key:
///
///     message key n = KDF(chain_n, id 1, "SC_RATCH"),   chain_{n+1} = KDF(chain_n, id 2, "SC_RATCH")
///
/// and chain_n is overwritten by chain_{n+1} in place the moment key n is made, so the ratchet
/// holds only the newest chain key per direction. BLAKE2b is one-way, so nothing it holds leads
/// back to an earlier chain key or message key: RAM seized mid-chat does not open earlier
/// records. The master key is wiped once the four keys exist.
///
/// Records must be sealed and opened strictly in order (the session buffers ciphertext that
/// arrives early and opens it when its turn comes); a record that fails authentication does not
/// move the chain. The cipher is XSalsa20-Poly1305 (`crypto_secretbox_easy`). Nonces are never
/// random and never repeat: each is built from a purpose, the sender's side and a counter
/// (`nonce(purpose:side:counter:)`), so even under one key no key-nonce pair could repeat across
/// directions or purposes (and each record has a key of its own anyway).
///
/// Key confirmations and acknowledgements carry no chat content and use the per-direction
/// control keys, which do not ratchet.
public final class MessageRatchet {
    /// What a sealed box carries; part of every nonce, so the three spaces never overlap.
    public enum Purpose: UInt8, Sendable {
        case record = 1
        case confirm = 2
        case ack = 3
    }

    /// Which side sealed a box: the two directions of a session. Which side is which is decided
    /// by the handshake (the order of the two public keys or CPace messages), so the two ends
    /// always take opposite sides.
    public enum Side: UInt8, Sendable {
        case low = 0
        case high = 1

        public var other: Side { self == .low ? .high : .low }
    }

    /// The context of the chain keys (8 bytes, as `crypto_kdf` requires).
    static let chainContext = Array("SC_CHAIN".utf8)
    /// The context of the control keys.
    static let controlContext = Array("SC_CTRL_".utf8)
    /// The context of each ratchet step.
    static let stepContext = Array("SC_RATCH".utf8)
    /// Subkey ids: which direction a chain or control key serves.
    static let lowToHighID: UInt64 = 1
    static let highToLowID: UInt64 = 2
    /// Subkey ids of a ratchet step.
    static let messageKeyID: UInt64 = 1
    static let nextChainID: UInt64 = 2

    /// Our side; we seal as `localSide` and open as `localSide.other`.
    public let localSide: Side
    /// The sequence number the next sealed record must have (exactly).
    public private(set) var nextSendSequence: UInt64
    /// The sequence number the next opened record must have (exactly).
    public private(set) var nextReceiveSequence: UInt64
    /// Records sealed and opened so far under this ratchet.
    public private(set) var recordsSealed: UInt64 = 0
    public private(set) var recordsOpened: UInt64 = 0

    private let sendChain: SecureBytes
    private let receiveChain: SecureBytes
    private let sendControl: SecureBytes
    private let receiveControl: SecureBytes
    /// Where each ratchet step derives its two keys, one per direction, allocated once: a guarded
    /// allocation costs an mmap, mprotect calls and an mlock, and two per record made sealing and
    /// opening four times slower (BENCHMARKS.md). Zeroed right after every step, so between calls
    /// they hold nothing.
    private let sendStep = StepScratch()
    private let receiveStep = StepScratch()
    private var nextAckCounter: UInt64 = 1
    private var lastOpenedAckCounter: UInt64 = 0

    /// A planted bug for the simulator's self-test (`PlantedBugs.skipCounterCheck`): keep the
    /// message keys of opened records instead of wiping them, and open a record again with its
    /// kept key, so a replay is accepted and shown twice. Always false outside that test.
    var retainsOpenedKeys = false
    /// The kept keys (planted bug only), newest last. Bounded.
    private var retainedKeys: [(sequence: UInt64, key: SecureBytes)] = []
    private static let retainedKeysMax = 64

    /// - Parameters:
    ///   - masterKey: 32 bytes from `SessionKeyDerivation.masterKey`; the ratchet takes ownership
    ///     and wipes it once the four keys are derived.
    ///   - localSide: which direction we seal in (the peer uses the other).
    ///   - nextSendSequence, nextReceiveSequence: the sequence numbers chain position 0 stands for
    ///     in each direction (a resumed conversation continues its numbering under new keys).
    public init(
        masterKey: SecureBytes, localSide: Side, nextSendSequence: UInt64 = 1,
        nextReceiveSequence: UInt64 = 1
    ) {
        precondition(masterKey.count == SodiumSizes.kdfKey, "the master key has crypto_kdf_KEYBYTES bytes")
        precondition(nextSendSequence >= 1 && nextReceiveSequence >= 1, "sequence numbers start at 1")
        let sendID = localSide == .low ? Self.lowToHighID : Self.highToLowID
        let receiveID = localSide == .low ? Self.highToLowID : Self.lowToHighID
        sendChain = Self.derive(from: masterKey, id: sendID, context: Self.chainContext)
        receiveChain = Self.derive(from: masterKey, id: receiveID, context: Self.chainContext)
        sendControl = Self.derive(from: masterKey, id: sendID, context: Self.controlContext)
        receiveControl = Self.derive(from: masterKey, id: receiveID, context: Self.controlContext)
        masterKey.wipe()
        self.localSide = localSide
        self.nextSendSequence = nextSendSequence
        self.nextReceiveSequence = nextReceiveSequence
    }

    deinit {
        wipe()
    }

    /// True once `wipe()` has run.
    public var isWiped: Bool { sendChain.isWiped }

    /// Wipe every key. Every later seal or open fails with `noKeys`.
    public func wipe() {
        for key in [sendChain, receiveChain, sendControl, receiveControl] { key.wipe() }
        sendStep.wipe()
        receiveStep.wipe()
        for kept in retainedKeys { kept.key.wipe() }
        retainedKeys.removeAll()
    }

    /// Set where chain position 0 stands in each direction: only before the first record moves
    /// either chain, because afterwards the positions are fixed by the keys already used.
    public func resume(nextSendSequence send: UInt64, nextReceiveSequence receive: UInt64) {
        precondition(recordsSealed == 0 && recordsOpened == 0, "resume only before the first record")
        precondition(send >= 1 && receive >= 1)
        nextSendSequence = send
        nextReceiveSequence = receive
    }

    // MARK: Chat records (ratcheted)

    /// Seal record `sequence`, which must be exactly `nextSendSequence`: its message key is made,
    /// used once and wiped, and the send chain moves on. A lower number is refused as `replayed`
    /// (its key no longer exists), a higher one as `outOfOrder`.
    public func sealRecord(sequence: UInt64, _ plaintext: UnsafeRawBufferPointer) throws(CryptoError) -> [UInt8] {
        guard !isWiped else { throw .noKeys }
        guard sequence >= nextSendSequence else { throw .replayed(sequence: sequence, expected: nextSendSequence) }
        guard sequence == nextSendSequence else { throw .outOfOrder(sequence: sequence, expected: nextSendSequence) }
        guard sequence < UInt64.max else { throw .sequenceExhausted }
        // Key n, then chain_n replaced by chain_{n+1} in place; both scratch keys zeroed after use.
        Self.step(sendChain, into: sendStep)
        defer { sendStep.zero() }
        Self.overwrite(sendChain, with: sendStep.nextChain)
        let sealed = Self.seal(
            key: sendStep.messageKey, nonce: Self.nonce(purpose: .record, side: localSide, counter: sequence),
            plaintext)
        nextSendSequence = sequence + 1
        recordsSealed += 1
        return sealed
    }

    /// Open record `sequence`, which must be exactly `nextReceiveSequence`. On success the
    /// receive chain moves on and the message key is wiped; on failure nothing moves, so a forged
    /// or damaged record cannot push the receiver out of step with the sender.
    public func openRecord(sequence: UInt64, _ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        guard !isWiped else { throw .noKeys }
        guard sequence >= nextReceiveSequence else {
            if retainsOpenedKeys, let kept = retainedKeys.first(where: { $0.sequence == sequence }),
               ciphertext.count >= SodiumSizes.secretboxMAC {
                return try Self.open(
                    key: kept.key,
                    nonce: Self.nonce(purpose: .record, side: localSide.other, counter: sequence), ciphertext)
            }
            throw .replayed(sequence: sequence, expected: nextReceiveSequence)
        }
        guard sequence == nextReceiveSequence else {
            throw .outOfOrder(sequence: sequence, expected: nextReceiveSequence)
        }
        guard ciphertext.count >= SodiumSizes.secretboxMAC else { throw .truncated(length: ciphertext.count) }
        Self.step(receiveChain, into: receiveStep)
        defer { receiveStep.zero() }
        let plaintext = try Self.open(
            key: receiveStep.messageKey,
            nonce: Self.nonce(purpose: .record, side: localSide.other, counter: sequence), ciphertext)
        Self.overwrite(receiveChain, with: receiveStep.nextChain)
        nextReceiveSequence = sequence + 1
        recordsOpened += 1
        if retainsOpenedKeys {
            if retainedKeys.count == Self.retainedKeysMax { retainedKeys.removeFirst().key.wipe() }
            retainedKeys.append((sequence, receiveStep.messageKey.withUnsafeBytes { SecureBytes(copying: $0) }))
        }
        return plaintext
    }

    // MARK: Key confirmation and acknowledgements (control keys, not ratcheted)

    /// Seal our key confirmation (once per session: counter 0 of the confirm space).
    public func sealConfirmation(_ body: UnsafeRawBufferPointer) throws(CryptoError) -> [UInt8] {
        guard !isWiped else { throw .noKeys }
        return Self.seal(
            key: sendControl, nonce: Self.nonce(purpose: .confirm, side: localSide, counter: 0), body)
    }

    /// Open the peer's key confirmation. Our own, reflected back, fails: it is under our key.
    public func openConfirmation(_ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        guard !isWiped else { throw .noKeys }
        guard ciphertext.count >= SodiumSizes.secretboxMAC else { throw .truncated(length: ciphertext.count) }
        return try Self.open(
            key: receiveControl, nonce: Self.nonce(purpose: .confirm, side: localSide.other, counter: 0),
            ciphertext)
    }

    /// Seal an acknowledgement; returns its counter and box. Each ack uses a fresh counter.
    public func sealAck(_ body: UnsafeRawBufferPointer) throws(CryptoError) -> (counter: UInt64, box: [UInt8]) {
        guard !isWiped else { throw .noKeys }
        let counter = nextAckCounter
        guard counter < UInt64.max else { throw .sequenceExhausted }
        let box = Self.seal(
            key: sendControl, nonce: Self.nonce(purpose: .ack, side: localSide, counter: counter), body)
        nextAckCounter += 1
        return (counter, box)
    }

    /// Open a peer acknowledgement. Acks older than the newest one opened are replays.
    public func openAck(counter: UInt64, _ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        guard !isWiped else { throw .noKeys }
        guard counter > lastOpenedAckCounter else {
            throw .replayed(sequence: counter, expected: lastOpenedAckCounter + 1)
        }
        guard ciphertext.count >= SodiumSizes.secretboxMAC else { throw .truncated(length: ciphertext.count) }
        let body = try Self.open(
            key: receiveControl, nonce: Self.nonce(purpose: .ack, side: localSide.other, counter: counter),
            ciphertext)
        lastOpenedAckCounter = counter
        return body
    }

    // MARK: Key schedule

    /// KDF(key, id, context): `crypto_kdf_derive_from_key`, a 32-byte subkey in guarded memory.
    static func derive(from key: SecureBytes, id: UInt64, context: [UInt8]) -> SecureBytes {
        let subkey = SecureBytes(count: SodiumSizes.secretboxKey)
        derive(from: key, id: id, context: context, into: subkey)
        return subkey
    }

    /// KDF(key, id, context) written over `subkey` (32 bytes).
    static func derive(from key: SecureBytes, id: UInt64, context: [UInt8], into subkey: SecureBytes) {
        precondition(context.count == SodiumSizes.kdfContext && key.count == SodiumSizes.kdfKey)
        precondition(subkey.count == SodiumSizes.secretboxKey)
        // crypto_kdf reads exactly 8 context bytes as `const char *`.
        let contextCharacters = context.map { CChar(bitPattern: $0) }
        subkey.withUnsafeMutableBytes { out in
            key.withUnsafeBytes { master in
                contextCharacters.withUnsafeBufferPointer { ctx in
                    let status = crypto_kdf_derive_from_key(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count, id, ctx.baseAddress!,
                        master.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    precondition(status == 0, "crypto_kdf_derive_from_key rejects only bad lengths")
                }
            }
        }
    }

    /// One ratchet step from `chain` into `scratch`: message key n and chain key n+1. `chain` is
    /// left unchanged.
    static func step(_ chain: SecureBytes, into scratch: StepScratch) {
        derive(from: chain, id: messageKeyID, context: stepContext, into: scratch.messageKey)
        derive(from: chain, id: nextChainID, context: stepContext, into: scratch.nextChain)
    }

    /// Copy `source` over `destination` (same size): the old bytes are gone, not freed elsewhere.
    static func overwrite(_ destination: SecureBytes, with source: SecureBytes) {
        precondition(destination.count == source.count)
        destination.withUnsafeMutableBytes { out in source.withUnsafeBytes { out.copyMemory(from: $0) } }
    }

    // MARK: Primitive

    /// The 24-byte nonce: purpose, side, 14 zero bytes, then the counter big-endian.
    static func nonce(purpose: Purpose, side: Side, counter: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: SodiumSizes.secretboxNonce)
        nonce[0] = purpose.rawValue
        nonce[1] = side.rawValue
        withUnsafeBytes(of: counter.bigEndian) { counterBytes in
            for index in 0..<8 { nonce[16 + index] = counterBytes[index] }
        }
        return nonce
    }

    private static func seal(key: SecureBytes, nonce: [UInt8], _ plaintext: UnsafeRawBufferPointer) -> [UInt8] {
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + SodiumSizes.secretboxMAC)
        let status = ciphertext.withUnsafeMutableBytes { out in
            key.withUnsafeBytes { k in
                nonce.withUnsafeBytes { n in
                    crypto_secretbox_easy(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(plaintext.count),
                        n.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        k.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        precondition(status == 0, "crypto_secretbox_easy cannot fail for in-range lengths")
        return ciphertext
    }

    private static func open(key: SecureBytes, nonce: [UInt8], _ ciphertext: UnsafeRawBufferPointer)
        throws(CryptoError) -> SecureBytes
    {
        precondition(ciphertext.count >= SodiumSizes.secretboxMAC)
        // The plaintext goes straight into guarded memory, never into an ordinary array.
        let plaintext = SecureBytes(count: ciphertext.count - SodiumSizes.secretboxMAC)
        let status = plaintext.withUnsafeMutableBytes { out in
            key.withUnsafeBytes { k in
                nonce.withUnsafeBytes { n in
                    crypto_secretbox_open_easy(
                        // Never nil: even an empty SecureBytes lends its one-byte guarded allocation.
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

    // MARK: Inspection (tests only)

    /// Copies of every secret the ratchet holds right now (send chain, receive chain, send
    /// control, receive control), for the forward-secrecy tests: they show that after step n
    /// nothing from which an earlier key follows is still held. Never used by shipped code.
    @_spi(Testing)
    public func heldSecretsForTesting() -> [[UInt8]] {
        [sendChain, receiveChain, sendControl, receiveControl].map { key in key.withUnsafeBytes { Array($0) } }
    }

    /// Whether the step scratch buffers hold only zeros (they must between calls), for the same tests.
    @_spi(Testing)
    public var stepScratchIsZeroForTesting: Bool {
        [sendStep, receiveStep].allSatisfy { $0.isZero }
    }
}

/// The two keys of one ratchet step, in guarded memory allocated once per direction.
final class StepScratch {
    let messageKey = SecureBytes(count: SodiumSizes.secretboxKey)
    let nextChain = SecureBytes(count: SodiumSizes.secretboxKey)

    /// Zero both keys (the buffers stay allocated for the next step).
    func zero() {
        for key in [messageKey, nextChain] where !key.isWiped {
            key.withUnsafeMutableBytes { Sodium.memzero($0) }
        }
    }

    /// Release both buffers.
    func wipe() {
        messageKey.wipe()
        nextChain.wipe()
    }

    var isZero: Bool {
        [messageKey, nextChain].allSatisfy { key in
            key.isWiped || key.withUnsafeBytes { bytes in bytes.allSatisfy { $0 == 0 } }
        }
    }
}
