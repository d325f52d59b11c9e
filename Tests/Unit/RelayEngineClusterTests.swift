import ChatCore
@_spi(Simulation) @testable import RelayCore
import Testing

/// Cluster mode's decisions on the sans-IO engine, with Redis's answers played by the test: a
/// JOIN waits for the script's answer, SIGNALs go to a local mate or to the mate's node, notices
/// from other nodes are checked against the seat they name, a dead node's mates are told.
@Suite("Relay engine: cluster mode")
struct RelayEngineClusterTests {
    typealias H = EngineHarness
    static let room = try! RoomCode("ROOM1")
    static let me = "n1.00000001"
    static let remote = ClusterPeer(node: "n2.00000002", connection: 7)

    /// The JOIN command the engine just asked Redis, drained.
    static func joinCommand(_ h: inout H) throws -> (ConnectionID, ClusterJoinRequest) {
        let actions = h.rawActions()
        guard actions.count == 1, case let .cluster(.join(id, request)) = actions[0] else {
            throw TestFailure("expected one cluster JOIN, got \(actions)")
        }
        return (id, request)
    }

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    @Test("A JOIN becomes the JOIN script's command; JOINED (with the seat's token) and PEER_FOUND only once Redis admits it")
    func joinWaitsForRedis() throws {
        var h = try H.cluster()
        let a = h.connect()
        h.join(a, "ROOM1")
        let (id, request) = try Self.joinCommand(&h)
        #expect(id == a && request.room == Self.room && request.token == nil && request.newToken != nil)
        #expect(!request.reclaimOnly && !request.rejoin)
        // A retransmitted JOIN while Redis decides asks nothing more.
        h.join(a, "ROOM1")
        #expect(h.rawActions().isEmpty)
        h.engine.clusterJoinAnswered(a, request, .admitted(partner: Self.remote, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.rawActions() == [
            .send(a, .joinedWithToken(room: Self.room, peers: 2, token: request.newToken!)), .send(a, .peerFound),
        ])
        // A SIGNAL goes to the remote mate's node, byte for byte.
        h.send(H.signal(3), from: a)
        #expect(h.rawActions() == [.cluster(.signal(to: Self.remote, from: a, H.signal(3), binary: false))])
        #expect(h.engine.clusterPartnerNodes == ["n2.00000002"])
    }

    @Test("Refusals are Redis's: ROOM_FULL and SEAT_RESERVED as typed ERRORs; an unanswered JOIN is CLUSTER_UNAVAILABLE")
    func refusals() throws {
        var h = try H.cluster()
        for (reply, code) in [
            (ClusterJoinReply.refused(.roomFull), RelayErrorCode.roomFull), (.refused(.seatReserved), .seatReserved),
            (.unavailable, .clusterUnavailable),
        ] {
            let a = h.connect(.ipv4(UInt32.random(in: 1...0xFFFF)))
            h.join(a, "ROOM1")
            let (_, request) = try Self.joinCommand(&h)
            h.engine.clusterJoinAnswered(a, request, reply, now: h.now)
            #expect(h.rawActions() == [.send(a, H.error(code))])
        }
        #expect(h.engine.counters.rejections(.clusterUnavailable) == 1)
    }

    @Test("Redis down: a JOIN is refused CLUSTER_UNAVAILABLE at once and pending JOINs are answered so; a local pair keeps forwarding")
    func redisDown() throws {
        var h = try H.cluster()
        let (a, b) = (h.connect(.ipv4(1)), h.connect(.ipv4(2)))
        h.join(a, "ROOM1")
        let (_, first) = try Self.joinCommand(&h)
        h.engine.clusterJoinAnswered(a, first, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        _ = h.actions()
        h.join(b, "ROOM1")
        let (_, second) = try Self.joinCommand(&h)
        let local = ClusterPeer(node: Self.me, connection: a.value)
        h.engine.clusterJoinAnswered(b, second, .admitted(partner: local, reclaimed: false, evicted: nil), now: h.now)
        _ = h.actions()
        let c = h.connect(.ipv4(3))
        h.join(c, "ROOM2")
        _ = try Self.joinCommand(&h)
        h.engine.clusterAvailabilityChanged(false, now: h.now)
        #expect(h.actions() == [.send(c, H.error(.clusterUnavailable))])
        let d = h.connect(.ipv4(4))
        h.join(d, "ROOM3")
        #expect(h.actions() == [.send(d, H.error(.clusterUnavailable))])
        h.send(H.signal(1), from: a)
        h.send(H.signal(2), from: b)
        #expect(h.actions() == [.forward(b, H.signal(1)), .forward(a, H.signal(2))])
        // Back: every seat is registered again, in ConnectionID order.
        h.engine.clusterAvailabilityChanged(true, now: h.now)
        let rejoins = h.rawActions()
        #expect(rejoins.count == 2)
        guard case let .cluster(.join(firstID, again)) = rejoins[0] else { throw TestFailure("\(rejoins)") }
        #expect(firstID == a && again.rejoin && again.newToken == first.newToken && again.room == Self.room)
        // With its token: a seat Redis reserved while this node was taken for dead is taken back.
        #expect(again.token == first.newToken)
    }

    @Test("Two peers on one node: the second's admission names the first; PEER_FOUND to both; a departure tells the mate at once and Redis")
    func localPair() throws {
        var h = try H.cluster()
        let (a, b) = (h.connect(.ipv4(1)), h.connect(.ipv4(2)))
        h.join(a, "ROOM1")
        let (_, first) = try Self.joinCommand(&h)
        h.engine.clusterJoinAnswered(a, first, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.actions() == [.send(a, .joined(room: Self.room, peers: 1))])
        h.join(b, "ROOM1")
        let (_, second) = try Self.joinCommand(&h)
        let local = ClusterPeer(node: Self.me, connection: a.value)
        h.engine.clusterJoinAnswered(b, second, .admitted(partner: local, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.actions() == [.send(b, .joined(room: Self.room, peers: 2)), .send(a, .peerFound), .send(b, .peerFound)])
        h.engine.closed(a, now: h.now)
        #expect(h.rawActions() == [
            .cluster(.leave(a, room: Self.room, reserve: true, partner: ClusterPeer(node: Self.me, connection: b.value))),
            .send(b, .peerLeft),
        ])
        h.send(H.signal(1), from: b)
        #expect(h.actions() == [.send(b, H.error(.noPeer))])
    }

    @Test("Notices from other nodes act only on the seat they name: a stale PEER_LEFT or SIGNAL from a former mate changes nothing")
    func staleNotices() throws {
        var h = try H.cluster()
        let a = h.connect()
        h.join(a, "ROOM1")
        let (_, request) = try Self.joinCommand(&h)
        h.engine.clusterJoinAnswered(a, request, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        _ = h.actions()
        h.engine.clusterNotice(.peerFound(to: a.value, partner: Self.remote), now: h.now)
        #expect(h.actions() == [.send(a, .peerFound)])
        let stranger = ClusterPeer(node: "n3.00000003", connection: 7)
        h.engine.clusterNotice(.peerLeft(to: a.value, partner: stranger), now: h.now)
        h.engine.clusterSignal(to: a.value, from: stranger, H.signal(9), now: h.now)
        h.engine.clusterSignal(to: 999, from: Self.remote, H.signal(9), now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.clusterSignal(to: a.value, from: Self.remote, H.signal(4), now: h.now)
        #expect(h.actions() == [.forward(a, H.signal(4))])
        // The seat changes hands on the other side (a reconnect there): PEER_LEFT, then PEER_FOUND.
        let successor = ClusterPeer(node: "n3.00000003", connection: 8)
        h.engine.clusterNotice(.peerFound(to: a.value, partner: successor), now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft), .send(a, .peerFound), Self.lookUp(a, request, heard: 3)])
        h.engine.clusterSignal(to: a.value, from: Self.remote, H.signal(5), now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.clusterNotice(.peerLeft(to: a.value, partner: successor), now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft)])
    }

    @Test("A mate's PEER_FOUND that overtakes the JOIN's own answer (two Redis connections) is kept for it, not lost")
    func peerFoundBeforeAnswer() throws {
        var h = try H.cluster()
        let a = h.connect()
        h.join(a, "ROOM1")
        let (_, request) = try Self.joinCommand(&h)
        h.engine.clusterNotice(.peerFound(to: a.value, partner: Self.remote), now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.clusterJoinAnswered(a, request, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.actions() == [.send(a, .joined(room: Self.room, peers: 2)), .send(a, .peerFound)])
        // And one that came and went before the answer leaves nothing behind.
        let b = h.connect(.ipv4(2))
        h.join(b, "ROOM2")
        let (_, second) = try Self.joinCommand(&h)
        h.engine.clusterNotice(.peerFound(to: b.value, partner: Self.remote), now: h.now)
        h.engine.clusterNotice(.peerLeft(to: b.value, partner: Self.remote), now: h.now)
        h.engine.clusterJoinAnswered(b, second, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.actions() == [.send(b, .joined(room: try RoomCode("ROOM2"), peers: 1))])
    }

    @Test("After Redis comes back empty, a seat keeps its remote mate until the mate's node registers again; if it never does, PEER_LEFT after three heartbeats")
    func mateConfirmedAfterRestart() throws {
        var h = try H.cluster()
        var seated: [ConnectionID] = []
        var requests: [ClusterJoinRequest] = []
        for index in 0..<2 {
            let id = h.connect(.ipv4(UInt32(index + 1)))
            h.join(id, "ROOM\(index)")
            let (_, request) = try Self.joinCommand(&h)
            h.engine.clusterJoinAnswered(id, request, .admitted(partner: Self.remote, reclaimed: false, evicted: nil), now: h.now)
            _ = h.actions()
            seated.append(id)
            requests.append(request)
        }
        h.engine.clusterAvailabilityChanged(false, now: h.now)
        h.engine.clusterAvailabilityChanged(true, now: h.now)
        let rejoins = h.rawActions()
        #expect(rejoins.count == 2)
        for (id, request) in zip(seated, requests) {
            let again = ClusterJoinRequest(room: request.room, token: nil, newToken: request.newToken, rejoin: true)
            h.engine.clusterJoinAnswered(id, again, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        }
        #expect(h.actions().isEmpty, "no PEER_LEFT yet: the mates' nodes may not have registered")
        // The first seat's mate announces itself; the second's never does.
        h.engine.clusterNotice(.peerFound(to: seated[0].value, partner: Self.remote), now: h.now)
        #expect(h.actions().isEmpty, "the same mate: nothing to tell")
        h.engine.clusterHeartbeat(now: h.now)
        h.engine.clusterHeartbeat(now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.clusterHeartbeat(now: h.now)
        let asked = h.rawActions()
        guard asked.count == 1, case let .cluster(.join(id, verify)) = asked[0] else { throw TestFailure("\(asked)") }
        #expect(id == seated[1] && verify.rejoin)
        h.engine.clusterJoinAnswered(id, verify, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.actions() == [.send(seated[1], .peerLeft)])
        h.engine.clusterHeartbeat(now: h.now)
        #expect(h.actions().isEmpty)
    }

    @Test("A dead node: every local mate of one of its connections is told PEER_LEFT; others are not")
    func deadNode() throws {
        var h = try H.cluster()
        var seated: [ConnectionID] = []
        for (index, partner) in [Self.remote, ClusterPeer(node: "n3.00000003", connection: 1)].enumerated() {
            let id = h.connect(.ipv4(UInt32(index + 1)))
            h.join(id, "ROOM\(index)")
            let (_, request) = try Self.joinCommand(&h)
            h.engine.clusterJoinAnswered(id, request, .admitted(partner: partner, reclaimed: false, evicted: nil), now: h.now)
            _ = h.actions()
            seated.append(id)
        }
        _ = h.actions()
        #expect(h.engine.clusterPartnerNodes == ["n2.00000002", "n3.00000003"])
        h.engine.clusterNodesGone(["n2.00000002"], now: h.now)
        #expect(h.actions() == [.send(seated[0], .peerLeft)])
        #expect(h.engine.clusterPartnerNodes == ["n3.00000003"])
    }

    @Test("A connection that leaves while Redis decides gives back the seat it is then given")
    func leftWhilePending() throws {
        var h = try H.cluster()
        let a = h.connect()
        h.join(a, "ROOM1")
        let (_, request) = try Self.joinCommand(&h)
        h.engine.closed(a, now: h.now)
        _ = h.actions()
        h.engine.clusterJoinAnswered(a, request, .admitted(partner: nil, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.actions() == [.cluster(.leave(a, room: Self.room, reserve: false, partner: nil))])
        #expect(h.engine.clusterSeatCount == 0)
    }

    @Test("A JOIN with its token takes the seat back (the same token in JOINED); a half-open old connection on this node is closed")
    func reclaimEvictsOldConnection() throws {
        var h = try H.cluster()
        let old = h.connect(.ipv4(1))
        h.join(old, "ROOM1")
        let (_, first) = try Self.joinCommand(&h)
        h.engine.clusterJoinAnswered(old, first, .admitted(partner: Self.remote, reclaimed: false, evicted: nil), now: h.now)
        let token = try #require(first.newToken)
        _ = h.actions()
        let fresh = h.connect(.ipv4(1))
        h.join(fresh, "ROOM1", token: token)
        let (_, second) = try Self.joinCommand(&h)
        #expect(second.token == token)
        let evicted = ClusterPeer(node: Self.me, connection: old.value)
        h.engine.clusterJoinAnswered(fresh, second, .admitted(partner: Self.remote, reclaimed: true, evicted: evicted), now: h.now)
        let actions = h.rawActions()
        #expect(actions.contains(.close(old, .policyViolation, error: nil, disconnectWhenWritten: false)))
        #expect(actions.contains(.send(fresh, .joinedWithToken(room: Self.room, peers: 2, token: token))))
        #expect(!actions.contains { if case .cluster(.leave) = $0 { true } else { false } }, "the seat is not the old one's")
        #expect(h.engine.counters.seatsReclaimed == 1)
    }

    /// `id` seated in ROOM1 with room-mate `partner`; returns the JOIN request (its new token).
    static func seat(
        _ h: inout H, _ id: ConnectionID, partner: ClusterPeer?, room: String = "ROOM1"
    ) throws -> ClusterJoinRequest {
        h.join(id, room)
        let (_, request) = try Self.joinCommand(&h)
        h.engine.clusterJoinAnswered(id, request, .admitted(partner: partner, reclaimed: false, evicted: nil), now: h.now)
        _ = h.actions()
        return request
    }

    @Test("Review 8: a SIGNAL to a local mate whose seat names another room-mate now is refused NO_PEER, not forwarded")
    func localForwardChecksTheMatesSeat() throws {
        var h = try H.cluster()
        let (a, b) = (h.connect(.ipv4(1)), h.connect(.ipv4(2)))
        _ = try Self.seat(&h, a, partner: nil)
        _ = try Self.seat(&h, b, partner: ClusterPeer(node: Self.me, connection: a.value))
        h.send(H.signal(1), from: a)
        #expect(h.actions() == [.forward(b, H.signal(1))])
        // Redis gives b another room-mate (on another node); a's seat still names b.
        h.engine.clusterNotice(.peerFound(to: b.value, partner: Self.remote), now: h.now)
        let actions = h.rawActions()
        #expect(Array(actions.prefix(2)) == [.send(b, .peerLeft), .send(b, .peerFound)])
        #expect(actions.count == 3 && Self.isLookUp(actions[2], b), "Redis is asked who holds the seat: \(actions)")
        let forwarded = h.engine.counters.framesForwarded
        h.send(H.signal(2), from: a)
        #expect(h.actions() == [.send(a, H.error(.noPeer))])
        #expect(h.engine.counters.framesForwarded == forwarded)
    }

    @Test("Review 12: closed while its reclaiming JOIN was at Redis: the seat stays reserved for its token, the local connection it evicted is closed")
    func closedWhileReclaiming() throws {
        var h = try H.cluster()
        let old = h.connect(.ipv4(1))
        let token = try #require(try Self.seat(&h, old, partner: Self.remote).newToken)
        let fresh = h.connect(.ipv4(1))
        h.join(fresh, "ROOM1", token: token)
        let (_, request) = try Self.joinCommand(&h)
        h.engine.closed(fresh, now: h.now)
        _ = h.actions()
        let evicted = ClusterPeer(node: Self.me, connection: old.value)
        h.engine.clusterJoinAnswered(fresh, request, .admitted(partner: Self.remote, reclaimed: true, evicted: evicted), now: h.now)
        let actions = h.rawActions()
        #expect(actions.contains(.close(old, .policyViolation, error: nil, disconnectWhenWritten: false)), "\(actions)")
        #expect(actions.contains(.cluster(.leave(fresh, room: Self.room, reserve: true, partner: nil))), "\(actions)")
        #expect(!actions.contains(.cluster(.leave(fresh, room: Self.room, reserve: false, partner: nil))))
        #expect(h.engine.clusterSeatCount == 0)
    }

    @Test("Review 1: a SIGNAL from another node for a receiver over its high watermark is dropped and counted; forwarded again once it drains")
    func remoteSignalOverWatermark() throws {
        var h = try H.cluster()
        let a = h.connect()
        _ = try Self.seat(&h, a, partner: Self.remote)
        h.engine.writabilityChanged(a, isWritable: false, now: h.now)
        _ = h.actions()
        for marker: UInt8 in 1...3 { h.engine.clusterSignal(to: a.value, from: Self.remote, H.signal(marker), now: h.now) }
        #expect(h.actions().isEmpty)
        #expect(h.engine.counters.clusterSignalsDropped == 3)
        h.engine.writabilityChanged(a, isWritable: true, now: h.now)
        _ = h.actions()
        h.engine.clusterSignal(to: a.value, from: Self.remote, H.signal(4), now: h.now)
        #expect(h.actions() == [.forward(a, H.signal(4))])
        #expect(h.engine.counters.clusterSignalsDropped == 3)
    }

    @Test("Review 2: a node shutting down reserves its seats for their tokens (its clients reconnect through another node)")
    func shutdownReserves() throws {
        var h = try H.cluster()
        let a = h.connect()
        _ = try Self.seat(&h, a, partner: Self.remote)
        h.engine.beginShutdown(now: h.now)
        let actions = h.rawActions()
        #expect(actions.contains(.cluster(.leave(a, room: Self.room, reserve: true, partner: Self.remote))), "\(actions)")
    }

    @Test("Over the address's join rate, only a JOIN with a token is asked of Redis (reclaim-only); one without is refused here")
    func joinRate() throws {
        var h = try H.cluster { $0.joinsPerAddressPerMinute = 1 }
        let a = h.connect(.ipv4(1))
        h.join(a, "ROOM1")
        _ = try Self.joinCommand(&h)
        let b = h.connect(.ipv4(1))
        h.join(b, "ROOM2")
        #expect(h.actions() == [.send(b, H.error(.joinRateLimited))])
        let c = h.connect(.ipv4(1))
        let token = ReconnectToken(high: 1, low: 2)
        h.join(c, "ROOM3", token: token)
        let (_, request) = try Self.joinCommand(&h)
        #expect(request.reclaimOnly && request.token == token)
    }

    /// The look-up of who holds the room's other seat that the engine asks after `request`'s seat
    /// heard `heard` notices (a rejoin with the seat's own token).
    static func lookUp(_ id: ConnectionID, _ request: ClusterJoinRequest, heard: UInt32) -> H.Action {
        .cluster(.join(id, ClusterJoinRequest(
            room: request.room, token: request.newToken, newToken: request.newToken, rejoin: true, heard: heard)))
    }

    static func isLookUp(_ action: H.Action, _ id: ConnectionID) -> Bool {
        guard case let .cluster(.join(asked, request)) = action else { return false }
        return asked == id && request.rejoin
    }

    @Test("Weakness 1: a seat that changes hands twice, its two PEER_FOUNDs from two nodes reordered, ends with the holder Redis names, not the stale one")
    func reorderedHandChanges() throws {
        var h = try H.cluster()
        let a = h.connect()
        let request = try Self.seat(&h, a, partner: Self.remote)
        // The mate took its seat back through n3, then again through n4; n4's notice comes first.
        let second = ClusterPeer(node: "n3.00000003", connection: 8)
        let third = ClusterPeer(node: "n4.00000004", connection: 9)
        h.engine.clusterNotice(.peerFound(to: a.value, partner: third), now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft), .send(a, .peerFound), Self.lookUp(a, request, heard: 1)])
        h.engine.clusterNotice(.peerFound(to: a.value, partner: second), now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft), .send(a, .peerFound), Self.lookUp(a, request, heard: 2)])
        // The first look-up's answer was overtaken by the stale notice and disagrees: asked again.
        let found = ClusterJoinReply.admitted(partner: third, reclaimed: false, evicted: nil)
        h.engine.clusterJoinAnswered(a, Self.lookUp(request, heard: 1), found, now: h.now)
        #expect(h.actions() == [Self.lookUp(a, request, heard: 2)])
        // An answer newer than every notice: Redis's holder, told as a change of hands.
        h.engine.clusterJoinAnswered(a, Self.lookUp(request, heard: 2), found, now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft), .send(a, .peerFound)])
        h.engine.clusterJoinAnswered(a, Self.lookUp(request, heard: 2), found, now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.clusterSignal(to: a.value, from: third, H.signal(1), now: h.now)
        h.engine.clusterSignal(to: a.value, from: second, H.signal(2), now: h.now)
        #expect(h.actions() == [.forward(a, H.signal(1))])
        h.send(H.signal(3), from: a)
        #expect(h.actions() == [.cluster(.signal(to: third, from: a, H.signal(3), binary: false))])
    }

    static func lookUp(_ request: ClusterJoinRequest, heard: UInt32) -> ClusterJoinRequest {
        ClusterJoinRequest(
            room: request.room, token: request.newToken, newToken: request.newToken, rejoin: true, heard: heard)
    }

    @Test("Weakness 1: a re-registration's answer overtaken by a newer PEER_FOUND does not bring back the mate it replaced")
    func staleRejoinAnswer() throws {
        var h = try H.cluster()
        let a = h.connect()
        let request = try Self.seat(&h, a, partner: Self.remote)
        h.engine.clusterAvailabilityChanged(false, now: h.now)
        h.engine.clusterAvailabilityChanged(true, now: h.now)
        #expect(h.actions() == [Self.lookUp(a, request, heard: 0)])
        // Meanwhile the mate took its seat back through another node (after the script ran).
        let successor = ClusterPeer(node: "n3.00000003", connection: 8)
        h.engine.clusterNotice(.peerFound(to: a.value, partner: successor), now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft), .send(a, .peerFound), Self.lookUp(a, request, heard: 1)])
        // The re-registration's answer names the old holder: stale, asked again, nothing said.
        let old = ClusterJoinReply.admitted(partner: Self.remote, reclaimed: false, evicted: nil)
        h.engine.clusterJoinAnswered(a, Self.lookUp(request, heard: 0), old, now: h.now)
        #expect(h.actions() == [Self.lookUp(a, request, heard: 1)])
        let now = ClusterJoinReply.admitted(partner: successor, reclaimed: false, evicted: nil)
        h.engine.clusterJoinAnswered(a, Self.lookUp(request, heard: 1), now, now: h.now)
        h.engine.clusterJoinAnswered(a, Self.lookUp(request, heard: 1), now, now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.clusterSignal(to: a.value, from: successor, H.signal(1), now: h.now)
        #expect(h.actions() == [.forward(a, H.signal(1))])
    }

    @Test("Weakness 2: a mate presumed gone (its node's key gone) that re-registers: its node is told PEER_LEFT then PEER_FOUND for it, so both sides open a handshake")
    func presumedGoneMateBackTellsBothSides() throws {
        var h = try H.cluster()
        let a = h.connect()
        _ = try Self.seat(&h, a, partner: Self.remote)
        let me = ClusterPeer(node: Self.me, connection: a.value)
        let bothSides: [H.Action] = [
            .send(a, .peerFound),
            .cluster(.notice(to: Self.remote.node, .peerLeft(to: Self.remote.connection, partner: me))),
            .cluster(.notice(to: Self.remote.node, .peerFound(to: Self.remote.connection, partner: me))),
        ]
        h.engine.clusterNodesGone([Self.remote.node], now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft)])
        // The node was only cut off from Redis: it registers its seat again and announces it.
        h.engine.clusterNotice(.peerFound(to: a.value, partner: Self.remote), now: h.now)
        #expect(h.actions() == bothSides)
        h.engine.clusterNotice(.peerFound(to: a.value, partner: Self.remote), now: h.now)
        #expect(h.actions().isEmpty, "once")
        // The same through this node's own re-registration finding the mate (Redis restarted).
        h.engine.clusterNodesGone([Self.remote.node], now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft)])
        h.engine.clusterAvailabilityChanged(false, now: h.now)
        h.engine.clusterAvailabilityChanged(true, now: h.now)
        let rejoins = h.rawActions()
        guard rejoins.count == 1, case let .cluster(.join(_, rejoin)) = rejoins[0] else {
            throw TestFailure("\(rejoins)")
        }
        let found = ClusterJoinReply.admitted(partner: Self.remote, reclaimed: false, evicted: nil)
        h.engine.clusterJoinAnswered(a, rejoin, found, now: h.now)
        #expect(h.actions() == bothSides)
        // A mate whose node says it left is gone for good: nothing more to its node.
        h.engine.clusterNodesGone([Self.remote.node], now: h.now)
        h.engine.clusterNotice(.peerLeft(to: a.value, partner: Self.remote), now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft)])
        let other = ClusterPeer(node: "n3.00000003", connection: 8)
        h.engine.clusterNotice(.peerFound(to: a.value, partner: other), now: h.now)
        #expect(h.actions() == [.send(a, .peerFound)])
    }

    @Test("Weakness 2: after Redis came back empty and the mate stayed unconfirmed (PEER_LEFT), its return is told to both sides; the receiving side answers nothing back")
    func unconfirmedMateBackTellsBothSides() throws {
        var h = try H.cluster()
        let a = h.connect()
        let request = try Self.seat(&h, a, partner: Self.remote)
        h.engine.clusterAvailabilityChanged(false, now: h.now)
        h.engine.clusterAvailabilityChanged(true, now: h.now)
        _ = h.actions()
        let alone = ClusterJoinReply.admitted(partner: nil, reclaimed: false, evicted: nil)
        h.engine.clusterJoinAnswered(a, Self.lookUp(request, heard: 0), alone, now: h.now)
        for _ in 0..<3 { h.engine.clusterHeartbeat(now: h.now) }
        let asked = h.rawActions()
        guard asked.count == 1, case let .cluster(.join(_, again)) = asked[0] else { throw TestFailure("\(asked)") }
        h.engine.clusterJoinAnswered(a, again, alone, now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft)])
        h.engine.clusterNotice(.peerFound(to: a.value, partner: Self.remote), now: h.now)
        let me = ClusterPeer(node: Self.me, connection: a.value)
        #expect(h.actions() == [
            .send(a, .peerFound),
            .cluster(.notice(to: Self.remote.node, .peerLeft(to: Self.remote.connection, partner: me))),
            .cluster(.notice(to: Self.remote.node, .peerFound(to: Self.remote.connection, partner: me))),
        ])

        // The mate's node, which never doubted: its client is told PEER_LEFT then PEER_FOUND, and
        // it sends nothing back.
        var mate = try H.cluster(Self.remote.node)
        var id = mate.connect(.ipv4(100))
        while id.value < Self.remote.connection { id = mate.connect(.ipv4(100 + UInt32(id.value))) }
        _ = try Self.seat(&mate, id, partner: me)
        mate.engine.clusterNotice(.peerLeft(to: id.value, partner: me), now: mate.now)
        mate.engine.clusterNotice(.peerFound(to: id.value, partner: me), now: mate.now)
        #expect(mate.actions() == [.send(id, .peerLeft), .send(id, .peerFound)])
    }

    @Test("Attack review: a rejoin answer naming a local mate that left meanwhile gives no false PEER_FOUND")
    func rejoinNamesLocalMateThatLeft() throws {
        var h = try H.cluster()
        let (a, b) = (h.connect(.ipv4(1)), h.connect(.ipv4(2)))
        let localA = ClusterPeer(node: Self.me, connection: a.value)
        _ = try Self.seat(&h, a, partner: nil)
        _ = try Self.seat(&h, b, partner: localA)
        // Redis comes back: both seats are registered again (rejoins in flight).
        h.engine.clusterAvailabilityChanged(false, now: h.now)
        h.engine.clusterAvailabilityChanged(true, now: h.now)
        let rejoins = h.rawActions()
        guard rejoins.count == 2, case let .cluster(.join(rejoinID, rejoinB)) = rejoins[1], rejoinID == b else {
            throw TestFailure("\(rejoins)")
        }
        // A leaves before the answers come: B is told at once, Redis by a leave queued behind the rejoins.
        h.engine.closed(a, now: h.now)
        #expect(h.rawActions().contains(.send(b, .peerLeft)))
        // Redis ran B's rejoin before A's leave: its answer still names A. B must not hear PEER_FOUND
        // (its client would open a handshake with nobody).
        h.engine.clusterJoinAnswered(b, rejoinB, .admitted(partner: localA, reclaimed: true, evicted: nil), now: h.now)
        let after = h.rawActions()
        #expect(!after.contains(.send(b, .peerFound)), "\(after)")
        h.send(H.signal(1), from: b)
        #expect(h.actions() == [.send(b, H.error(.noPeer))])
        // A new mate still finds B as usual.
        let c = h.connect(.ipv4(3))
        h.join(c, "ROOM1")
        let (_, third) = try Self.joinCommand(&h)
        let localB = ClusterPeer(node: Self.me, connection: b.value)
        h.engine.clusterJoinAnswered(c, third, .admitted(partner: localB, reclaimed: false, evicted: nil), now: h.now)
        #expect(h.actions() == [
            .send(c, .joined(room: Self.room, peers: 2)), .send(b, .peerFound), .send(c, .peerFound),
        ])
    }

    @Test("The pub/sub messages parse strictly: each notice round-trips, signals carry their frame's offset, junk is nil")
    func wire() {
        for notice in [
            ClusterNotice.peerFound(to: 3, partner: Self.remote), .peerLeft(to: UInt64.max, partner: Self.remote),
            .evicted(to: 0),
        ] {
            #expect(ClusterWire.parse(ClusterWire.encode(notice)) == .notice(notice))
        }
        let header = ClusterWire.signalHeader(to: Self.remote, from: ClusterPeer(node: "n1.0a", connection: 5))
        let frame = Array(#"{"type":"SIGNAL"}"#.utf8)
        #expect(ClusterWire.parse(header + frame) == .signal(to: 7, from: ClusterPeer(node: "n1.0a", connection: 5),
                                                              bodyOffset: header.count, binary: false))
        for junk in ["", "F", "F 1 2", "F 1 2 bad node", "F x 2 n.1", "E 1 2", "S 1 2 n.1", "X 1 2 n.1",
                     "F 99999999999999999999 1 n.1", "F 1 2 n/1"] {
            #expect(ClusterWire.parse(Array(junk.utf8)) == nil, "\(junk)")
        }
    }
}
