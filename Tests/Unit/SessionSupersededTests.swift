import Testing

@testable import ChatCore

/// The superseded pairing (HandshakeMachine+Confirm.swift): a pairing a restart replaced after our
/// confirmation of it went out stays confirmable, but only beside keys in use (a re-key), never
/// older than the pairing in use, and at most `HandshakeMachine.supersededMax` of them.
@Suite("Superseded pairings: only beside keys in use, never older than the keys in use, at most 4")
struct SessionSupersededTests {
    /// A session without a password. `instance` (then `tag`): the first bytes of its instance ID,
    /// for tests that need the restart rule's order between two instances fixed; its keys stay random.
    static func session(instance: UInt8? = nil, tag: UInt8 = 0) -> SessionManager {
        let entropy: any EntropySource = instance.map {
            ScriptedEntropy(prefix: [$0, tag] + [UInt8](repeating: 0x5A, count: 14))
        } ?? SystemEntropy()
        let configuration = SessionConfiguration(room: InMemoryChat.room)
        return SessionManager(configuration: configuration, password: nil, entropy: entropy)
    }

    static func isOpening(_ signal: Signal) -> Bool { signal.kind == .keyExchange || signal.kind == .pake }

    /// Commit e24c0d9, found by the simulator's fresh-instance attacker on seed 8: in a first
    /// handshake (no keys in use) the victim paired with the peer and sent its confirmation; a
    /// stranger's opening made it open afresh, and the replaced pairing was kept as superseded.
    /// The peer's late confirmation of it then connected the victim, the newer handshake went on
    /// beside it (its hello named no conversation) and, completing, restarted the numbering: the
    /// peer's first message, shown under the old keys and its ACK lost, was shown again.
    /// Now the replaced pairing of a handshake without keys is wiped: the late confirmation is a
    /// stale copy, and the victim connects once, through its newest opening.
    @Test("A pairing replaced during the first handshake is not confirmed later; no message is shown twice")
    func firstHandshakePairingIsNotSuperseded() throws {
        // The victim's instance is below the stranger's and above nothing in particular: fixed,
        // so that the restart rule takes the same branch every run.
        let victim = Self.session(instance: 0x80)
        let peer = Self.session()
        let pump = Pump([victim, peer])
        // Phase 1: the relay holds the peer's confirmation of the first pairing.
        // Phase 2: it holds every opening and confirmation, and drops the victim's ACKs.
        var held: [(to: Int, signal: Signal)] = []
        var holdingAll = false
        pump.tap = { from, to, signal in
            if from == 1, signal.kind == .keyConfirm || holdingAll && Self.isOpening(signal) {
                held.append((to, signal))
                return []
            }
            if from == 0, holdingAll, signal.kind == .keyConfirm || Self.isOpening(signal) {
                held.append((to, signal))
                return []
            }
            if from == 0, holdingAll, signal.kind == .ack { return [] }
            return [(to, signal)]
        }
        pump.join()
        pump.run()
        #expect(peer.state == .connected, "the peer took the victim's confirmation")
        #expect(victim.state == .keySetup && held.count == 1)
        let late = held.removeFirst().signal
        // A stranger's opening (an instance below the victim's: the victim opens afresh and waits)
        // replaces the victim's pairing with the peer while that waits for the peer's confirmation.
        holdingAll = true
        let opening = try #require(pump.sent(0).last(where: Self.isOpening))
        let version = try #require(opening.payload?.first)
        let strangerHello = Forge.hello(version: version, instance: [UInt8](repeating: 0x01, count: 16), epoch: 1)
        pump.deliver(Signal(kind: opening.kind, payload: strangerHello, key: try Forge.impostorKey(password: false)),
                     to: 0)
        #expect(victim.handshake.superseded.isEmpty, "a pairing without keys in use was kept as superseded")
        // The peer's confirmation of the replaced pairing arrives late: a stale copy now.
        let rejectedBefore = victim.statistics.framesRejected
        pump.deliver(late, to: 0)
        #expect(victim.state == .keySetup, "connected on a pairing a restart had replaced")
        #expect(victim.statistics.framesRejected == rejectedBefore + 1)
        // The peer writes on the keys it holds; the victim's ACKs are lost.
        _ = peer.send("one", now: .zero)
        pump.run()
        // Then the relay lets everything through: the victim's newer opening completes a handshake.
        pump.tap = nil
        holdingAll = false
        for (to, signal) in held { pump.deliver(signal, to: to) }
        pump.run()
        #expect(victim.state == .connected && peer.state == .connected)
        _ = peer.send("two", now: .zero)
        pump.run()
        #expect(pump.received(0) == ["one", "two"], "each message exactly once, in order")
        #expect(pump.ended(0).isEmpty && pump.ended(1).isEmpty)
    }

    /// `stranger`'s confirmation of its pairing with the victim, once it has the victim's answer
    /// (`victimSent`: the victim's opening and confirmation for it).
    static func strangerConfirmation(_ stranger: SessionManager, victimSent: [Signal]) -> Signal? {
        let strangerPump = Pump([stranger])
        for signal in victimSent where isOpening(signal) || signal.kind == .keyConfirm {
            strangerPump.deliver(signal, to: 0)
        }
        return strangerPump.sent(0).last { $0.kind == .keyConfirm }
    }

    /// A CONNECTED victim answers each new stranger's opening with a fresh opening and its
    /// confirmation; each next stranger's opening supersedes the pairing before. Keeps the victim's
    /// frames per stranger so that the test can make that stranger confirm later.
    final class Rekeys {
        let victim: SessionManager
        let pump: Pump
        var strangers: [SessionManager] = []
        /// What the victim sent in answer to stranger `k`'s opening.
        var answers: [[Signal]] = []

        init(victim: SessionManager, pump: Pump) {
            (self.victim, self.pump) = (victim, pump)
        }

        /// A new stranger (a real session, so that its confirmation can be valid) opens to the victim.
        func strangerOpens() throws {
            // Its instance is above the victim's: the restart rule has the victim pair at once.
            let stranger = SessionSupersededTests.session(instance: 0xF0, tag: UInt8(strangers.count))
            let strangerPump = Pump([stranger])
            strangerPump.join()
            let opening = try #require(strangerPump.sent(0).last(where: SessionSupersededTests.isOpening))
            let before = pump.sent(0).count
            pump.deliver(opening, to: 0)
            strangers.append(stranger)
            answers.append(Array(pump.sent(0)[before...]))
        }

        func confirmation(of index: Int) -> Signal? {
            SessionSupersededTests.strangerConfirmation(strangers[index], victimSent: answers[index])
        }
    }

    @Test("A 5th superseded pairing evicts the oldest: its confirmation is refused, the next oldest still confirms")
    func fifthSupersededEvictsOldest() throws {
        let victim = Self.session(instance: 0x01)
        let peer = Self.session()
        let pump = Pump([victim, peer])
        pump.join()
        pump.run()
        #expect(victim.state == .connected && peer.state == .connected)
        // From now on only the test moves frames to the victim.
        pump.tap = { _, _, _ in [] }
        let rekeys = Rekeys(victim: victim, pump: pump)
        // Six strangers: the 2nd … 6th openings each supersede the pairing before (5 of them).
        for _ in 0..<6 { try rekeys.strangerOpens() }
        let superseded = victim.handshake.superseded.map(\.pairing.peer.instance)
        #expect(superseded == rekeys.strangers[1..<5].map(\.localInstance), "the four newest, oldest first")
        #expect(HandshakeMachine.supersededMax == 4)
        let number = victim.safetyNumber
        // Stranger 0's pairing was pushed out: its (valid) confirmation is a stale copy now.
        let evicted = try #require(rekeys.confirmation(of: 0))
        let rejectedBefore = victim.statistics.framesRejected
        pump.deliver(evicted, to: 0)
        #expect(victim.statistics.framesRejected == rejectedBefore + 1)
        #expect(victim.safetyNumber == number && victim.handshake.superseded.count == 4)
        // Stranger 1's, the oldest kept, is still taken: the victim moves to its keys.
        let kept = try #require(rekeys.confirmation(of: 1))
        let completedBefore = victim.statistics.handshakesCompleted
        pump.deliver(kept, to: 0)
        #expect(victim.statistics.handshakesCompleted == completedBefore + 1)
        #expect(victim.state == .connected && victim.safetyNumber != number)
        #expect(victim.handshake.superseded.isEmpty, "a confirmed pairing drops the superseded ones")
    }

    @Test("Under many re-keys the superseded list never holds more than 4, and evicted pairings' keys are wiped")
    func boundHoldsUnderManyRekeys() throws {
        let victim = Self.session(instance: 0x01)
        let peer = Self.session()
        let pump = Pump([victim, peer])
        pump.join()
        pump.run()
        pump.tap = { _, _, _ in [] }
        let rekeys = Rekeys(victim: victim, pump: pump)
        var evicted: [MessageRatchet] = []
        var seen: [HandshakeMachine.Superseded] = []
        for round in 0..<40 {
            try rekeys.strangerOpens()
            let now = victim.handshake.superseded
            #expect(now.count == min(round, HandshakeMachine.supersededMax), "round \(round)")
            for old in seen where !now.contains(where: { $0.pairing.peer == old.pairing.peer }) {
                if let ratchet = old.pairing.proof.ratchet { evicted.append(ratchet) }
            }
            seen = now
        }
        #expect(victim.state == .connected)
        #expect(evicted.count == 40 - 1 - HandshakeMachine.supersededMax)
        #expect(evicted.allSatisfy { $0.isWiped }, "an evicted pairing's keys stay in memory")
    }
}
