import ChatCore
@_spi(Simulation) @testable import RelayCore
import Testing

/// Seat reservation (issue 14) on the sans-IO engine: a departed peer's seat waits for its
/// reconnect token for `seatGraceSeconds`; a JOIN without the token gets ROOM_FULL meanwhile.
@Suite("Relay engine: seat reservation")
struct RelayEngineSeatTests {
    typealias H = EngineHarness
    static let room = try! RoomCode("ROOM1")

    @Test("A dropped peer's seat is reserved: a JOIN without its token gets ROOM_FULL; with it, the seat at once and PEER_FOUND to both")
    func reservedSeatTakenBack() throws {
        var h = try H()
        let (a, b) = h.pair()
        let token = try #require(h.tokens[a])
        #expect(h.tokens[b] != token)
        h.engine.closed(a, now: h.now)
        #expect(h.actions() == [.send(b, .peerLeft)])
        #expect(h.engine.counters.seatsReserved == 1)
        let squatter = h.connect(.ipv4(9))
        h.join(squatter, "ROOM1")
        #expect(h.actions() == [.send(squatter, H.error(.roomFull))])
        let back = h.connect(.ipv4(0x0A00_0001))
        h.join(back, "ROOM1", token: token)
        #expect(h.rawActions() == [
            .send(back, .joinedWithToken(room: Self.room, peers: 2, token: token)),
            .send(b, .peerFound), .send(back, .peerFound),
        ])
        #expect(h.engine.counters.seatsReserved == 0)
        #expect(h.engine.counters.seatsReclaimed == 1)
        h.send(H.signal(1), from: back)
        #expect(h.actions() == [.forward(b, H.signal(1))])
        // The squatter still cannot get in; a repeated JOIN on the seat's connection is answered
        // again with the same token.
        h.join(squatter, "ROOM1")
        h.join(back, "ROOM1")
        #expect(h.rawActions() == [
            .send(squatter, H.error(.roomFull)),
            .send(back, .joinedWithToken(room: Self.room, peers: 2, token: token)), .send(back, .peerFound),
        ])
    }

    @Test("Taking a seat back is not a new join: a JOIN with the token passes an address whose join budget a squatter spent")
    func reclaimIsNotRateLimited() throws {
        var h = try H { $0.joinsPerAddressPerMinute = 2 }
        let (a, b) = h.pair()
        let token = try #require(h.tokens[a])
        h.engine.closed(a, now: h.now)
        // Another client at a's address polls JOIN (a's first JOIN took one of its two tokens).
        let squatter = h.connect(.ipv4(0x0A00_0001))
        for _ in 0..<5 { h.join(squatter, "ROOM1") }
        #expect(h.actions() == [.send(b, .peerLeft), .send(squatter, H.error(.roomFull))]
            + Array(repeating: .send(squatter, H.error(.joinRateLimited)), count: 4))
        let back = h.connect(.ipv4(0x0A00_0001))
        h.join(back, "ROOM1", token: token)
        #expect(h.actions().first == .send(back, .joined(room: Self.room, peers: 2)))
    }

    @Test("The reservation ends after the grace period: the seat is anyone's, the old token a plain JOIN")
    func reservationExpires() throws {
        var h = try H { $0.seatGraceSeconds = 10 }
        let (a, b) = h.pair()
        let token = try #require(h.tokens[a])
        h.engine.closed(a, now: h.now)
        h.advance(.milliseconds(9999))
        _ = h.actions()
        #expect(h.engine.counters.seatsReserved == 1)
        h.advance(.milliseconds(1))
        #expect(h.engine.counters.seatsReserved == 0)
        let newcomer = h.connect(.ipv4(9))
        h.join(newcomer, "ROOM1")
        #expect(h.actions() == [
            .send(newcomer, .joined(room: Self.room, peers: 2)), .send(b, .peerFound), .send(newcomer, .peerFound),
        ])
        #expect(h.tokens[newcomer] != token, "a new seat, a new token")
        let late = h.connect(.ipv4(0x0A00_0001))
        h.join(late, "ROOM1", token: token)
        #expect(h.actions() == [.send(late, H.error(.roomFull))])
    }

    @Test("Both peers gone: the room stays open with two reserved seats, then closes")
    func bothSeatsReserved() throws {
        var h = try H { $0.seatGraceSeconds = 5 }
        let (a, b) = h.pair()
        h.engine.closed(a, now: h.now)
        h.engine.closed(b, now: h.now)
        #expect(h.actions() == [.send(b, .peerLeft)])
        #expect(h.engine.counters.roomsOpen == 1)
        #expect(h.engine.counters.seatsReserved == 2)
        let back = h.connect()
        h.join(back, "ROOM1", token: h.tokens[b])
        #expect(h.actions() == [.send(back, .joined(room: Self.room, peers: 1))], "the other seat is not a peer")
        h.advance(.seconds(5))
        #expect(h.engine.counters.seatsReserved == 0)
        #expect(h.engine.counters.roomsOpen == 1)
        h.engine.closed(back, now: h.now)
        h.advance(.seconds(5))
        #expect(h.engine.counters.roomsOpen == 0)
    }

    @Test("A client that says goodbye (close 1000 or 1001) frees its seat at once; other codes, resets and relay closes reserve it")
    func goodbyeFreesTheSeat() throws {
        var h = try H()
        for (index, code) in [CloseCode.normalClosure, .goingAway].enumerated() {
            let (a, _) = h.pair("BYE\(index)")
            h.engine.receive(.close(code), from: a, now: h.now)
            _ = h.actions()
            #expect(h.engine.counters.seatsReserved == 0)
            let newcomer = h.connect(.ipv4(20 + UInt32(index)))
            h.join(newcomer, "BYE\(index)")
            #expect(h.actions().first == .send(newcomer, .joined(room: try RoomCode("BYE\(index)"), peers: 2)))
        }
        let (c, _) = h.pair("CODE")
        h.engine.receive(.close(CloseCode(rawValue: 4000)), from: c, now: h.now)
        let (d, _) = h.pair("IDLE")
        h.engine.fault(.frameTooLarge, on: d, now: h.now)
        let (e, _) = h.pair("RESET")
        h.engine.fault(.ioError, on: e, now: h.now)
        h.engine.closed(e, now: h.now)
        #expect(h.engine.counters.seatsReserved == 3)
    }

    @Test("A JOIN with the token while the relay still holds the old connection (half-open) closes that one and takes the seat")
    func halfOpenSeatTakenOver() throws {
        var h = try H()
        let (a, b) = h.pair()
        let token = try #require(h.tokens[a])
        let again = h.connect(.ipv4(0x0A00_0001))
        h.join(again, "ROOM1", token: token)
        #expect(h.rawActions() == [
            .close(a, .policyViolation, error: nil, disconnectWhenWritten: false), .send(b, .peerLeft),
            .send(again, .joinedWithToken(room: Self.room, peers: 2, token: token)),
            .send(b, .peerFound), .send(again, .peerFound),
        ])
        #expect(h.engine.counters.seatsReclaimed == 1)
        // Another room's token, or a made-up one, takes nothing.
        let (c, _) = h.pair("OTHER")
        let thief = h.connect(.ipv4(7))
        h.join(thief, "ROOM1", token: h.tokens[c])
        h.join(thief, "ROOM1", token: ReconnectToken(high: 1, low: 2))
        #expect(h.actions() == [.send(thief, H.error(.roomFull)), .send(thief, H.error(.roomFull))])
    }

    @Test("No reservations at shutdown, nor with --seat-grace-seconds 0 (then JOINED has no token)")
    func noReservation() throws {
        var h = try H { $0.seatGraceSeconds = 0 }
        let (a, b) = h.pair()
        #expect(h.tokens.isEmpty)
        h.engine.closed(a, now: h.now)
        #expect(h.actions() == [.send(b, .peerLeft)])
        #expect(h.engine.counters.seatsReserved == 0)

        var s = try H()
        _ = s.pair()
        s.engine.beginShutdown(now: s.now)
        #expect(s.engine.counters.seatsReserved == 0)
        #expect(s.engine.counters.roomsOpen == 0)
    }

    @Test("Seat timers of seats that come and go do not pile up")
    func seatTimersCompacted() throws {
        var h = try H { $0.seatGraceSeconds = 3600 }
        let b = h.connect(.ipv4(2))
        h.join(b, "ROOM1")
        var token: ReconnectToken?
        for round in 0..<500 {
            let a = h.connect(.ipv4(1))
            h.join(a, "ROOM1", token: token)
            _ = h.actions()
            token = h.tokens[a]
            h.engine.closed(a, now: h.now)
            if round % 50 == 0 { h.advance(.seconds(1)) }
        }
        #expect(h.engine.counters.seatsReserved == 1)
        #expect(h.engine.timers.count < 200, "\(h.engine.timers.count) timers for 2 connections and 1 seat")
    }

    @Test("The simulation init without an entropy source still gives seats tokens, the same in every run")
    func simulationInitWithoutEntropy() throws {
        func firstToken() -> ReconnectToken? {
            let now = Instant(nanoseconds: 1_000_000_000)
            var engine = RelayEngine<[UInt8]>(uncheckedLimits: .defaults, now: now)
            let id = engine.accept(from: .ipv4(0x0A00_0001), now: now).id
            engine.upgraded(id, now: now)
            engine.receive(.text(Array(#"{"type":"JOIN","room":"ROOM1"}"#.utf8)), from: id, now: now)
            // Bounded by the few actions one JOIN produces.
            while let action = engine.nextAction() {
                if case let .send(_, .joinedWithToken(_, _, token)) = action { return token }
            }
            return nil
        }
        let token = try #require(firstToken())
        #expect(firstToken() == token)
        #expect(token != ReconnectToken(high: 0, low: 0))
    }
}
