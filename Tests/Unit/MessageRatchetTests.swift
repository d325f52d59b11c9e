import CSodium
@_spi(Testing) import ChatCore
import Testing

/// The symmetric ratchet: round trips, one key per message, forward secrecy, direction, tamper.
@Suite("MessageRatchet: per-message keys with forward secrecy")
struct MessageRatchetTests {
    static let master: [UInt8] = (0..<32).map { UInt8($0 * 7 & 0xFF) }

    /// A pair of ratchets on the same master key, one per side.
    static func pair(master: [UInt8] = master) -> (low: MessageRatchet, high: MessageRatchet) {
        (MessageRatchet(masterKey: master.withUnsafeBytes { SecureBytes(copying: $0) }, localSide: .low),
         MessageRatchet(masterKey: master.withUnsafeBytes { SecureBytes(copying: $0) }, localSide: .high))
    }

    // MARK: An independent key schedule, straight from the documented construction

    /// KDF(key, id, context) with libsodium directly, as MessageRatchet's doc comment specifies.
    static func kdf(_ key: [UInt8], id: UInt64, context: String) -> [UInt8] {
        precondition(context.utf8.count == 8)
        var out = [UInt8](repeating: 0, count: 32)
        let status = context.withCString { ctx in crypto_kdf_derive_from_key(&out, 32, id, ctx, key) }
        precondition(status == 0)
        return out
    }

    /// chain_0 for low->high (id 1) or high->low (id 2), then message keys and chain keys.
    static func schedule(direction id: UInt64, steps: Int) -> (chains: [[UInt8]], messageKeys: [[UInt8]]) {
        var chains = [kdf(master, id: id, context: "SC_CHAIN")]
        var messageKeys: [[UInt8]] = []
        for step in 0..<steps {
            messageKeys.append(kdf(chains[step], id: 1, context: "SC_RATCH"))
            chains.append(kdf(chains[step], id: 2, context: "SC_RATCH"))
        }
        return (chains, messageKeys)
    }

    static func nonce(side: UInt8, sequence: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: 24)
        nonce[0] = 1  // Purpose: record.
        nonce[1] = side
        withUnsafeBytes(of: sequence.bigEndian) { for index in 0..<8 { nonce[16 + index] = $0[index] } }
        return nonce
    }

    private func seal(_ ratchet: MessageRatchet, _ sequence: UInt64, _ text: String) throws -> [UInt8] {
        try Array(text.utf8).withBytes { buffer throws(CryptoError) in
            try ratchet.sealRecord(sequence: sequence, buffer)
        }
    }

    private func open(_ ratchet: MessageRatchet, _ sequence: UInt64, _ box: [UInt8]) throws -> String {
        try box.withBytes { buffer throws(CryptoError) in try ratchet.openRecord(sequence: sequence, buffer) }
            .testCopy.utf8String
    }

    // MARK: Tests

    @Test("Round trip in both directions, interleaved, many messages")
    func roundTrip() throws {
        let (low, high) = Self.pair()
        for sequence in UInt64(1)...50 {
            #expect(try open(high, sequence, try seal(low, sequence, "to high #\(sequence)")) == "to high #\(sequence)")
            #expect(try open(low, sequence, try seal(high, sequence, "to low #\(sequence)")) == "to low #\(sequence)")
        }
        #expect(try open(high, 51, try seal(low, 51, "")) == "")  // Empty records work too.
        #expect(low.nextSendSequence == 52 && high.nextReceiveSequence == 52)
        #expect(low.recordsSealed == 51 && high.recordsOpened == 51)
    }

    @Test("Message key n is KDF(chain_n, 1) of the documented schedule, and each is used once")
    func keySchedule() throws {
        let (low, _) = Self.pair()
        let reference = Self.schedule(direction: 1, steps: 8)
        var boxes: [[UInt8]] = []
        for sequence in UInt64(1)...8 {
            let box = try seal(low, sequence, "same text")
            boxes.append(box)
            // Open with the independently derived key: proves which key sealed it.
            var plain = [UInt8](repeating: 0, count: box.count - 16)
            let status = crypto_secretbox_open_easy(
                &plain, box, UInt64(box.count), Self.nonce(side: 0, sequence: sequence),
                reference.messageKeys[Int(sequence) - 1])
            #expect(status == 0, "record \(sequence) under message key \(sequence - 1)")
            #expect(plain.utf8String == "same text")
        }
        #expect(Set(boxes).count == boxes.count)
        #expect(Set(reference.messageKeys).count == reference.messageKeys.count)
        // A sequence number whose key was used is refused: the key no longer exists.
        #expect(throws: CryptoError.replayed(sequence: 8, expected: 9)) { try seal(low, 8, "again") }
        #expect(throws: CryptoError.outOfOrder(sequence: 11, expected: 9)) { try seal(low, 11, "skip") }
    }

    @Test("Forward secrecy: after step n the ratchet holds chain_n and nothing older")
    func forwardSecrecy() throws {
        let masterKey = Self.master.withUnsafeBytes { SecureBytes(copying: $0) }
        let low = MessageRatchet(masterKey: masterKey, localSide: .low)
        #expect(masterKey.isWiped, "the master key is wiped once the four keys exist")
        let sending = Self.schedule(direction: 1, steps: 6)
        let receiving = Self.schedule(direction: 2, steps: 6)
        let high = MessageRatchet(masterKey: Self.master.withUnsafeBytes { SecureBytes(copying: $0) }, localSide: .high)

        for step in 0...5 {
            let held = low.heldSecretsForTesting()
            // Exactly: the send chain is chain_step; the receive chain is still chain_0 (nothing opened).
            #expect(held[0] == sending.chains[step], "send chain after \(step) records")
            #expect(held[1] == receiving.chains[0])
            // Nothing held is the master key, an earlier chain key or any message key. The old
            // chain key's buffer was overwritten in place, so its bytes are gone, not just unreferenced.
            let earlier = [Self.master] + sending.chains[0..<step] + sending.messageKeys + receiving.messageKeys
            for secret in held {
                #expect(!earlier.contains(secret), "after \(step) records the ratchet holds an earlier key")
            }
            // And the buffers each step derives into hold nothing between steps.
            #expect((low.scratchForTesting() + high.scratchForTesting()).allSatisfy { $0.allSatisfy { $0 == 0 } })
            #expect(try open(high, UInt64(step + 1), try seal(low, UInt64(step + 1), "m\(step)")) == "m\(step)")
        }
        // The receiving side moved its receive chain the same way.
        #expect(high.heldSecretsForTesting()[1] == sending.chains[6])
        // And the step is one-way by construction: chain_{n+1} and key n are two keyed-BLAKE2b
        // outputs of chain_n; recovering chain_n (hence key n) from chain_{n+1} is a BLAKE2b
        // preimage. What the test can show is that the ratchet never keeps chain_n itself.
    }

    @Test("A record sealed for one direction does not open in the other")
    func wrongDirection() throws {
        let (low, high) = Self.pair()
        let box = try seal(low, 1, "from low")
        // Low opening its own record (a reflection) fails: different chain, different nonce.
        #expect(throws: CryptoError.authenticationFailed) { try open(low, 1, box) }
        // Two ratchets on the same side cannot talk either.
        let (otherLow, _) = Self.pair()
        #expect(throws: CryptoError.authenticationFailed) { try open(otherLow, 1, box) }
        #expect(try open(high, 1, box) == "from low")
    }

    @Test("Tampering anywhere fails, and a failed open does not move the chain")
    func tamper() throws {
        let (low, high) = Self.pair()
        let box = try seal(low, 1, "attack at dawn")
        for index in box.indices {
            var altered = box
            altered[index] ^= 0x20
            #expect(throws: CryptoError.authenticationFailed, "byte \(index)") { try open(high, 1, altered) }
        }
        #expect(throws: CryptoError.truncated(length: 15)) { try open(high, 1, Array(box.prefix(15))) }
        #expect(throws: CryptoError.authenticationFailed) { try open(high, 1, Array(box.dropLast())) }
        #expect(high.nextReceiveSequence == 1)
        #expect(try open(high, 1, box) == "attack at dawn")
    }

    @Test("Replays and gaps are refused before any decryption")
    func order() throws {
        let (low, high) = Self.pair()
        let first = try seal(low, 1, "one")
        let second = try seal(low, 2, "two")
        let third = try seal(low, 3, "three")
        #expect(throws: CryptoError.outOfOrder(sequence: 3, expected: 1)) { try open(high, 3, third) }
        #expect(try open(high, 1, first) == "one")
        #expect(throws: CryptoError.replayed(sequence: 1, expected: 2)) { try open(high, 1, first) }
        // A box presented under another sequence number does not open (the nonce binds it).
        #expect(throws: CryptoError.authenticationFailed) { try open(high, 2, third) }
        #expect(try open(high, 2, second) == "two")
        #expect(try open(high, 3, third) == "three")
    }

    @Test("Resume: a new ratchet can start both directions at a later sequence number")
    func resume() throws {
        let (low, high) = Self.pair()
        low.resume(nextSendSequence: 41, nextReceiveSequence: 7)
        high.resume(nextSendSequence: 7, nextReceiveSequence: 41)
        #expect(try open(high, 41, try seal(low, 41, "continued")) == "continued")
        #expect(try open(low, 7, try seal(high, 7, "back")) == "back")
        // Chain position 0 served sequence 41: the first record used message key 0.
        let reference = Self.schedule(direction: 1, steps: 1)
        let (fresh, _) = Self.pair()
        fresh.resume(nextSendSequence: 41, nextReceiveSequence: 1)
        let box = try seal(fresh, 41, "k0")
        var plain = [UInt8](repeating: 0, count: box.count - 16)
        #expect(crypto_secretbox_open_easy(&plain, box, UInt64(box.count), Self.nonce(side: 0, sequence: 41),
                                           reference.messageKeys[0]) == 0)
    }

    @Test("Confirmations and acks use the control keys: round trip, reflection and replay refused")
    func control() throws {
        let (low, high) = Self.pair()
        let confirmation = try Array("transcript".utf8).withBytes { buffer throws(CryptoError) in
            try low.sealConfirmation(buffer)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try confirmation.withBytes { buffer throws(CryptoError) in try low.openConfirmation(buffer) }
        }
        let opened = try confirmation.withBytes { buffer throws(CryptoError) in try high.openConfirmation(buffer) }
        #expect(opened.testCopy.utf8String == "transcript")

        let ack1 = try Array("ack 1".utf8).withBytes { buffer throws(CryptoError) in try high.sealAck(buffer) }
        let ack2 = try Array("ack 2".utf8).withBytes { buffer throws(CryptoError) in try high.sealAck(buffer) }
        #expect(ack1.counter == 1 && ack2.counter == 2)
        let body = try ack2.box.withBytes { buffer throws(CryptoError) in try low.openAck(counter: 2, buffer) }
        #expect(body.testCopy.utf8String == "ack 2")
        #expect(throws: CryptoError.replayed(sequence: 1, expected: 3)) {
            try ack1.box.withBytes { buffer throws(CryptoError) in try low.openAck(counter: 1, buffer) }
        }
        // Control traffic does not move the record chains.
        #expect(low.recordsSealed == 0 && high.recordsOpened == 0)
    }

    @Test("wipe: every key gone, every operation refused with noKeys")
    func wipe() throws {
        let (low, high) = Self.pair()
        let box = try seal(low, 1, "before")
        high.wipe()
        #expect(high.isWiped)
        #expect(throws: CryptoError.noKeys) { try open(high, 1, box) }
        #expect(throws: CryptoError.noKeys) { try seal(high, 1, "after") }
        #expect(throws: CryptoError.noKeys) {
            try [UInt8]().withBytes { buffer throws(CryptoError) in try high.sealAck(buffer) }
        }
    }

    @Test("Lent open: same plaintext as the allocating open at every size, and no key or plaintext left behind")
    func lentOpen() throws {
        let (low, high) = Self.pair()
        let isZero = { (bytes: [UInt8]) in bytes.allSatisfy { $0 == 0 } }
        // Sizes across the open buffer's growth (256 bytes, then doubling) and back down.
        let sizes = [0, 1, 255, 256, 257, 5_000, 70_000, 3, 600]
        for (index, size) in sizes.enumerated() {
            let sequence = UInt64(index + 1)
            let text = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
            let box = try text.withBytes { buffer throws(CryptoError) in
                try low.sealRecord(sequence: sequence, buffer)
            }
            #expect(low.scratchForTesting().allSatisfy(isZero), "seal left the step's keys in the scratch")
            // A damaged copy first: refused, nothing lent, nothing moved, nothing left behind.
            var damaged = box
            damaged[damaged.count / 2] ^= 1
            var lent = false
            #expect(throws: CryptoError.authenticationFailed) {
                try damaged.withBytes { buffer throws(CryptoError) in
                    try high.openRecord(sequence: sequence, buffer) { _ in lent = true }
                }
            }
            #expect(!lent && high.nextReceiveSequence == sequence)
            #expect(high.scratchForTesting().allSatisfy(isZero), "a failed open left key or plaintext bytes")
            // Alternate the two APIs: they must agree with each other and with what was sealed.
            let opened: [UInt8]
            if index.isMultiple(of: 2) {
                opened = try box.withBytes { buffer throws(CryptoError) in
                    try high.openRecord(sequence: sequence, buffer) { Array($0) }
                }
            } else {
                opened = try box.withBytes { buffer throws(CryptoError) in
                    try high.openRecord(sequence: sequence, buffer)
                }.testCopy
            }
            #expect(opened == text, "record of \(size) bytes")
            #expect(high.scratchForTesting().allSatisfy(isZero), "the open left key or plaintext bytes")
            #expect(high.nextReceiveSequence == sequence + 1)
        }
        // The buffer grew to hold the largest record (70,000 bytes) and no further than doubling.
        let bufferBytes = try #require(high.scratchForTesting().last).count
        #expect(bufferBytes >= 70_000 && bufferBytes < 2 * 70_000)
        high.wipe()
        #expect(high.scratchForTesting().isEmpty, "wipe releases the scratch and the open buffer")
    }

    @Test("Master key derivation: deterministic, bound to the secret and to the transcript")
    func masterKey() {
        func derive(_ secret: [UInt8], _ transcript: [UInt8]) -> [UInt8] {
            SessionKeyDerivation.masterKey(
                handshakeSecret: secret.withUnsafeBytes { SecureBytes(copying: $0) }, transcriptHash: transcript
            ).testCopy
        }
        let isk = [UInt8](repeating: 0x11, count: 64)
        #expect(derive(isk, [1, 2, 3]) == derive(isk, [1, 2, 3]))
        #expect(derive(isk, [1, 2, 3]).count == 32)
        #expect(derive(isk, [1, 2, 3]) != derive(isk, [1, 2, 4]))
        #expect(derive(isk, [1, 2, 3]) != derive([UInt8](repeating: 0x11, count: 32), [1, 2, 3]))
    }

    @Test("CPace to ratchet: a symmetric run's ISK and sides give two ratchets that talk")
    func fromCPace() throws {
        let ci = CPaceParty.channelIdentifier(room: try RoomCode("ROOM42"))
        let password = try Password("oyster-lemon")
        let alice = try CPaceParty(password: password, channelIdentifier: ci, associatedData: [0xA],
                                   setting: .symmetric, entropy: SystemEntropy())
        let bob = try CPaceParty(password: password, channelIdentifier: ci, associatedData: [0xB],
                                 setting: .symmetric, entropy: SystemEntropy())
        let pendingAlice = try alice.receive(peerShare: bob.share, peerAssociatedData: bob.associatedData)
        let pendingBob = try bob.receive(peerShare: alice.share, peerAssociatedData: alice.associatedData)
        let iskAlice = try pendingAlice.confirm(peerTag: pendingBob.localTag)
        let iskBob = try pendingBob.confirm(peerTag: pendingAlice.localTag)
        let masterAlice = SessionKeyDerivation.masterKey(
            handshakeSecret: iskAlice, transcriptHash: pendingAlice.sidOutput)
        let masterBob = SessionKeyDerivation.masterKey(handshakeSecret: iskBob, transcriptHash: pendingBob.sidOutput)
        let ratchetAlice = MessageRatchet(masterKey: masterAlice, localSide: pendingAlice.localSide)
        let ratchetBob = MessageRatchet(masterKey: masterBob, localSide: pendingBob.localSide)
        #expect(try open(ratchetBob, 1, try seal(ratchetAlice, 1, "hi bob")) == "hi bob")
        #expect(try open(ratchetAlice, 1, try seal(ratchetBob, 1, "hi alice")) == "hi alice")
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` keeping a typed error typed (ChatCore has the same helper, internally).
    fileprivate func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = withUnsafeBytes { buffer in
            do throws(E) { return .success(try body(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
