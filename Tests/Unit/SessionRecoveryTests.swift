import ChatCore
import Testing

/// Recovery from losses the simulator found (`simulator` seeds named in each test).
@Suite("Sessions recover from lost relay notices and crossed handshakes")
struct SessionRecoveryTests {
    static func isPeerFound(_ frame: [UInt8]) -> Bool {
        (try? WireCodec.decodeRelayMessage(frame)) == .peerFound
    }

    @Test("Both PEER_FOUNDs lost: JOINED with two peers starts the handshake (simulator seed 4)")
    func bothPeerFoundsLost() {
        let chat = InMemoryChat()
        chat.tap = { _, frame in Self.isPeerFound(frame) ? [] : [frame] }
        chat.addSession()
        chat.addSession()
        chat.advance(by: .seconds(10))
        #expect(chat.sessions[0].state == .connected)
        #expect(chat.sessions[1].state == .connected)
        chat.send(0, "after lost notices")
        #expect(chat.received(1) == ["after lost notices"])
    }
}
