import CSodium

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
/// random and never repeat: each is built from a purpose, the sender's side and a counter, so even
/// under one key no key-nonce pair could repeat across directions or purposes (and each record has
/// a key of its own anyway).
///
/// Key confirmations and acknowledgements carry no chat content and use the per-direction
/// control keys, which do not ratchet.
public final class MessageRatchet {
    /// What a sealed box carries; part of every nonce, so the three spaces never overlap.
    public enum Purpose: UInt8, Sendable {
        case record = 1
        case confirm = 2
        case ack = 3
        case goodbye = 4
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
    /// libsodium's sizes as literals, which the compiler folds: `SodiumSizes` reads them from
    /// libsodium at run time and costs a `swift_once` per use on the per-record path. `init`
    /// checks that they agree.
    static let keyBytes = 32  // crypto_kdf_KEYBYTES and crypto_secretbox_KEYBYTES
    static let contextBytes = 8  // crypto_kdf_CONTEXTBYTES
    static let macBytes = 16  // crypto_secretbox_MACBYTES
    static let nonceBytes = 24  // crypto_secretbox_NONCEBYTES

    /// Our side; we seal as `localSide` and open as `localSide.other`.
    public let localSide: Side

    // `@exclusivity(unchecked)` on the stored vars: each is read or written in an instant, never
    // held across a call (no `inout` to them escapes), so no two accesses can overlap; the
    // dynamic checks cost ~13 runtime calls and ~1,000 instructions per seal + open (callgrind,
    // BENCHMARKS.md "Crypto: Swift vs C").
    /// The sequence number the next sealed record must have (exactly).
    @exclusivity(unchecked) public private(set) var nextSendSequence: UInt64
    /// The sequence number the next opened record must have (exactly).
    @exclusivity(unchecked) public private(set) var nextReceiveSequence: UInt64
    /// Records sealed and opened so far under this ratchet.
    @exclusivity(unchecked) public private(set) var recordsSealed: UInt64 = 0
    @exclusivity(unchecked) public private(set) var recordsOpened: UInt64 = 0

    private let sendChain: SecureBytes
    private let receiveChain: SecureBytes
    private let sendControl: SecureBytes
    private let receiveControl: SecureBytes
    /// Guarded scratch for one ratchet step: message key n in bytes 0..<32, chain key n+1 in
    /// 32..<64, wiped as soon as the step is done. One allocation for the ratchet's life because
    /// `sodium_malloc` costs an mmap, two mprotects and an mlock, and `sodium_free` a munlock and
    /// an munmap: ~40 us per pair on the project's machine, where a whole 1 KiB seal + open costs
    /// ~5 us; a fresh allocation per derived key made the ratchet 40x slower than the same calls
    /// from C (BENCHMARKS.md, "Crypto: Swift vs C").
    private let stepScratch: SecureBytes
    /// Guarded memory that opened records are lent from (`openRecord(sequence:_:_:)`), wiped
    /// after each use; it grows to the largest record opened so far. Same reason as `stepScratch`.
    @exclusivity(unchecked) private var openBuffer: SecureBytes?
    /// True while `openRecord` lends the open buffer: a nested open could replace the buffer
    /// under the outer caller's pointer, so it is refused by a precondition.
    @exclusivity(unchecked) private var isLendingOpenBuffer = false
    @exclusivity(unchecked) private var nextAckCounter: UInt64 = 1
    @exclusivity(unchecked) private var lastOpenedAckCounter: UInt64 = 0

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
        precondition(
            SodiumSizes.kdfKey == Self.keyBytes && SodiumSizes.secretboxKey == Self.keyBytes
                && SodiumSizes.kdfContext == Self.contextBytes && SodiumSizes.secretboxMAC == Self.macBytes
                && SodiumSizes.secretboxNonce == Self.nonceBytes, "libsodium's sizes changed")
        precondition(nextSendSequence >= 1 && nextReceiveSequence >= 1, "sequence numbers start at 1")
        let sendID = localSide == .low ? Self.lowToHighID : Self.highToLowID
        let receiveID = localSide == .low ? Self.highToLowID : Self.lowToHighID
        sendChain = Self.derive(from: masterKey, id: sendID, context: Self.chainContext)
        receiveChain = Self.derive(from: masterKey, id: receiveID, context: Self.chainContext)
        sendControl = Self.derive(from: masterKey, id: sendID, context: Self.controlContext)
        receiveControl = Self.derive(from: masterKey, id: receiveID, context: Self.controlContext)
        masterKey.wipe()
        stepScratch = SecureBytes(count: 2 * Self.keyBytes)
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
        for key in [sendChain, receiveChain, sendControl, receiveControl, stepScratch] { key.wipe() }
        openBuffer?.wipe()
        openBuffer = nil
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

    /// The most chain steps `skip` takes per direction: a gap beyond it leaves the keys out of
    /// step (records then fail to open) rather than spend unbounded time.
    static let skipMax: UInt64 = 65_536

    /// Move the chains on to `sendTo` and `receiveTo` without using the keys in between (each
    /// overwritten at once): their records were carried by earlier keys. Only before the first
    /// record, after `resume`.
    func skip(sendTo send: UInt64, receiveTo receive: UInt64) {
        precondition(recordsSealed == 0 && recordsOpened == 0, "skip only before the first record")
        guard !isWiped else { return }
        for (chain, from, to) in [(sendChain, nextSendSequence, send), (receiveChain, nextReceiveSequence, receive)] {
            guard to > from else { continue }
            stepScratch.withUnsafeMutableBytes { scratch in
                defer { Sodium.memzero(scratch) }
                for _ in 0..<min(to - from, Self.skipMax) {
                    Self.step(chain, into: scratch)
                    Self.overwrite(chain, with: Self.nextChainSlot(scratch))
                }
            }
        }
        nextSendSequence = max(nextSendSequence, send)
        nextReceiveSequence = max(nextReceiveSequence, receive)
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
        let sealed = stepScratch.withUnsafeMutableBytes { scratch in
            // Message key n and chain key n+1 into the scratch; chain n is overwritten at once.
            defer { Sodium.memzero(scratch) }
            Self.step(sendChain, into: scratch)
            Self.overwrite(sendChain, with: Self.nextChainSlot(scratch))
            return Self.seal(
                key: UnsafeRawBufferPointer(Self.messageKeySlot(scratch)), purpose: .record, side: localSide,
                counter: sequence, plaintext)
        }
        nextSendSequence = sequence + 1
        recordsSealed += 1
        return sealed
    }

    /// Open record `sequence`, which must be exactly `nextReceiveSequence`, into a new guarded
    /// allocation. On success the receive chain moves on and the message key is wiped; on failure
    /// nothing moves, so a forged or damaged record cannot push the receiver out of step with the
    /// sender. Costs one `sodium_malloc` per record; `openRecord(sequence:_:_:)` lends the
    /// plaintext from the ratchet's own guarded buffer instead.
    public func openRecord(sequence: UInt64, _ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        try openRecord(sequence: sequence, ciphertext) { plaintext in SecureBytes(copying: plaintext) }
    }

    /// Open record `sequence` (exactly `nextReceiveSequence`, as `openRecord(sequence:_:)`) and
    /// lend its plaintext to `body` from the ratchet's guarded buffer, which is wiped when `body`
    /// returns: the pointer must not escape, and `body` must not open another record. No
    /// allocation per record once the buffer has grown to the record size; `body` runs only if
    /// the record authenticated.
    public func openRecord<R>(
        sequence: UInt64, _ ciphertext: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R
    ) throws(CryptoError) -> R {
        guard !isWiped else { throw .noKeys }
        guard sequence >= nextReceiveSequence else {
            if retainsOpenedKeys, let kept = retainedKeys.first(where: { $0.sequence == sequence }),
               ciphertext.count >= Self.macBytes {
                return try openWithKeptKey(kept.key, sequence: sequence, ciphertext, body)
            }
            throw .replayed(sequence: sequence, expected: nextReceiveSequence)
        }
        guard sequence == nextReceiveSequence else {
            throw .outOfOrder(sequence: sequence, expected: nextReceiveSequence)
        }
        guard ciphertext.count >= Self.macBytes else { throw .truncated(length: ciphertext.count) }
        let plaintextCount = ciphertext.count - Self.macBytes
        precondition(!isLendingOpenBuffer, "openRecord called from inside another openRecord's body")
        isLendingOpenBuffer = true
        defer { isLendingOpenBuffer = false }
        let buffer = openBufferHolding(plaintextCount)
        let result = try stepScratch.withUnsafeMutableBytes { scratch throws(CryptoError) in
            defer { Sodium.memzero(scratch) }
            Self.step(receiveChain, into: scratch)
            return try buffer.withUnsafeMutableBytes { whole throws(CryptoError) in
                let plaintext = UnsafeMutableRawBufferPointer(rebasing: whole[0..<plaintextCount])
                defer { Sodium.memzero(plaintext) }
                try Self.open(
                    key: UnsafeRawBufferPointer(Self.messageKeySlot(scratch)), purpose: .record,
                    side: localSide.other, counter: sequence, ciphertext, into: plaintext)
                // Authenticated: the chain moves (before `body`, which cannot undo it).
                Self.overwrite(receiveChain, with: Self.nextChainSlot(scratch))
                if retainsOpenedKeys { retainKey(UnsafeRawBufferPointer(Self.messageKeySlot(scratch)), sequence) }
                return body(UnsafeRawBufferPointer(plaintext))
            }
        }
        nextReceiveSequence = sequence + 1
        recordsOpened += 1
        return result
    }

    /// Planted bug only (`retainsOpenedKeys`): keep a copy of message key `sequence`. Bounded.
    private func retainKey(_ key: UnsafeRawBufferPointer, _ sequence: UInt64) {
        if retainedKeys.count == Self.retainedKeysMax { retainedKeys.removeFirst().key.wipe() }
        retainedKeys.append((sequence, SecureBytes(copying: key)))
    }

    /// Planted bug only (`retainsOpenedKeys`): open an already opened record again with its kept key.
    private func openWithKeptKey<R>(
        _ key: SecureBytes, sequence: UInt64, _ ciphertext: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) -> R
    ) throws(CryptoError) -> R {
        let plaintext = SecureBytes(count: ciphertext.count - Self.macBytes)
        defer { plaintext.wipe() }
        try key.withUnsafeBytes { keyBytes throws(CryptoError) in
            try plaintext.withUnsafeMutableBytes { out throws(CryptoError) in
                try Self.open(
                    key: keyBytes, purpose: .record, side: localSide.other, counter: sequence, ciphertext, into: out)
            }
        }
        return plaintext.withUnsafeBytes { body($0) }
    }

    /// The guarded open buffer, grown (doubling, at least 256 bytes) to hold `count` bytes.
    private func openBufferHolding(_ count: Int) -> SecureBytes {
        if let openBuffer, openBuffer.count >= count { return openBuffer }
        let grown = min(max(count, 256, 2 * (openBuffer?.count ?? 0)), SecureBytes.countMax)
        precondition(grown >= count, "a record larger than SecureBytes.countMax")
        openBuffer?.wipe()
        let buffer = SecureBytes(count: grown)
        openBuffer = buffer
        return buffer
    }

    // MARK: Key confirmation and acknowledgements (control keys, not ratcheted)

    /// Seal our key confirmation (once per session: counter 0 of the confirm space).
    public func sealConfirmation(_ body: UnsafeRawBufferPointer) throws(CryptoError) -> [UInt8] {
        guard !isWiped else { throw .noKeys }
        return sendControl.withUnsafeBytes { key in
            Self.seal(key: key, purpose: .confirm, side: localSide, counter: 0, body)
        }
    }

    /// Open the peer's key confirmation. Our own, reflected back, fails: it is under our key.
    public func openConfirmation(_ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        guard !isWiped else { throw .noKeys }
        guard ciphertext.count >= Self.macBytes else { throw .truncated(length: ciphertext.count) }
        return try Self.openControl(
            key: receiveControl, purpose: .confirm, side: localSide.other, counter: 0, ciphertext)
    }

    /// Seal an acknowledgement; returns its counter and box. Each ack uses a fresh counter.
    public func sealAck(_ body: UnsafeRawBufferPointer) throws(CryptoError) -> (counter: UInt64, box: [UInt8]) {
        try sealCounted(purpose: .ack, body)
    }

    /// Open a peer acknowledgement. Acks older than the newest one opened are replays.
    public func openAck(counter: UInt64, _ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        try openCounted(purpose: .ack, counter: counter, ciphertext)
    }

    /// Seal a goodbye (BYE). It shares the acknowledgements' counter: each BYE also says what we
    /// received, so an ack it overtakes is not missed.
    public func sealGoodbye(_ body: UnsafeRawBufferPointer) throws(CryptoError) -> (counter: UInt64, box: [UInt8]) {
        try sealCounted(purpose: .goodbye, body)
    }

    /// Open a peer goodbye; one older than the newest ack or goodbye opened is a replay.
    public func openGoodbye(counter: UInt64, _ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
        try openCounted(purpose: .goodbye, counter: counter, ciphertext)
    }

    private func sealCounted(
        purpose: Purpose, _ body: UnsafeRawBufferPointer
    ) throws(CryptoError) -> (counter: UInt64, box: [UInt8]) {
        guard !isWiped else { throw .noKeys }
        let counter = nextAckCounter
        guard counter < UInt64.max else { throw .sequenceExhausted }
        let box = sendControl.withUnsafeBytes { key in
            Self.seal(key: key, purpose: purpose, side: localSide, counter: counter, body)
        }
        nextAckCounter += 1
        return (counter, box)
    }

    private func openCounted(
        purpose: Purpose, counter: UInt64, _ ciphertext: UnsafeRawBufferPointer
    ) throws(CryptoError) -> SecureBytes {
        guard !isWiped else { throw .noKeys }
        guard counter > lastOpenedAckCounter else {
            // The peer chose the last counter (it may be UInt64.max): no arithmetic that can trap.
            throw .replayed(sequence: counter, expected: lastOpenedAckCounter &+ 1)
        }
        guard ciphertext.count >= Self.macBytes else { throw .truncated(length: ciphertext.count) }
        let body = try Self.openControl(
            key: receiveControl, purpose: purpose, side: localSide.other, counter: counter, ciphertext)
        lastOpenedAckCounter = counter
        return body
    }

    // MARK: Key schedule

    /// KDF(key, id, context): `crypto_kdf_derive_from_key`, a 32-byte subkey in guarded memory.
    static func derive(from key: SecureBytes, id: UInt64, context: [UInt8]) -> SecureBytes {
        SecureBytes(count: Self.keyBytes) { out in
            key.withUnsafeBytes { master in derive(into: out, from: master, id: id, context: context) }
        }
    }

    /// KDF(key, id, context) into `out` (32 bytes), allocating nothing.
    static func derive(
        into out: UnsafeMutableRawBufferPointer, from key: UnsafeRawBufferPointer, id: UInt64, context: [UInt8]
    ) {
        precondition(context.count == Self.contextBytes && key.count == Self.keyBytes)
        precondition(out.count == Self.keyBytes)
        context.withUnsafeBufferPointer { ctx in
            // crypto_kdf reads exactly 8 context bytes as `const char *`; UInt8 and CChar may alias.
            ctx.withMemoryRebound(to: CChar.self) { characters in
                let status = crypto_kdf_derive_from_key(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count, id, characters.baseAddress!,
                    key.baseAddress!.assumingMemoryBound(to: UInt8.self))
                precondition(status == 0, "crypto_kdf_derive_from_key rejects only bad lengths")
            }
        }
    }

    /// One ratchet step from `chain` into `scratch` (64 bytes): message key n, then chain key
    /// n+1. `chain` is left unchanged.
    static func step(_ chain: SecureBytes, into scratch: UnsafeMutableRawBufferPointer) {
        precondition(scratch.count == 2 * Self.keyBytes)
        chain.withUnsafeBytes { chainKey in
            derive(into: messageKeySlot(scratch), from: chainKey, id: messageKeyID, context: stepContext)
            derive(into: nextChainSlot(scratch), from: chainKey, id: nextChainID, context: stepContext)
        }
    }

    /// Where `step` puts message key n.
    static func messageKeySlot(_ scratch: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: scratch[0..<Self.keyBytes])
    }

    /// Where `step` puts chain key n+1.
    static func nextChainSlot(_ scratch: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: scratch[Self.keyBytes..<(2 * Self.keyBytes)])
    }

    /// Copy `source` over `destination` (same size): the old bytes are gone, not freed elsewhere.
    static func overwrite(_ destination: SecureBytes, with source: UnsafeMutableRawBufferPointer) {
        precondition(destination.count == source.count)
        destination.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(source)) }
    }

    // MARK: Primitive

    /// The 24-byte nonce (purpose, side, 14 zero bytes, counter big-endian), built on the stack
    /// and lent to `body`.
    private static func withNonce<R, E: Error>(
        purpose: Purpose, side: Side, counter: UInt64,
        _ body: (UnsafePointer<UInt8>) throws(E) -> R
    ) throws(E) -> R {
        var nonce: (UInt64, UInt64, UInt64) = (0, 0, counter.bigEndian)
        return try withUnsafeMutableBytes(of: &nonce) { bytes throws(E) in
            precondition(bytes.count == Self.nonceBytes)
            bytes[0] = purpose.rawValue
            bytes[1] = side.rawValue
            return try body(UnsafeRawBufferPointer(bytes).baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
    }

    private static func seal(
        key: UnsafeRawBufferPointer, purpose: Purpose, side: Side, counter: UInt64,
        _ plaintext: UnsafeRawBufferPointer
    ) -> [UInt8] {
        precondition(key.count == Self.keyBytes)
        // Zeroed, not `unsafeUninitializedCapacity`: that path is not specialized for UInt8 and
        // looks up generic metadata on every call, which costs more than the memset.
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + Self.macBytes)
        let status = ciphertext.withUnsafeMutableBufferPointer { out in
            withNonce(purpose: purpose, side: side, counter: counter) { nonce in
                crypto_secretbox_easy(
                    out.baseAddress!, plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    UInt64(plaintext.count), nonce, key.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        precondition(status == 0, "crypto_secretbox_easy cannot fail for in-range lengths")
        return ciphertext
    }

    /// Open into `plaintext` (exactly the ciphertext's length less the MAC). On failure the
    /// output is zeroed.
    private static func open(
        key: UnsafeRawBufferPointer, purpose: Purpose, side: Side, counter: UInt64,
        _ ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) {
        precondition(key.count == Self.keyBytes)
        precondition(ciphertext.count >= Self.macBytes)
        precondition(plaintext.count == ciphertext.count - Self.macBytes)
        let status = withNonce(purpose: purpose, side: side, counter: counter) { nonce in
            crypto_secretbox_open_easy(
                // Never nil: an empty record is lent from the open buffer, which is never empty.
                plaintext.baseAddress!.assumingMemoryBound(to: UInt8.self),
                ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(ciphertext.count), nonce,
                key.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        guard status == 0 else {
            Sodium.memzero(plaintext)
            throw .authenticationFailed
        }
    }

    /// Open a control box (confirmation, ack) into a new guarded allocation: once per session or
    /// per ack, not per record, so the allocation does not matter.
    private static func openControl(
        key: SecureBytes, purpose: Purpose, side: Side, counter: UInt64,
        _ ciphertext: UnsafeRawBufferPointer
    ) throws(CryptoError) -> SecureBytes {
        precondition(ciphertext.count >= Self.macBytes)
        // The plaintext goes straight into guarded memory, never into an ordinary array.
        let plaintext = SecureBytes(count: ciphertext.count - Self.macBytes)
        try key.withUnsafeBytes { keyBytes throws(CryptoError) in
            try plaintext.withUnsafeMutableBytes { out throws(CryptoError) in
                try open(key: keyBytes, purpose: purpose, side: side, counter: counter, ciphertext, into: out)
            }
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

    /// Copies of the ratchet's working memory (the step scratch, then the open buffer if one
    /// exists; neither once wiped), for the tests that show it holds only zeros between operations.
    @_spi(Testing)
    public func scratchForTesting() -> [[UInt8]] {
        [stepScratch, openBuffer].compactMap { buffer in
            guard let buffer, !buffer.isWiped else { return nil }
            return buffer.withUnsafeBytes { Array($0) }
        }
    }
}
