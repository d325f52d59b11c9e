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

extension SessionRecoveryTests {
    static let roomFull = WireCodec.encodeError(.roomFull)

    static func transmittedJoins(_ outputs: [SessionOutput]) -> Int {
        outputs.filter {
            if case .transmit(let frame) = $0, case .join? = try? WireCodec.decodeClientMessage(frame) {
                true
            } else {
                false
            }
        }.count
    }

    @Test(
        "ROOM_FULL on a rejoin is retried, not fatal, while the relay still holds the old connection (simulator seed 1)"
    )
    func roomFullOnRejoin() {
        let session = SessionManager(
            configuration: SessionConfiguration(room: InMemoryChat.room), entropy: SystemEntropy())
        var now = Instant.zero
        session.handle(.transportUp, now: now)
        session.handle(.frame(WireCodec.encode(RelayMessage.joined(room: InMemoryChat.room, peers: 1))), now: now)
        session.handle(.transportDown, now: now)
        session.handle(.transportUp, now: now)
        _ = session.drainOutputs()
        // The relay has not noticed the old connection close: the room looks full.
        session.handle(.frame(Self.roomFull), now: now)
        #expect(session.state == .searching)
        now = now.advanced(by: .seconds(2))
        session.handleTimeout(now: now)
        #expect(Self.transmittedJoins(session.drainOutputs()) == 1, "the JOIN is asked again")
        // Once the relay lets go of the old connection, the JOIN succeeds.
        session.handle(.frame(WireCodec.encode(RelayMessage.joined(room: InMemoryChat.room, peers: 1))), now: now)
        #expect(session.state == .searching)
    }

    @Test("A room that stays full ends the rejoining session with a typed reason, after bounded retries")
    func roomFullForever() {
        let session = SessionManager(
            configuration: SessionConfiguration(room: InMemoryChat.room), entropy: SystemEntropy())
        var now = Instant.zero
        session.handle(.transportUp, now: now)
        session.handle(.frame(WireCodec.encode(RelayMessage.joined(room: InMemoryChat.room, peers: 1))), now: now)
        session.handle(.transportDown, now: now)
        session.handle(.transportUp, now: now)
        var refusals = 0
        while session.state != .destroyed && refusals < 100 {
            session.handle(.frame(Self.roomFull), now: now)
            refusals += 1
            now = now.advanced(by: .seconds(10))
            session.handleTimeout(now: now)
        }
        #expect(session.state == .destroyed)
        #expect(refusals == 11)
        #expect(session.drainOutputs().contains(.notice(.ended(.relayRefused(.roomFull)))))
    }
}

extension SessionRecoveryTests {
    @Test("A rejoin counts as one even when the first JOINED was lost and PEER_FOUND stood for it (simulator seed 313)")
    func roomFullOnRejoinAfterLostJoined() {
        let chat = InMemoryChat()
        chat.tap = { _, frame in
            if case .joined? = try? WireCodec.decodeRelayMessage(frame) { return [] }
            return [frame]
        }
        chat.addSession()
        chat.addSession()
        chat.advance(by: .seconds(5))
        #expect(chat.sessions[1].state == .connected)
        let session = chat.sessions[1]
        session.handle(.transportDown, now: chat.now)
        session.handle(.transportUp, now: chat.now)
        session.handle(.frame(Self.roomFull), now: chat.now)
        #expect(session.state == .searching, "ROOM_FULL on a rejoin is retried")
    }
}

extension SessionRecoveryTests {
    @Test("A late ROOM_FULL, after the relay let this connection in, is stale and ignored (simulator seed 1)")
    func staleRoomFullAfterJoin() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        #expect(chat.sessions.allSatisfy { $0.state == .connected })
        // The refusal of an earlier JOIN on this connection, delivered after the JOINED.
        chat.inject(Self.roomFull, to: 1)
        #expect(chat.sessions[1].state == .connected)
        #expect(!chat.log[1].contains(.notice(.ended(.relayRefused(.roomFull)))))
        chat.send(1, "still here")
        #expect(chat.received(0) == ["still here"])
    }
}
