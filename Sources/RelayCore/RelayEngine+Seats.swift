import ChatCore

/// JOIN and leaving a room: the join rate, seat reservation (a departed peer's seat kept for
/// `seatGraceSeconds` for a JOIN with its reconnect token) and the reservations' expiry.
extension RelayEngine {
    /// A well-formed JOIN of `room`, presenting `token` if the client held a seat before.
    mutating func join(_ room: RoomCode, token: ReconnectToken?, from id: ConnectionID, now: Instant) {
        if cluster != nil {
            clusterJoinChecked(room, token: token, from: id, now: now)
            return
        }
        let current = rooms.room(of: id)
        // The seat this JOIN's token takes back, if any: a reserved one, or one still held by
        // another connection.
        var reclaimed: RelayRooms<ConnectionID>.SeatStatus = .none
        if current == nil, let token {
            reclaimed = rooms.seat(token, in: room)
            if reclaimed == .held(id) { reclaimed = .none }
        }
        // A repeated JOIN of the same room is a client's retransmission: not a new join. Nor is
        // one that takes its own seat back (its token proves it): the join rate bounds room
        // scanning, and a client sharing its address with one that polls JOIN must get back in.
        if current != room, reclaimed == .none, let key = connections[id]?.countedUnder,
            var entry = addresses[key]
        {
            let admitted = entry.joinBucket.tryConsume(RelayLimits.joinCostTokens, now: now)
            addresses[key] = entry
            guard admitted else {
                reply(.joinRateLimited, RelayErrorCode.joinRateLimited.defaultMessage, to: id, now: now)
                return
            }
        }
        if case let .held(old) = reclaimed {
            // The seat's own client, on a new connection, while the relay still holds its old
            // one (half-open: the client gave up on it first). Only that client has the token,
            // so the old connection is closed, which reserves the seat, and the JOIN takes it.
            close(old, .policyViolation, error: nil, now: now)
        }
        let reclaims = reclaimed != .none
        let entropy = self.entropy
        let makeToken: (() -> ReconnectToken)? =
            limits.seatGraceSeconds > 0 ? { ReconnectToken(entropy: entropy) } : nil
        perform(rooms.join(id, room: room, token: token, makeToken: makeToken), now: now)
        guard current == nil, rooms.room(of: id) == room else { return }
        enteredRoom(id)
        if reclaims { storedCounters.seatsReclaimed += 1 }
    }

    /// A served connection stops being served: it leaves its room, the peer is told (except at
    /// shutdown, where every peer is told `SHUTTING_DOWN` and a `PEER_LEFT` first would mislead),
    /// and the peer reads again if it was paused for this connection's backpressure. Its seat is
    /// reserved for `seatGraceSeconds` unless `freeSeat` (the client said goodbye) or a single
    /// relay is shutting down (a cluster node's seats are reserved then too).
    mutating func leaveRooms(_ id: ConnectionID, now: Instant, freeSeat: Bool) {
        storedCounters.webSocketsOpen -= 1
        if cluster != nil {
            // A node that shuts down reserves its seats too: its clients reconnect through another
            // node with their tokens, and a squatter there must not take a seat meanwhile.
            clusterLeave(id, reserve: !(freeSeat || limits.seatGraceSeconds == 0), now: now)
            return
        }
        let mate = rooms.peer(of: id)
        let grace = limits.seatGraceSeconds
        let reserveUntil = freeSeat || isShuttingDown || grace == 0 ? nil : now.advanced(by: .seconds(grace))
        let departure = rooms.leave(id, reserveUntil: reserveUntil)
        if let token = departure.reserved, let reserveUntil {
            timers.insert(TimerEntry(deadline: reserveUntil, seat: token))
        }
        if !isShuttingDown { perform(departure.actions, now: now) }
        if let mate { unpause(mate, .peerBackpressure, now: now) }
    }

    /// A JOIN in cluster mode: the address's join rate is charged unless the JOIN repeats the
    /// connection's room (a retransmission) or is already waiting for Redis; an address over its
    /// rate may still take back its own seat with its token (Redis checks the token).
    private mutating func clusterJoinChecked(
        _ room: RoomCode, token: ReconnectToken?, from id: ConnectionID, now: Instant
    ) {
        let repeated = cluster?.seats[id]?.room == room || cluster?.pending[id] != nil
        var overJoinRate = false
        if !repeated, let key = connections[id]?.countedUnder, var entry = addresses[key] {
            overJoinRate = !entry.joinBucket.tryConsume(RelayLimits.joinCostTokens, now: now)
            addresses[key] = entry
        }
        clusterJoin(room, token: token, overJoinRate: overJoinRate, from: id, now: now)
    }

    /// A reserved seat's timer came due: free it if its reservation has ended (a seat taken back,
    /// or reserved again since, has a later deadline or none).
    mutating func expireSeat(_ token: ReconnectToken, now: Instant) {
        _ = rooms.expireReservation(token, now: now)
    }
}
