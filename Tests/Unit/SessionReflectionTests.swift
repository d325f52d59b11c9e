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
}
