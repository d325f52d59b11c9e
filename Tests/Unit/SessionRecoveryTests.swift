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

extension SessionRecoveryTests {
    static let peerLeft = WireCodec.encode(RelayMessage.peerLeft)
    static let peerFound = WireCodec.encode(RelayMessage.peerFound)

    @Test("Crossed re-keys converge instead of chasing each other (simulator seed 1)")
    func crossedRekeys() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        #expect(chat.sessions[0].state == .connected && chat.sessions[1].state == .connected)
        // Hold every handshake frame while both sides re-key twice (the peer left and came back,
        // twice, as the relay told each of them).
        var held: [(to: Int, frame: [UInt8])] = []
        chat.tap = { to, frame in
            if InMemoryChat.isSignal(frame, .keyExchange) || InMemoryChat.isSignal(frame, .keyConfirm) {
                held.append((to, frame))
                return []
            }
            return [frame]
        }
        for _ in 0..<2 {
            for index in 0..<2 {
                chat.inject(Self.peerLeft, to: index)
                chat.inject(Self.peerFound, to: index)
            }
        }
        chat.tap = nil
        // Now deliver them in order: each side first accepts the other's older hello, then sees its
        // newer one while its own handshake is unconfirmed, the pattern that used to re-key forever.
        for (to, frame) in held { chat.inject(frame, to: to) }
        chat.advance(by: .seconds(10))
        #expect(chat.sessions[0].state == .connected)
        #expect(chat.sessions[1].state == .connected)
        #expect(chat.states(0).filter { $0 == .keySetup }.count <= 4, "a bounded number of handshakes")
        chat.send(0, "after the crossing")
        chat.send(1, "and back")
        #expect(chat.received(1) == ["after the crossing"])
        #expect(chat.received(0) == ["and back"])
    }
}
