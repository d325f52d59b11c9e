import ChatCore

/// The relay's room logic, sans-IO: join with the two-peer cap, forward to the other peer, leave,
/// and seat reservation (a departed peer's seat kept for its reconnect token).
///
/// `RelayEngine` is its one caller in the relay (it adds admission, rate limits, connection
/// policy and the reservations' timers around it); the fuzz harness and model tests drive it
/// directly. `Connection` is whatever identifies a connection (the engine's `ConnectionID`, a
/// test's integer).
///
/// A room has at most two seats. A seat is held by a live connection, or reserved: its peer's
/// connection ended and the seat waits, until `reservedUntil`, for a JOIN with its token. A
/// reserved seat counts against the two-peer cap (a JOIN without its token gets `ROOM_FULL`) but
/// is not a peer: SIGNALs are not forwarded to it and `JOINED`'s `peers` counts live connections.
/// Seats get a token only when the caller supplies one (`join(_:room:token:makeToken:)`); the
/// token-less entry points (`receive(frame:from:)`, `join(_:room:)`, `disconnect(_:)`) behave
/// exactly as the room logic did before reservations.
///
/// It never iterates a dictionary into an output: every action is about one or two named
/// connections, and whole-relay operations walk connections in sorted order.
public struct RelayRooms<Connection: Hashable & Comparable & Sendable>: Sendable {
    /// What the shell must do after an input.
    public enum Action: Hashable, Sendable {
        /// Send this message to a connection.
        case send(to: Connection, RelayMessage)
        /// Forward the input frame, byte for byte, to this connection (a SIGNAL).
        case forward(to: Connection)
    }

    /// Limits on what the rooms may hold.
    public struct Limits: Hashable, Sendable {
        /// The most rooms open at once; a JOIN that would open one more is refused.
        public var roomsMax: Int
        public var wire: WireLimits

        public init(roomsMax: Int = 100_000, wire: WireLimits = .default) {
            precondition(roomsMax >= 1)
            self.roomsMax = roomsMax
            self.wire = wire
        }
    }

    /// One place in a room.
    struct Seat: Hashable, Sendable {
        /// The live connection in it; nil while it is reserved.
        var holder: Connection?
        /// What a JOIN must present to take it back (nil: a seat given without one).
        var token: ReconnectToken?
        /// While reserved: when the reservation ends.
        var reservedUntil: Instant?
    }

    /// Who holds a seat.
    public enum SeatStatus: Hashable, Sendable {
        /// No seat in that room has that token.
        case none
        /// Reserved: its peer is gone and it waits for the token.
        case reserved
        /// Held by this live connection.
        case held(Connection)
    }

    /// What a departure did.
    public struct Departure: Hashable, Sendable {
        /// Messages for the peer that stays (`PEER_LEFT`).
        public var actions: [Action]
        /// The token of the seat now reserved, if the seat was kept (arm its expiry).
        public var reserved: ReconnectToken?
    }

    public let limits: Limits
    /// Each room's seats, in join order (never more than two).
    private var rooms: [RoomCode: [Seat]] = [:]
    /// The room each live connection is in.
    private var membership: [Connection: RoomCode] = [:]
    /// The room of each reserved seat, by its token.
    private var reservations: [ReconnectToken: RoomCode] = [:]

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Open rooms (a room with only reserved seats is open).
    public var roomCount: Int { rooms.count }
    /// Connections that have joined a room.
    public var joinedConnectionCount: Int { membership.count }
    /// Seats reserved for a departed peer.
    public var reservedSeatCount: Int { reservations.count }

    /// The other live peer in `connection`'s room, if any.
    public func peer(of connection: Connection) -> Connection? {
        guard let room = membership[connection], let seats = rooms[room] else { return nil }
        return Self.otherHolder(in: seats, than: connection)
    }

    /// The room `connection` has joined.
    public func room(of connection: Connection) -> RoomCode? {
        membership[connection]
    }

    /// How many seats `room` holds, live or reserved (0 when it is not open; never over two).
    public func occupancy(of room: RoomCode) -> Int {
        rooms[room]?.count ?? 0
    }

    /// Every joined connection, sorted (for whole-relay operations such as a shutdown).
    public var joinedConnections: [Connection] {
        membership.keys.sorted()
    }

    /// Every reserved seat's token and expiry, sorted by token (to rebuild timers).
    public var reservedSeats: [(token: ReconnectToken, until: Instant)] {
        reservations.keys.sorted().compactMap { token in
            guard let room = reservations[token],
                let until = rooms[room]?.first(where: { $0.token == token })?.reservedUntil
            else { return nil }
            return (token, until)
        }
    }

    /// Who holds the seat of `room` whose token is `token`.
    public func seat(_ token: ReconnectToken, in room: RoomCode) -> SeatStatus {
        guard let seat = rooms[room]?.first(where: { $0.token == token }) else { return .none }
        return seat.holder.map { .held($0) } ?? .reserved
    }

    /// Handle one text frame from `connection` (no tokens are given out; see the type's notes).
    public mutating func receive(frame: UnsafeRawBufferPointer, from connection: Connection) -> [Action] {
        let decoded: ClientFrame
        do {
            decoded = try WireCodec.inspectClientFrame(frame, limits: limits.wire)
        } catch {
            return [.send(to: connection, .error(code: error.relayErrorCode, message: error.description))]
        }
        switch decoded {
        case let .join(room, token):
            return join(connection, room: room, token: token, makeToken: nil)
        case .signal:
            return signal(from: connection)
        }
    }

    /// Handle one text frame from `connection` (array form).
    public mutating func receive(frame: [UInt8], from connection: Connection) -> [Action] {
        frame.withUnsafeBytes { receive(frame: $0, from: connection) }
    }

    /// `connection` asks to join `room` (no token presented, none given out).
    public mutating func join(_ connection: Connection, room: RoomCode) -> [Action] {
        join(connection, room: room, token: nil, makeToken: nil)
    }

    /// `connection` asks to join `room`, presenting `token` if it held a seat there before. A
    /// reserved seat with that token is its again at once; otherwise it takes a free seat, which
    /// gets a token from `makeToken` (none when nil). A seat with that token held by a live
    /// connection is not taken here: the engine closes that connection first (which reserves the
    /// seat), so a half-open old connection cannot lock its own client out.
    public mutating func join(
        _ connection: Connection, room: RoomCode, token: ReconnectToken?, makeToken: (() -> ReconnectToken)?
    ) -> [Action] {
        if let current = membership[connection] {
            guard current == room else { return [refusal(connection, .alreadyJoined)] }
            // A repeated JOIN (the client retransmits until it sees JOINED): answer again, and
            // repeat PEER_FOUND if there is a peer, in case the first one was lost.
            return welcome(connection, to: room, announceToOther: false)
        }
        var seats = rooms[room] ?? []
        if let token, let index = seats.firstIndex(where: { $0.token == token && $0.holder == nil }) {
            seats[index].holder = connection
            seats[index].reservedUntil = nil
            reservations.removeValue(forKey: token)
        } else {
            guard seats.count < RoomCode.peersMax else { return [refusal(connection, .roomFull)] }
            if seats.isEmpty && rooms.count >= limits.roomsMax { return [refusal(connection, .tooManyRooms)] }
            seats.append(Seat(holder: connection, token: makeToken?(), reservedUntil: nil))
        }
        rooms[room] = seats
        membership[connection] = room
        checkInvariants(room)
        return welcome(connection, to: room, announceToOther: true)
    }

    /// JOINED (with the seat's token, if it has one), then PEER_FOUND to both when the other seat
    /// is live (to the other peer only when `connection` just arrived).
    private func welcome(_ connection: Connection, to room: RoomCode, announceToOther: Bool) -> [Action] {
        let seats = rooms[room] ?? []
        let live = seats.reduce(0) { $0 + ($1.holder == nil ? 0 : 1) }
        let token = seats.first { $0.holder == connection }?.token
        let joined: RelayMessage = token.map { .joinedWithToken(room: room, peers: live, token: $0) }
            ?? .joined(room: room, peers: live)
        var actions: [Action] = [.send(to: connection, joined)]
        if let other = Self.otherHolder(in: seats, than: connection) {
            if announceToOther { actions.append(.send(to: other, .peerFound)) }
            actions.append(.send(to: connection, .peerFound))
        }
        return actions
    }

    /// Where a well-formed SIGNAL goes.
    public enum SignalRoute: Hashable, Sendable {
        /// Forward it, byte for byte, to this connection (the other peer).
        case forward(to: Connection)
        /// Answer the sender with this `ERROR` code instead.
        case refuse(RelayErrorCode)
    }

    /// `connection` sent a well-formed SIGNAL: where it goes. The relay's per-frame path uses this
    /// form, which allocates nothing (`signal(from:)` returns an array).
    public func route(signalFrom connection: Connection) -> SignalRoute {
        guard let room = membership[connection] else { return .refuse(.notJoined) }
        guard let seats = rooms[room], let peer = Self.otherHolder(in: seats, than: connection) else {
            return .refuse(.noPeer)
        }
        return .forward(to: peer)
    }

    /// `connection` sent a well-formed SIGNAL: forward it to the other peer.
    public func signal(from connection: Connection) -> [Action] {
        switch route(signalFrom: connection) {
        case let .forward(to: peer): [.forward(to: peer)]
        case let .refuse(code): [refusal(connection, code)]
        }
    }

    /// `connection` is gone: leave its room (freeing the seat) and tell the other peer.
    public mutating func disconnect(_ connection: Connection) -> [Action] {
        leave(connection, reserveUntil: nil).actions
    }

    /// `connection` is gone: the other live peer is told `PEER_LEFT`; the seat is reserved until
    /// `reserveUntil` if it has a token (else, or with nil, it is freed, and an empty room closes).
    public mutating func leave(_ connection: Connection, reserveUntil: Instant?) -> Departure {
        guard let room = membership.removeValue(forKey: connection), var seats = rooms[room],
            let index = seats.firstIndex(where: { $0.holder == connection })
        else { return Departure(actions: [], reserved: nil) }
        var reserved: ReconnectToken?
        if let reserveUntil, let token = seats[index].token {
            seats[index].holder = nil
            seats[index].reservedUntil = reserveUntil
            reservations[token] = room
            reserved = token
        } else {
            seats.remove(at: index)
        }
        let others = seats.compactMap(\.holder)
        if seats.isEmpty {
            rooms.removeValue(forKey: room)
        } else {
            rooms[room] = seats
            checkInvariants(room)
        }
        return Departure(actions: others.map { .send(to: $0, .peerLeft) }, reserved: reserved)
    }

    /// The reservation of the seat with `token` ends if it is due at `now`: the seat is freed
    /// (and an empty room closes). False when it is not due (it was taken back, or reserved
    /// again later) or unknown.
    public mutating func expireReservation(_ token: ReconnectToken, now: Instant) -> Bool {
        guard let room = reservations[token], var seats = rooms[room],
            let index = seats.firstIndex(where: { $0.token == token && $0.holder == nil }),
            let until = seats[index].reservedUntil, until <= now
        else { return false }
        reservations.removeValue(forKey: token)
        seats.remove(at: index)
        if seats.isEmpty {
            rooms.removeValue(forKey: room)
        } else {
            rooms[room] = seats
        }
        return true
    }

    private static func otherHolder(in seats: [Seat], than connection: Connection) -> Connection? {
        for seat in seats {
            if let holder = seat.holder, holder != connection { return holder }
        }
        return nil
    }

    private func refusal(_ connection: Connection, _ code: RelayErrorCode) -> Action {
        .send(to: connection, .error(code: code, message: code.defaultMessage))
    }

    private func checkInvariants(_ room: RoomCode) {
        let seats = rooms[room] ?? []
        precondition(seats.count <= RoomCode.peersMax, "room over two seats")
        assert(seats.allSatisfy { $0.holder.map { membership[$0] == room } ?? true }, "room and membership disagree")
    }
}
