import ChatCore

/// Cluster mode (`relay --redis`): Redis holds the rooms, this node its own connections' seats.
///
/// The decisions are here, sans-IO: a JOIN becomes a `ClusterCommand.join` (or `CLUSTER_UNAVAILABLE`
/// while Redis does not answer); Redis's answer seats the connection or refuses it; a SIGNAL goes
/// to a local room-mate directly or to a remote one's node (`ClusterCommand.signal`); a departure
/// tells a local room-mate at once and Redis (`ClusterCommand.leave`), whose script tells a remote
/// one. Notices from other nodes (`ClusterNotice`) are checked against the seat they name, so a
/// stale or replayed one changes nothing; one that says a seat changed hands is checked with Redis
/// (notices from different nodes race), as is an answer a notice overtook. The shell does the
/// Redis I/O and the heartbeats.
extension RelayEngine {
    /// This node's identity in Redis (nil: not a cluster node).
    public var clusterNode: String? { cluster?.node }

    /// The nodes that hold a room-mate of a local connection (sorted, without this node): the
    /// shell checks that they are alive (`clusterNodesGone`).
    public var clusterPartnerNodes: [String] {
        guard let cluster else { return [] }
        let nodes = Set(cluster.seats.values.compactMap(\.partner?.node)).subtracting([cluster.node])
        return nodes.sorted()
    }

    /// Each room a local connection holds a seat in, with those connections (rooms by code,
    /// connections ascending): the shell pushes their seats' deadlines forward in Redis every
    /// heartbeat, each room in its own slot.
    public var clusterSeatRooms: [(room: RoomCode, connections: [ConnectionID])] {
        guard let cluster else { return [] }
        var rooms: [RoomCode: [ConnectionID]] = [:]
        for id in cluster.seats.keys.sorted() {
            guard let room = cluster.seats[id]?.room else { continue }
            rooms[room, default: []].append(id)
        }
        return rooms.keys.sorted().map { (room: $0, connections: rooms[$0] ?? []) }
    }

    /// Local connections seated in cluster mode (for tests and metrics).
    public var clusterSeatCount: Int { cluster?.seats.count ?? 0 }

    /// The room-mate of `id` on this node, if any (single relay: from `rooms`).
    func localMate(of id: ConnectionID) -> ConnectionID? {
        guard let cluster else { return rooms.peer(of: id) }
        guard let partner = cluster.seats[id]?.partner, partner.node == cluster.node else { return nil }
        return ConnectionID(partner.connection)
    }

    func peer(_ id: ConnectionID) -> ClusterPeer? {
        cluster.map { ClusterPeer(node: $0.node, connection: id.value) }
    }

    // MARK: JOIN

    /// A well-formed JOIN in cluster mode, after the connection's checks; `overJoinRate`: the
    /// address's join bucket is empty (only a seat with the presented token may be taken back).
    mutating func clusterJoin(
        _ room: RoomCode, token: ReconnectToken?, overJoinRate: Bool, from id: ConnectionID, now: Instant
    ) {
        guard let state = cluster else { return }
        if let seat = state.seats[id] {
            guard seat.room == room else {
                return reply(.alreadyJoined, RelayErrorCode.alreadyJoined.defaultMessage, to: id, now: now)
            }
            // A retransmitted JOIN: answer again (its first answer may have been lost).
            welcomeSeated(id, seat, announce: false)
            return
        }
        if let pending = state.pending[id] {
            // The answer is on its way; a JOIN of another room meanwhile is a client's error.
            if pending.room != room {
                reply(.alreadyJoined, RelayErrorCode.alreadyJoined.defaultMessage, to: id, now: now)
            }
            return
        }
        if overJoinRate && token == nil {
            reply(.joinRateLimited, RelayErrorCode.joinRateLimited.defaultMessage, to: id, now: now)
            return
        }
        guard state.available else {
            reply(.clusterUnavailable, RelayErrorCode.clusterUnavailable.defaultMessage, to: id, now: now)
            return
        }
        guard state.seats.count + state.pending.count < limits.roomsMax else {
            reply(.tooManyRooms, RelayErrorCode.tooManyRooms.defaultMessage, to: id, now: now)
            return
        }
        let newToken = limits.seatGraceSeconds > 0 ? ReconnectToken(entropy: entropy) : nil
        let request = ClusterJoinRequest(room: room, token: token, newToken: newToken, reclaimOnly: overJoinRate)
        cluster?.pending[id] = request
        actions.append(.cluster(.join(id, request)))
    }

    /// Redis answered the JOIN script for `id`.
    public mutating func clusterJoinAnswered(
        _ id: ConnectionID, _ request: ClusterJoinRequest, _ reply: ClusterJoinReply, now: Instant
    ) {
        guard cluster != nil else { return }
        if request.rejoin {
            rejoinAnswered(id, request, reply, now: now)
            return
        }
        guard cluster?.pending[id] == request, case .serving = connections[id]?.state else {
            // The connection left (or closed) while Redis was deciding: give back what it got.
            if cluster?.pending[id] == request { cluster?.pending[id] = nil }
            if case let .admitted(_, reclaimed, evicted) = reply {
                gaveUpWhilePending(id, request, reclaimed, evicted, now: now)
            }
            return
        }
        cluster?.pending[id] = nil
        let announced = cluster?.announced.removeValue(forKey: id)
        switch reply {
        case .unavailable:
            self.reply(.clusterUnavailable, RelayErrorCode.clusterUnavailable.defaultMessage, to: id, now: now)
        case let .refused(code):
            self.reply(code, code.defaultMessage, to: id, now: now)
        case .admitted(var partner, let reclaimed, let evicted):
            if let evicted { evictLocal(evicted, now: now) }
            // A mate that joined after this JOIN's script ran is newer than its answer.
            if let announced { partner = announced }
            let token = reclaimed ? request.token : request.newToken
            let seat = ClusterSeat(room: request.room, token: token, partner: partner)
            cluster?.seats[id] = seat
            enteredRoom(id)
            if reclaimed { storedCounters.seatsReclaimed += 1 }
            welcomeSeated(id, seat, announce: true)
        }
    }

    /// The connection left (or closed) while Redis was deciding, and Redis seated it: give the seat
    /// back. One taken back with the client's token stays reserved for it (the client has the
    /// token and reconnects); one it never heard of is freed. A local connection the JOIN evicted
    /// from that seat is closed, as it would have been.
    private mutating func gaveUpWhilePending(
        _ id: ConnectionID, _ request: ClusterJoinRequest, _ reclaimed: Bool, _ evicted: ClusterPeer?, now: Instant
    ) {
        if let evicted { evictLocal(evicted, now: now) }
        let reserve = reclaimed && request.token != nil && limits.seatGraceSeconds > 0
        actions.append(.cluster(.leave(id, room: request.room, reserve: reserve, partner: nil)))
    }

    /// JOINED (with the seat's token), then PEER_FOUND to both when there is a room-mate (to a
    /// local room-mate only when `announce`: a remote one hears it from the JOIN script).
    private mutating func welcomeSeated(_ id: ConnectionID, _ seat: ClusterSeat, announce: Bool) {
        let peers = seat.partner == nil ? 1 : 2
        let joined: RelayMessage = seat.token.map { .joinedWithToken(room: seat.room, peers: peers, token: $0) }
            ?? .joined(room: seat.room, peers: peers)
        actions.append(.send(id, joined))
        guard let partner = seat.partner, let me = peer(id) else { return }
        if announce, partner.node == me.node { introduce(me, to: ConnectionID(partner.connection)) }
        actions.append(.send(id, .peerFound))
    }

    /// Local connection `id` has room-mate `partner` now: PEER_LEFT first if it had another
    /// (as a single relay says when a seat changes hands), then PEER_FOUND; nothing if unchanged.
    /// A mate this node had presumed gone (`ClusterSeat.presumedGone`) that turns up again was
    /// told nothing by its own node: that node is asked to say PEER_LEFT then PEER_FOUND to it,
    /// so that both sides open a handshake, as both do after a break on a single relay.
    private mutating func introduce(_ partner: ClusterPeer, to id: ConnectionID) {
        cluster?.unconfirmed[id] = nil
        guard let seat = cluster?.seats[id], seat.partner != partner, let me = peer(id) else { return }
        if seat.partner != nil { actions.append(.send(id, .peerLeft)) }
        cluster?.seats[id]?.partner = partner
        cluster?.seats[id]?.presumedGone = nil
        actions.append(.send(id, .peerFound))
        guard seat.partner == nil, seat.presumedGone == partner, partner.node != me.node else { return }
        actions.append(.cluster(.notice(to: partner.node, .peerLeft(to: partner.connection, partner: me))))
        actions.append(.cluster(.notice(to: partner.node, .peerFound(to: partner.connection, partner: me))))
    }

    /// Ask Redis who holds the room's other seat now (a rejoin: idempotent for a seat Redis has,
    /// and it takes back with the token one Redis reserved); `rejoinAnswered` decides.
    private mutating func lookUp(_ id: ConnectionID) {
        guard let state = cluster, state.available, let seat = state.seats[id] else { return }
        let request = ClusterJoinRequest(
            room: seat.room, token: seat.token, newToken: seat.token, rejoin: true, heard: seat.heard)
        actions.append(.cluster(.join(id, request)))
    }

    /// A seat's holder lost it to its own token's JOIN: if it is local, close it (its seat is no
    /// longer its own, so no leave goes to Redis; a local room-mate is told it left).
    private mutating func evictLocal(_ evicted: ClusterPeer, now: Instant) {
        guard evicted.node == cluster?.node else { return }
        let id = ConnectionID(evicted.connection)
        dropSeat(id, tellRedis: false, reserve: false, now: now)
        close(id, .policyViolation, error: nil, now: now)
    }

    // MARK: Leaving

    /// A served connection leaves in cluster mode: its local room-mate is told now, Redis by a
    /// `leave` (whose script tells a remote room-mate).
    mutating func clusterLeave(_ id: ConnectionID, reserve: Bool, now: Instant) {
        cluster?.pending[id] = nil
        cluster?.announced[id] = nil
        dropSeat(id, tellRedis: true, reserve: reserve, now: now)
    }

    private mutating func dropSeat(_ id: ConnectionID, tellRedis: Bool, reserve: Bool, now: Instant) {
        cluster?.unconfirmed[id] = nil
        guard let seat = cluster?.seats.removeValue(forKey: id) else { return }
        if tellRedis {
            let reserve = reserve && seat.token != nil
            actions.append(.cluster(.leave(id, room: seat.room, reserve: reserve, partner: seat.partner)))
        }
        guard let mate = localMateID(seat), let me = peer(id), cluster?.seats[mate]?.partner == me else { return }
        cluster?.seats[mate]?.partner = nil
        if !isShuttingDown { actions.append(.send(mate, .peerLeft)) }
        unpause(mate, .peerBackpressure, now: now)
    }

    private func localMateID(_ seat: ClusterSeat) -> ConnectionID? {
        guard let partner = seat.partner, partner.node == cluster?.node else { return nil }
        return ConnectionID(partner.connection)
    }

    // MARK: SIGNALs

    /// A well-formed SIGNAL from a local connection in cluster mode.
    mutating func clusterRoute(_ held: HeldFrame<Frame>, from id: ConnectionID, now: Instant) {
        guard let seat = cluster?.seats[id] else {
            return reply(.notJoined, RelayErrorCode.notJoined.defaultMessage, to: id, now: now)
        }
        guard let partner = seat.partner else {
            return reply(.noPeer, RelayErrorCode.noPeer.defaultMessage, to: id, now: now)
        }
        let local = partner.node == cluster?.node
        // A local mate's seat must name the sender back: a stale partner (the mate's seat has
        // another room-mate now) gets nothing from it.
        if local, cluster?.seats[ConnectionID(partner.connection)]?.partner != peer(id) {
            return reply(.noPeer, RelayErrorCode.noPeer.defaultMessage, to: id, now: now)
        }
        storedCounters.framesForwarded &+= 1
        storedCounters.bytesForwarded &+= held.frame.relayByteCount
        if local {
            let mate = ConnectionID(partner.connection)
            appendForward(held, to: mate)
            if !overWatermark.isEmpty && overWatermark.contains(mate) { pause(id, .peerBackpressure) }
        } else {
            // In its form: the mate's node converts a binary one if its client reads only text.
            actions.append(.cluster(.signal(to: partner, from: id, held.frame, binary: held.binary)))
        }
    }

    /// A SIGNAL from another node for local connection `to`: forwarded if `from` is its
    /// room-mate (anything else is stale: dropped). The remote sender cannot be paused, so a
    /// receiver whose outbound queue is over the high watermark loses it (counted): what it costs
    /// this node is bounded by the watermark plus the frame that crossed it. The client's reliable
    /// channel sends it again. `binary`: the SIGNAL is in binary form (converted to text here for
    /// a client without binary; one that is not a binary SIGNAL is dropped, and counted).
    public mutating func clusterSignal(
        to: UInt64, from: ClusterPeer, _ frame: Frame, binary: Bool = false, now: Instant
    ) {
        let id = ConnectionID(to)
        guard let seat = cluster?.seats[id], seat.partner == from, case .serving = connections[id]?.state else {
            return
        }
        guard overWatermark.isEmpty || !overWatermark.contains(id) else {
            storedCounters.clusterSignalsDropped &+= 1
            return
        }
        // The sending node checked it; this node checks again what it is about to write (another
        // node, or whoever can publish to Redis, is not trusted with this node's clients): a
        // binary SIGNAL whose text form is malformed or over this node's cap is dropped.
        let held = HeldFrame(frame: frame, binary: binary)
        if binary {
            let textCount = frame.withRelayBytes { BinarySignal.textCount($0) }
            guard let textCount, textCount <= limits.frameSizeMaxBytes else {
                storedCounters.clusterSignalsDropped &+= 1
                return
            }
        }
        guard appendForward(held, to: id) else {
            storedCounters.clusterSignalsDropped &+= 1
            return
        }
        storedCounters.framesForwarded &+= 1
        storedCounters.bytesForwarded &+= frame.relayByteCount
    }

    // MARK: Notices, node failures, Redis availability

    /// A control message from another node.
    public mutating func clusterNotice(_ notice: ClusterNotice, now: Instant) {
        switch notice {
        case let .peerFound(to, partner):
            let id = ConnectionID(to)
            if cluster?.pending[id] != nil {
                cluster?.announced[id] = partner
                return
            }
            guard let seat = cluster?.seats[id] else { return }
            cluster?.seats[id]?.heard &+= 1
            introduce(partner, to: id)
            // The seat changed hands over there. Notices from different nodes race (a client taking
            // its seat back twice, through two nodes, is announced by both): the last to arrive
            // need not be the newest, so Redis, which orders them, is asked who holds it now.
            if let old = seat.partner, old != partner { lookUp(id) }
        case let .peerLeft(to, partner):
            let id = ConnectionID(to)
            if cluster?.announced[id] == partner { cluster?.announced[id] = nil }
            cluster?.seats[id]?.heard &+= 1
            // Its node speaks for it: a connection that left never comes back.
            if cluster?.seats[id]?.presumedGone == partner { cluster?.seats[id]?.presumedGone = nil }
            guard cluster?.seats[id]?.partner == partner else { return }
            cluster?.seats[id]?.partner = nil
            actions.append(.send(id, .peerLeft))
        case let .evicted(to):
            let id = ConnectionID(to)
            guard cluster?.seats[id] != nil else { return }
            dropSeat(id, tellRedis: false, reserve: false, now: now)
            close(id, .policyViolation, error: nil, now: now)
        }
    }

    /// These nodes' heartbeats have expired in Redis: their connections are gone. Every local
    /// room-mate of one is told PEER_LEFT (the JOIN script frees their seats when it next reads
    /// the room). Presumed gone: a node that was only cut off comes back with the same seats.
    public mutating func clusterNodesGone(_ nodes: [String], now: Instant) {
        guard let cluster, !nodes.isEmpty else { return }
        for id in cluster.seats.keys.sorted() {
            guard let partner = cluster.seats[id]?.partner, nodes.contains(partner.node) else { continue }
            self.cluster?.seats[id]?.partner = nil
            // A node that stalled or was cut off from Redis is taken for dead too: its client was
            // told nothing, and may be back (`introduce`).
            self.cluster?.seats[id]?.presumedGone = partner
            self.cluster?.seats[id]?.heard &+= 1
            actions.append(.send(id, .peerLeft))
        }
    }

    /// Redis answers again (`true`: every local seat is registered again, in `ConnectionID`
    /// order, since Redis may have lost them) or no longer does (`false`: pending JOINs are
    /// answered `CLUSTER_UNAVAILABLE`; local room-mates keep talking).
    public mutating func clusterAvailabilityChanged(_ available: Bool, now: Instant) {
        guard let state = cluster, state.available != available else { return }
        cluster?.available = available
        if available {
            clusterReregister(now: now)
        } else {
            for id in state.pending.keys.sorted() {
                guard let request = state.pending[id] else { continue }
                clusterJoinAnswered(id, request, .unavailable, now: now)
            }
            cluster?.announced = [:]
        }
    }

    /// Register every local seat again, in `ConnectionID` order: Redis came back, or this node's
    /// heartbeat key had expired (the event loop stalled past its TTL, so the other nodes took this
    /// one for dead and told its connections' mates PEER_LEFT): the JOIN script is idempotent for a
    /// seat Redis still has and announces it to the mate's node again.
    public mutating func clusterReregister(now: Instant) {
        guard let state = cluster, state.available else { return }
        for id in state.seats.keys.sorted() {
            guard let seat = state.seats[id] else { continue }
            // With its token: a seat Redis reserved meanwhile (its node was taken for dead) is
            // taken back; the script takes no held seat for a rejoin.
            let request = ClusterJoinRequest(
                room: seat.room, token: seat.token, newToken: seat.token, rejoin: true, heard: seat.heard)
            actions.append(.cluster(.join(id, request)))
        }
    }

    /// A heartbeat went to Redis (once a second): seats still waiting for their mate's node to
    /// announce itself count down; at zero they ask Redis again (`rejoinAnswered` decides).
    public mutating func clusterHeartbeat(now: Instant) {
        guard let state = cluster, state.available, !state.unconfirmed.isEmpty else { return }
        for id in state.unconfirmed.keys.sorted() {
            guard let left = state.unconfirmed[id], left > 0, let seat = state.seats[id] else { continue }
            cluster?.unconfirmed[id] = left - 1
            guard left == 1 else { continue }
            let request = ClusterJoinRequest(
                room: seat.room, token: nil, newToken: seat.token, rejoin: true, heard: seat.heard)
            actions.append(.cluster(.join(id, request)))
        }
    }

    /// The answer to a re-registration: the room-mate Redis names now replaces the one the seat
    /// had (PEER_LEFT / PEER_FOUND as it changes); a seat Redis gave to someone else meanwhile
    /// ends its connection (the client reconnects and JOINs again).
    private mutating func rejoinAnswered(
        _ id: ConnectionID, _ request: ClusterJoinRequest, _ reply: ClusterJoinReply, now: Instant
    ) {
        guard let seat = cluster?.seats[id], seat.room == request.room else { return }
        switch reply {
        case .unavailable:
            return
        case .refused:
            dropSeat(id, tellRedis: false, reserve: false, now: now)
            close(id, .tryAgainLater, error: .clusterUnavailable, now: now)
        case .admitted(var partner, _, let evicted):
            if let evicted { evictLocal(evicted, now: now) }
            // A local mate Redis names must still hold its seat here: one that left while Redis
            // answered (its leave reached Redis after this rejoin) was already said PEER_LEFT and
            // is gone whatever the answer says; one whose own JOIN answer is still on its way
            // introduces itself when that comes (`welcomeSeated`).
            if let named = partner, named.node == cluster?.node,
               cluster?.seats[ConnectionID(named.connection)]?.room != request.room {
                partner = nil
            }
            // A notice about this seat came while Redis answered, and the two disagree: which is
            // newer is unknown (they travel on different connections), so Redis is asked again.
            if request.heard != seat.heard, partner != seat.partner {
                return lookUp(id)
            }
            if let partner, let me = peer(id), partner.node == me.node {
                introduce(me, to: ConnectionID(partner.connection))
            }
            // No room-mate in Redis: after a Redis restart the mate's node may not have
            // registered its seat yet (it then announces itself). So the seat keeps the mate it
            // had for a few heartbeats (`clusterHeartbeat`): a PEER_LEFT now would make the client
            // give up what the mate never acknowledged. Asked again and still alone: PEER_LEFT.
            if let partner {
                introduce(partner, to: id)
            } else if seat.partner != nil {
                if cluster?.unconfirmed[id] == 0 {
                    cluster?.unconfirmed[id] = nil
                    cluster?.seats[id]?.partner = nil
                    cluster?.seats[id]?.presumedGone = seat.partner
                    actions.append(.send(id, .peerLeft))
                } else if cluster?.unconfirmed[id] == nil {
                    cluster?.unconfirmed[id] = ClusterState.unconfirmedHeartbeats
                }
            }
        }
    }
}
