import ChatCore
import ChatTesting
import FuzzHarness
import PropertyBased
import Testing

/// Two `MessageRatchet`s keyed from one X25519 exchange, as the two ends of a session without a
/// password are: the shared secret and a transcript hash through `SessionKeyDerivation`.
struct RatchetPair {
    let low: MessageRatchet
    let high: MessageRatchet

    /// `sequence`: the number of each direction's first record (a resumed conversation's ratchet
    /// starts where the last one stopped).
    init(seed: UInt64, sequence: UInt64 = 1) {
        let entropy = SeededEntropy(seed: seed)
        let first = KeyManager()
        let second = KeyManager()
        let firstKey = first.generateKeyPair(entropy: entropy)
        let secondKey = second.generateKeyPair(entropy: entropy)
        let transcript = Digest.blake2b(firstKey.bytes + secondKey.bytes, outputByteCount: 32)
        let firstMaster = SessionKeyDerivation.masterKey(
            handshakeSecret: try! first.sharedSecret(with: secondKey), transcriptHash: transcript)
        let secondMaster = SessionKeyDerivation.masterKey(
            handshakeSecret: try! second.sharedSecret(with: firstKey), transcriptHash: transcript)
        let firstSide: MessageRatchet.Side = firstKey < secondKey ? .low : .high
        let a = MessageRatchet(
            masterKey: firstMaster, localSide: firstSide, nextSendSequence: sequence, nextReceiveSequence: sequence)
        let b = MessageRatchet(
            masterKey: secondMaster, localSide: firstSide.other, nextSendSequence: sequence,
            nextReceiveSequence: sequence)
        (low, high) = firstSide == .low ? (a, b) : (b, a)
    }
}

extension SecureBytes {
    var copy: [UInt8] { withUnsafeBytes { Array($0) } }
}

@Suite("Crypto properties", .shrinking)
struct CryptoProperties {
    @Test("Records of any length round-trip in both directions")
    func roundTrip() async {
        await propertyCheck(count: 100, input: Gen<UInt8>.value(in: 0...255).array(of: 0...4096), Gen<UInt64>.value()) {
            plaintext, seed in
            let pair = RatchetPair(seed: seed)
            for (sender, receiver) in [(pair.low, pair.high), (pair.high, pair.low)] {
                let box = try plaintext.withUnsafeBytes { try sender.sealRecord(sequence: 1, $0) }
                #expect(box.count == plaintext.count + SodiumSizes.secretboxMAC)
                let opened = try box.withUnsafeBytes { try receiver.openRecord(sequence: 1, $0) }
                #expect(opened.copy == plaintext)
            }
        }
    }

    @Test("Any single-bit change to a record, an ack or a confirmation fails authentication")
    func singleBitFlip() async {
        await propertyCheck(count: 300, input: Gen<UInt8>.value(in: 0...255).array(of: 0...256),
                            Gen<Int>.int(in: 0...Int.max), Gen<Int>.int(in: 0...2)) { plaintext, bitChoice, purpose in
            let pair = RatchetPair(seed: UInt64(bitChoice % 1000))
            let box: [UInt8] = try plaintext.withUnsafeBytes { buffer in
                switch purpose {
                case 0: try pair.low.sealRecord(sequence: 1, buffer)
                case 1: try pair.low.sealAck(buffer).box
                default: try pair.low.sealConfirmation(buffer)
                }
            }
            let bit = bitChoice % (box.count * 8)
            var tampered = box
            tampered[bit / 8] ^= 1 << UInt8(bit % 8)
            func open(_ buffer: UnsafeRawBufferPointer) throws(CryptoError) -> SecureBytes {
                switch purpose {
                case 0: try pair.high.openRecord(sequence: 1, buffer)
                case 1: try pair.high.openAck(counter: 1, buffer)
                default: try pair.high.openConfirmation(buffer)
                }
            }
            func open(_ bytes: [UInt8]) throws(CryptoError) -> SecureBytes {
                let result: Result<SecureBytes, CryptoError> = bytes.withUnsafeBytes { buffer in
                    do throws(CryptoError) { return .success(try open(buffer)) } catch { return .failure(error) }
                }
                return try result.get()
            }
            #expect(throws: CryptoError.authenticationFailed) { try open(tampered) }
            // The failure consumed nothing: the genuine box still opens, once.
            #expect(try open(box).copy == plaintext)
        }
    }

    @Test("At any sequence number, up to the last: records round-trip, tampering fails, the full number is in the nonce")
    func largeSequences() async {
        await propertyCheck(count: 60, input: Generators.sequenceStart, Gen<UInt64>.value(in: 0...999)) { start, seed in
            let pair = RatchetPair(seed: seed, sequence: start)
            let plaintext = Array("record at \(start)".utf8)
            var boxes: [[UInt8]] = []
            for sequence in start..<(start + 3) {
                let box = try plaintext.withUnsafeBytes { try pair.low.sealRecord(sequence: sequence, $0) }
                var tampered = box
                tampered[Int(sequence % UInt64(box.count))] ^= 0x01
                #expect(throws: CryptoError.authenticationFailed) {
                    try tampered.withUnsafeBytes { try pair.high.openRecord(sequence: sequence, $0) }
                }
                #expect(try box.withUnsafeBytes { try pair.high.openRecord(sequence: sequence, $0) }.copy == plaintext)
                boxes.append(box)
            }
            // The same keys with the chain started elsewhere: the same chain key seals under a
            // different nonce only if the whole 64-bit sequence number is in it.
            let elsewhere = start &+ (1 << 32) == 0 ? 1 : start &+ (1 << 32)
            let shifted = RatchetPair(seed: seed, sequence: elsewhere)
            let shiftedBox = try plaintext.withUnsafeBytes { try shifted.low.sealRecord(sequence: elsewhere, $0) }
            #expect(shiftedBox != boxes[0], "sequence \(start) and \(elsewhere) share a nonce")
            // After the last sequence number there is no other: sealing refuses instead of wrapping.
            if start == UInt64.max - 3 {
                #expect(throws: CryptoError.sequenceExhausted) {
                    try plaintext.withUnsafeBytes { try pair.low.sealRecord(sequence: UInt64.max, $0) }
                }
            }
        }
    }

    @Test("No box repeats across 20,000 records in each direction, nor across acks and confirmations")
    func noNonceReuse() throws {
        // Keys and nonces are internal; the observable consequence of a repeated (key, nonce) is
        // that the same plaintext seals to the same box. Seal one fixed block 20,000 times per
        // direction (each under its own ratchet key), plus acks and both confirmations (control
        // keys, counter nonces), and require every box to be different.
        let pair = RatchetPair(seed: 7)
        let block = [UInt8](repeating: 0, count: 16)
        let messagesPerDirection: UInt64 = 20_000
        var seen = Set<[UInt8]>()
        seen.reserveCapacity(Int(messagesPerDirection) * 2 + 2_002)
        var boxes = 0
        try block.withUnsafeBytes { buffer in
            for handler in [pair.low, pair.high] {
                for sequence in 1...messagesPerDirection {
                    seen.insert(try handler.sealRecord(sequence: sequence, buffer))
                }
                for _ in 0..<1_000 { seen.insert(try handler.sealAck(buffer).box) }
                seen.insert(try handler.sealConfirmation(buffer))
                boxes += Int(messagesPerDirection) + 1_001
            }
        }
        #expect(seen.count == boxes)
    }
}
