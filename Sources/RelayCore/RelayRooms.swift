import ChatCore

/// The relay's room logic, sans-IO: join with the two-peer cap, forward to the other peer, leave.
///
/// `RelayEngine` is its one caller in the relay (it adds admission, rate limits and connection
/// policy around it); the fuzz harness and model tests drive it directly. `Connection` is
/// whatever identifies a connection (the engine's `ConnectionID`, a test's integer).
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

    public let limits: Limits
    /// Each room's peers, in join order (never more than two).
    private var rooms: [RoomCode: [Connection]] = [:]
    /// The room each joined connection is in.
    private var membership: [Connection: RoomCode] = [:]

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Open rooms.
    public var roomCount: Int { rooms.count }
    /// Connections that have joined a room.
    public var joinedConnectionCount: Int { membership.count }

    /// The other peer in `connection`'s room, if any.
    public func peer(of connection: Connection) -> Connection? {
        guard let room = membership[connection], let peers = rooms[room] else { return nil }
        return peers.first { $0 != connection }
    }

    /// The room `connection` has joined.
    public func room(of connection: Connection) -> RoomCode? {
        membership[connection]
    }

    /// How many peers `room` holds (0 when it is not open).
    public func occupancy(of room: RoomCode) -> Int {
        rooms[room]?.count ?? 0
    }

    /// Every joined connection, sorted (for whole-relay operations such as a shutdown).
    public var joinedConnections: [Connection] {
        membership.keys.sorted()
    }

    /// Handle one text frame from `connection`.
    public mutating func receive(frame: UnsafeRawBufferPointer, from connection: Connection) -> [Action] {
        let decoded: ClientFrame
        do {
            decoded = try WireCodec.inspectClientFrame(frame, limits: limits.wire)
        } catch {
            return [.send(to: connection, .error(code: error.relayErrorCode, message: error.description))]
        }
        switch decoded {
        case let .join(room):
            return join(connection, room: room)
        case .signal:
            return signal(from: connection)
        }
    }

    /// Handle one text frame from `connection` (array form).
    public mutating func receive(frame: [UInt8], from connection: Connection) -> [Action] {
        frame.withUnsafeBytes { receive(frame: $0, from: connection) }
    }

    /// `connection` asks to join `room`.
    public mutating func join(_ connection: Connection, room: RoomCode) -> [Action] {
        if let current = membership[connection] {
            guard current == room else { return [refusal(connection, .alreadyJoined)] }
            // A repeated JOIN (the client retransmits until it sees JOINED): answer again, and
            // repeat PEER_FOUND if there is a peer, in case the first one was lost.
            let peers = rooms[room] ?? []
            var actions: [Action] = [.send(to: connection, .joined(room: room, peers: peers.count))]
            if peers.count == RoomCode.peersMax { actions.append(.send(to: connection, .peerFound)) }
            return actions
        }
        var peers = rooms[room] ?? []
        guard peers.count < RoomCode.peersMax else { return [refusal(connection, .roomFull)] }
        if peers.isEmpty && rooms.count >= limits.roomsMax { return [refusal(connection, .tooManyRooms)] }
        peers.append(connection)
        rooms[room] = peers
        membership[connection] = room
        checkInvariants(room)
        var actions: [Action] = [.send(to: connection, .joined(room: room, peers: peers.count))]
        if peers.count == RoomCode.peersMax {
            actions.append(.send(to: peers[0], .peerFound))
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
        guard let peer = rooms[room]?.first(where: { $0 != connection }) else { return .refuse(.noPeer) }
        return .forward(to: peer)
    }

    /// `connection` sent a well-formed SIGNAL: forward it to the other peer.
    public func signal(from connection: Connection) -> [Action] {
        switch route(signalFrom: connection) {
        case let .forward(to: peer): [.forward(to: peer)]
        case let .refuse(code): [refusal(connection, code)]
        }
    }

    /// `connection` is gone: leave its room and tell the other peer.
    public mutating func disconnect(_ connection: Connection) -> [Action] {
        guard let room = membership.removeValue(forKey: connection) else { return [] }
        var peers = rooms[room] ?? []
        peers.removeAll { $0 == connection }
        if peers.isEmpty {
            rooms.removeValue(forKey: room)
            return []
        }
        rooms[room] = peers
        checkInvariants(room)
        return peers.map { .send(to: $0, .peerLeft) }
    }

    private func refusal(_ connection: Connection, _ code: RelayErrorCode) -> Action {
        .send(to: connection, .error(code: code, message: code.defaultMessage))
    }

    private func checkInvariants(_ room: RoomCode) {
        let peers = rooms[room] ?? []
        precondition(peers.count <= RoomCode.peersMax, "room over two peers")
        assert(peers.allSatisfy { membership[$0] == room }, "room and membership disagree")
    }
}
