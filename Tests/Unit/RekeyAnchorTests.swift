import Testing

@testable import ChatCore

/// Where a re-key's new chains stand (issue 12, found by the simulator's fresh-instance attacker).
@Suite("Re-key beside the keys in use: the new chains stand where the hellos said")
struct RekeyAnchorTests {
    static func ratchets(_ byte: UInt8) -> (MessageRatchet, MessageRatchet) {
        let master = [UInt8](repeating: byte, count: 32)
        return (MessageRatchet(masterKey: master.withUnsafeBytes { SecureBytes(copying: $0) }, localSide: .low),
                MessageRatchet(masterKey: master.withUnsafeBytes { SecureBytes(copying: $0) }, localSide: .high))
    }

    static func records(_ outputs: inout SessionOutputs) -> [Signal] {
        outputs.drain().compactMap { output -> Signal? in
            guard case let .transmit(frame) = output, case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame),
                  signal.kind == .message else { return nil }
            return signal
        }
    }

    static func shown(_ outputs: inout SessionOutputs) -> [String] {
        outputs.drain().compactMap { if case let .received(message) = $0 { message.text } else { nil } }
    }

    /// A stranger's opening made Alice re-key beside her keys; her hello announced "next expected
    /// from Bob: 1". Bob's record 1 then reached her under the old keys, and her acknowledgement
    /// was lost. The re-key completes: Bob resumes at 1 (what she announced) and sends record 1
    /// again and record 2 under the new keys. Before, Alice anchored her new receive chain at 2
    /// (her own count) and Bob his send chain at 1: record 2 never opened, and the pair stayed
    /// CONNECTED delivering nothing.
    @Test("Records that cross a re-key do not put the new keys out of step")
    func recordsAcrossRekeyStayInStep() {
        let configuration = SessionConfiguration(room: InMemoryChat.room)
        var alice = ReliableChannel(configuration: configuration)
        var bob = ReliableChannel(configuration: configuration)
        var aliceOut = SessionOutputs()
        var bobOut = SessionOutputs()
        let first = ConversationContinuation(peerChanged: false, sending: .renumber(from: 1), restartsReceiving: true)
        alice.continueConversation(first, into: &aliceOut)
        bob.continueConversation(first, into: &bobOut)
        let (aliceOld, bobOld) = Self.ratchets(1)
        alice.open(ratchet: aliceOld, confirmation: nil, now: .zero, into: &aliceOut)
        bob.open(ratchet: bobOld, confirmation: nil, now: .zero, into: &bobOut)
        _ = bob.send("under the old keys", now: .zero, into: &bobOut)
        for record in Self.records(&bobOut) { _ = alice.receiveRecord(record, into: &aliceOut) }
        #expect(Self.shown(&aliceOut) == ["under the old keys"])
        // The re-key both sides confirmed: Alice's hello said 1, Bob's said 1.
        let rekey = ConversationContinuation(
            peerChanged: false, sending: .resume(nextExpected: 1), restartsReceiving: false, receivingFrom: 1)
        alice.close()
        bob.close()
        alice.continueConversation(rekey, into: &aliceOut)
        bob.continueConversation(rekey, into: &bobOut)
        let (aliceNew, bobNew) = Self.ratchets(2)
        alice.open(ratchet: aliceNew, confirmation: nil, now: .zero, into: &aliceOut)
        bob.open(ratchet: bobNew, confirmation: nil, now: .zero, into: &bobOut)
        _ = bob.send("under the new keys", now: .zero, into: &bobOut)
        for record in Self.records(&bobOut) { _ = alice.receiveRecord(record, into: &aliceOut) }
        #expect(Self.shown(&aliceOut) == ["under the new keys"])
    }
}
