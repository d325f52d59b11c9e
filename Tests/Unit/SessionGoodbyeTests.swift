import Testing

@testable import ChatCore

/// The goodbye (issue 13's "a clean goodbye", a message of protocol v3): leaving abandons nothing
/// the peer sent before it learned of it, and what the peer sends after is reported at once.
@Suite("Goodbye: a sealed close that waits for what is in flight")
struct SessionGoodbyeTests {
    static func sent(_ chat: InMemoryChat, _ index: Int, kind: SignalKind) -> Int {
        chat.transmittedKinds(index).filter { $0.kind == kind }.count
    }

    @Test("Leaving waits for the peer's records held behind a lost one; nothing is undeliverable on either side")
    func leaveWaitsForRecordsInFlight() {
        for password in ["oyster-lemon", nil] as [String?] {
            let chat = InMemoryChat()
            chat.addSession(password: password)
            chat.addSession(password: password)
            // Bob's first record to Alice is lost, and so is its fast retransmission: the other
            // eleven wait, unopened, behind it.
            var lost: [UInt8]?
            chat.tap = { to, frame in
                guard to == 0, InMemoryChat.isSignal(frame, .message), lost == nil || lost == frame else { return [frame] }
                lost = frame
                return []
            }
            for index in 1...12 { chat.send(1, "bob \(index)") }
            #expect(chat.received(0).isEmpty)
            chat.sessions[0].handle(.leave, now: chat.now)
            chat.run()
            #expect(chat.sessions[0].state == .connected, "Alice waits for what Bob sent")
            #expect(Self.sent(chat, 0, kind: .goodbye) >= 1)
            chat.tap = nil
            chat.advance(by: .seconds(3))
            #expect(chat.received(0) == (1...12).map { "bob \($0)" })
            #expect(chat.sessions[0].state == .destroyed)
            #expect(chat.ended(0) == [.userQuit])
            #expect(chat.undeliverable(0).isEmpty && chat.undeliverable(1).isEmpty)
            #expect(chat.delivered(1).count == 12 && chat.sessions[1].pendingCount == 0)
            #expect(chat.log[1].contains(.notice(.peerLeaving)))
        }
    }

    @Test("After the peer's goodbye, what is sent is reported undeliverable (peer_left) at once, never sent")
    func sendAfterGoodbye() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        chat.sessions[0].handle(.leave, now: chat.now)
        chat.run()
        #expect(chat.sessions[0].state == .destroyed, "nothing in flight: the goodbye is one round trip")
        let recordsBefore = Self.sent(chat, 1, kind: .message)
        let id = chat.sessions[1].send("too late", now: chat.now)
        chat.run()
        #expect(chat.log[1].contains(.undeliverable([try! id.get()], .peerLeft)))
        #expect(Self.sent(chat, 1, kind: .message) == recordsBefore)
        #expect(chat.sessions[1].pendingCount == 0)
    }

    @Test("Leaving at once (quit) still tells the peer: its records in flight are reported when it hears PEER_LEFT")
    func quitTellsThePeer() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        // Alice hears nothing more from Bob: his record stays unconfirmed.
        chat.tap = { to, frame in to == 0 && InMemoryChat.isSignal(frame, .message) ? [] : [frame] }
        chat.send(1, "never read")
        chat.sessions[0].handle(.quit, now: chat.now)
        chat.run()
        chat.disconnect(0)
        #expect(chat.log[1].contains(.notice(.peerLeaving)))
        #expect(chat.undeliverable(1) == [MessageID(1)])
        #expect(chat.log[1].contains { if case .undeliverable(_, .peerLeft) = $0 { true } else { false } })
    }

    @Test("The leaving peer has said all once every record its goodbye counts arrived, or once it is gone")
    func peerHasSaidAll() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        // Bob's first record to Alice is lost, and so is every copy of it until the tap goes.
        var lost: [UInt8]?
        chat.tap = { to, frame in
            guard to == 0, InMemoryChat.isSignal(frame, .message), lost == nil || lost == frame else { return [frame] }
            lost = frame
            return []
        }
        for index in 1...3 { chat.send(1, "bob \(index)") }
        chat.sessions[1].handle(.leave, now: chat.now)
        chat.run()
        #expect(chat.log[0].contains(.notice(.peerLeaving)))
        #expect(!chat.sessions[0].peerHasSaidAll, "Bob's first record is still on its way")
        #expect(!chat.sessions[1].peerHasSaidAll, "Alice is not leaving")
        chat.tap = nil
        chat.advance(by: .seconds(3))
        #expect(chat.received(0) == ["bob 1", "bob 2", "bob 3"])
        #expect(chat.sessions[0].peerHasSaidAll)

        // Gone for good: a quit whose record never arrives, then the peer's connection ends.
        let other = InMemoryChat()
        other.addSession()
        other.addSession()
        other.tap = { to, frame in to == 0 && InMemoryChat.isSignal(frame, .message) ? [] : [frame] }
        other.send(1, "never read")
        other.sessions[1].handle(.quit, now: other.now)
        other.run()
        #expect(other.log[0].contains(.notice(.peerLeaving)))
        #expect(!other.sessions[0].peerHasSaidAll)
        other.disconnect(1)
        #expect(other.sessions[0].peerHasSaidAll)
    }

    @Test("A leaver whose link drops mid-goodbye comes back: what the peer abandoned at PEER_LEFT is not waited for")
    func leaverComesBack() {
        // Bob's records are abandoned (undeliverable, peer_left) when Alice's link drops after her
        // goodbye began. Alice reconnects (a leave without keys waits for them) and must finish her
        // goodbye: Bob's BYEs no longer count what he abandoned (she used to wait for it for ever).
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        chat.tap = { to, frame in to == 0 && InMemoryChat.isSignal(frame, .message) ? [] : [frame] }
        chat.send(1, "bob 1")
        chat.send(1, "bob 2")
        chat.sessions[0].handle(.leave, now: chat.now)
        chat.run()
        chat.disconnect(0)
        #expect(chat.undeliverable(1).count == 2, "Bob was told Alice left for good")
        chat.tap = nil
        chat.connect(0)
        chat.advance(by: .seconds(10))
        #expect(chat.sessions[0].state == .destroyed)
        #expect(chat.ended(0) == [.userQuit])
        #expect(chat.received(0).isEmpty)
    }

    @Test("Both leave at once: each waits for the other's records, then both end; no BYE ping-pong")
    func bothLeave() {
        let chat = InMemoryChat()
        chat.addSession(password: "oyster-lemon")
        chat.addSession(password: "oyster-lemon")
        var held: [(Int, [UInt8])] = []
        chat.tap = { to, frame in
            if InMemoryChat.isSignal(frame, .message) {
                held.append((to, frame))
                return []
            }
            return [frame]
        }
        chat.send(0, "from alice")
        chat.send(1, "from bob")
        for index in 0..<2 { chat.sessions[index].handle(.leave, now: chat.now) }
        chat.run()
        chat.tap = nil
        #expect(chat.sessions.allSatisfy { $0.state == .connected })
        for (to, frame) in held { chat.inject(frame, to: to) }
        chat.advance(by: .seconds(2))
        #expect(chat.sessions.allSatisfy { $0.state == .destroyed })
        #expect(chat.received(0) == ["from bob"] && chat.received(1) == ["from alice"])
        #expect(chat.undeliverable(0).isEmpty && chat.undeliverable(1).isEmpty)
        #expect(Self.sent(chat, 0, kind: .goodbye) < 8 && Self.sent(chat, 1, kind: .goodbye) < 8)
    }

    @Test("Leaving without keys (no peer yet) ends at once")
    func leaveWithoutPeer() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.sessions[0].handle(.leave, now: chat.now)
        chat.run()
        #expect(chat.sessions[0].state == .destroyed)
    }

    @Test("Leaving while a link is down (the peer did not say goodbye) waits for the keys, then says goodbye")
    func leaveWhileDisconnectedWaits() {
        for password in ["oyster-lemon", nil] as [String?] {
            let chat = InMemoryChat()
            chat.addSession(password: password)
            chat.addSession(password: password)
            // Bob's record to Alice is lost, then Bob's link drops; Alice, with nothing of her own
            // pending, leaves. (The simulator's clean-leave found this: she ended at once, and Bob
            // later reported his message undeliverable although she had drain time to spare.)
            chat.tap = { to, frame in to == 0 && InMemoryChat.isSignal(frame, .message) ? [] : [frame] }
            chat.send(1, "in flight")
            chat.disconnect(1)
            #expect(chat.sessions[0].state != .connected)
            chat.sessions[0].handle(.leave, now: chat.now)
            chat.run()
            #expect(chat.sessions[0].state != .destroyed, "Alice waits: Bob's record may still come")
            chat.tap = nil
            chat.connect(1)
            chat.advance(by: .seconds(5))
            #expect(chat.received(0) == ["in flight"])
            #expect(chat.sessions[0].state == .destroyed && chat.ended(0) == [.userQuit])
            #expect(chat.delivered(1) == [MessageID(1)] && chat.undeliverable(1).isEmpty)
            let bobHeardTheGoodbye = chat.log[1].contains(.notice(.peerLeaving))
            #expect(bobHeardTheGoodbye)
        }
    }

    @Test("Leaving after the peer said goodbye and its connection ended: it is gone for good, so end at once")
    func leaveAfterPeerGone() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        chat.sessions[1].handle(.leave, now: chat.now)
        chat.run()
        #expect(chat.sessions[1].state == .destroyed)
        chat.disconnect(1)
        #expect(chat.sessions[0].state != .connected)
        chat.sessions[0].handle(.leave, now: chat.now)
        chat.run()
        #expect(chat.sessions[0].state == .destroyed)
    }

    @Test("A replayed BYE is refused; so is a sealed one whose numbers the conversation never reached")
    func forgedGoodbyes() throws {
        let chat = InMemoryChat()
        var bye: [UInt8]?
        chat.tap = { to, frame in
            if to == 1, bye == nil, InMemoryChat.isSignal(frame, .goodbye) { bye = frame }
            return [frame]
        }
        chat.addSession()
        chat.addSession()
        // Sealed with Bob's own keys, so only the bounds can refuse it: it claims that Bob received
        // Alice's record 1000, and that he sent 2^64 - 2 records.
        for numbers: [UInt64] in [[1000, 0, 0], [0, .max - 1, 0], [0, 0, 1]] {
            let ratchet = try #require(chat.sessions[1].channel.ratchet)
            var body: [UInt8] = [1]
            for number in numbers { BigEndian.append(number, to: &body) }
            let sealed = try body.withBytes { buffer throws(CryptoError) in try ratchet.sealGoodbye(buffer) }
            var payload: [UInt8] = []
            BigEndian.append(sealed.counter, to: &payload)
            payload += sealed.box
            chat.inject(WireCodec.encode(RelayMessage.signal(Signal(kind: .goodbye, payload: payload))), to: 0)
            #expect(chat.rejections(0).last == .handshake(.inconsistentResume), "\(numbers)")
        }
        #expect(!chat.log[0].contains(.notice(.peerLeaving)))
        chat.sessions[0].handle(.leave, now: chat.now)
        chat.run()
        let frame = try #require(bye)
        chat.inject(frame, to: 1)  // Replayed: its counter is spent.
        #expect(chat.rejections(1).contains { if case .crypto(.replayed) = $0 { true } else { false } })
    }
}

extension SessionGoodbyeTests {
    @Test("Key continuity survives a confirmation lost one way: the next handshake continues, in both modes")
    func lostConfirmationThenReconnect() throws {
        for password in ["oyster-lemon", nil] as [String?] {
            let chat = InMemoryChat()
            // Alice's first confirmation never reaches Bob: Alice is CONNECTED, Bob is not.
            var dropped = false
            chat.tap = { to, frame in
                if to == 1, !dropped, InMemoryChat.isSignal(frame, .keyConfirm) {
                    dropped = true
                    return []
                }
                return [frame]
            }
            chat.addSession(password: password)
            chat.addSession(password: password)
            #expect(chat.sessions[0].state == .connected && chat.sessions[1].state == .keySetup)
            let number = try #require(chat.sessions[0].safetyNumber)
            // Bob's link breaks before his retransmission brings Alice's confirmation again.
            chat.disconnect(1)
            chat.connect(1)
            chat.advance(by: .seconds(5))
            #expect(chat.sessions.allSatisfy { $0.state == .connected }, "\(chat.sessions.map(\.state))")
            #expect(chat.sessions[1].safetyNumber == number, "continued from the secret Bob kept")
            #expect(chat.ended(0).isEmpty && chat.ended(1).isEmpty)
            #expect(chat.sessions[0].passwordRunsUnconfirmed == 0)
            chat.send(1, "through")
            #expect(chat.received(0) == ["through"])
        }
    }
}
