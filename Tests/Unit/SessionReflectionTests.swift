import ChatCore
import Testing

@Suite("A session's own handshake reflected back at it")
struct SessionReflectionTests {
    /// A relay that sends a client its own earlier KEY_EXCHANGE must not make it take itself for
    /// a new peer: that retired the real peer's instance, so every later KEY_EXCHANGE from the
    /// real peer was refused and the two could never talk again. (Seen in a FuzzSession trace of a
    /// replayed frame.)
    @Test("Its own KEY_EXCHANGE replayed to a connected session is refused as a reflection; the chat goes on")
    func ownKeyExchangeReflected() throws {
        let chat = InMemoryChat()
        var ownHello: [UInt8]?
        chat.tap = { to, frame in
            if to == 1, ownHello == nil, InMemoryChat.isSignal(frame, .keyExchange) { ownHello = frame }
            return [frame]
        }
        chat.addSession()
        chat.addSession()
        chat.tap = nil
        #expect(chat.sessions[0].state == .connected)
        chat.inject(try #require(ownHello), to: 0)
        #expect(chat.rejections(0).last == .crypto(.reflectedPublicKey))
        #expect(chat.sessions[0].state == .connected)
        chat.send(0, "still talking")
        chat.send(1, "still listening")
        #expect(chat.received(1) == ["still talking"])
        #expect(chat.received(0) == ["still listening"])
        // And after a real re-key the peer is still accepted.
        chat.disconnect(1)
        chat.connect(1)
        #expect(chat.sessions[0].state == .connected && chat.sessions[1].state == .connected)
    }

    /// A relay that answers a session's opening with the session's own key (or CPace share) under
    /// another instance's hello: pairing with it would seal a confirmation (or, with a password,
    /// give out a CPace tag and abort the run) for a "peer" that is the session itself. It must be
    /// refused as a reflection, cost nothing, and leave the handshake with the real peer intact.
    @Test("Our own key or share under another instance's hello is refused, in both modes", arguments: [nil, "apple-banana"])
    func ownKeyUnderAnotherHello(password: String?) throws {
        let chat = InMemoryChat()
        let opening: SignalKind = password == nil ? .keyExchange : .pake
        var ownOpening: Signal?
        var peerOpeningFrame: [UInt8]?
        chat.tap = { to, frame in
            guard InMemoryChat.isSignal(frame, opening) else { return [frame] }
            if to == 1, ownOpening == nil, case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame) {
                ownOpening = signal
            }
            if to == 0, peerOpeningFrame == nil {
                peerOpeningFrame = frame  // Held back: session 0 waits in KEY_SETUP with no peer paired.
                return []
            }
            return [frame]
        }
        chat.addSession(password: password)
        chat.addSession(password: password)
        #expect(chat.sessions[0].state == .keySetup)
        let own = try #require(ownOpening)
        let peerFrame = try #require(peerOpeningFrame)
        guard case let .signal(peerSignal) = try WireCodec.decodeRelayMessage(peerFrame) else {
            Issue.record("the held frame is no SIGNAL")
            return
        }
        #expect(peerSignal.payload != own.payload, "the peer's hello is another instance's")
        let sentBefore = chat.transmittedKinds(0).count

        // Session 0's own key or share, under the peer's hello.
        let forged = Signal(kind: opening, payload: peerSignal.payload, key: own.key)
        chat.inject(WireCodec.encode(RelayMessage.signal(forged)), to: 0)
        #expect(chat.rejections(0).last == .crypto(.reflectedPublicKey), "\(chat.rejections(0))")
        #expect(chat.transmittedKinds(0).count == sentBefore, "it answered the reflection: \(chat.transmittedKinds(0))")
        #expect(chat.sessions[0].state == .keySetup)
        #expect(chat.sessions[0].passwordRunsUnconfirmed == 0, "a CPace tag was given out for the reflection")

        // The real peer's opening, late: the same handshake completes, nothing restarted.
        chat.tap = nil
        chat.inject(peerFrame, to: 0)
        #expect(chat.sessions.allSatisfy { $0.state == .connected })
        #expect(chat.transmittedKinds(0).filter { $0.kind == opening }.count == 1, "session 0 began again")
        #expect(chat.sessions[0].statistics.handshakesCompleted == 1)
        #expect(chat.sessions[0].safetyNumber == chat.sessions[1].safetyNumber)
        chat.send(0, "after the reflection")
        #expect(chat.received(1) == ["after the reflection"])
    }
}
