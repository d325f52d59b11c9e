import ChatCore
import RelayCore

/// A deliberately naive reference model of the relay's room logic (docs/PROTOCOL.md §1), to
/// compare `RelayRooms` against step by step.
///
/// It keeps rooms in a plain array scanned linearly (no dictionaries, no indexes), takes the
/// parse result from `WireCodec.decodeClientMessage` (the relay itself uses the separate
/// zero-copy `inspectClientFrame`), and writes each protocol rule out as the table says it.
public struct RoomsModel: Sendable {
    public typealias Action = RelayRooms<Int>.Action

    /// Open rooms and their peers in join order.
    public private(set) var rooms: [(room: RoomCode, peers: [Int])] = []
    public let roomsMax: Int

    public init(roomsMax: Int) {
        self.roomsMax = roomsMax
    }

    public func room(of connection: Int) -> RoomCode? {
        rooms.first { $0.peers.contains(connection) }?.room
    }

    public func peers(in room: RoomCode) -> [Int] {
        rooms.first { $0.room == room }?.peers ?? []
    }

    public func peer(of connection: Int) -> Int? {
        guard let room = room(of: connection) else { return nil }
        return peers(in: room).first { $0 != connection }
    }

    public var joinedConnections: [Int] {
        rooms.flatMap(\.peers).sorted()
    }

    /// The relay's answer to one frame from `connection`.
    public mutating func receive(frame: [UInt8], from connection: Int) -> [Action] {
        let message: ClientMessage
        do {
            message = try WireCodec.decodeClientMessage(frame)
        } catch {
            return [.send(to: connection, .error(code: error.relayErrorCode, message: error.description))]
        }
        switch message {
        case let .join(room): return join(connection, room)
        case .signal: return signal(connection)
        }
    }

    /// JOIN: answer a repeat again, refuse a second room, a full room, or one room too many.
    public mutating func join(_ connection: Int, _ room: RoomCode) -> [Action] {
        if let current = self.room(of: connection) {
            if current != room { return [refuse(connection, .alreadyJoined)] }
            let count = peers(in: room).count
            return [.send(to: connection, .joined(room: room, peers: count))]
                + (count == 2 ? [.send(to: connection, .peerFound)] : [])
        }
        if let index = rooms.firstIndex(where: { $0.room == room }) {
            if rooms[index].peers.count >= 2 { return [refuse(connection, .roomFull)] }
            let first = rooms[index].peers[0]
            rooms[index].peers.append(connection)
            return [
                .send(to: connection, .joined(room: room, peers: 2)),
                .send(to: first, .peerFound), .send(to: connection, .peerFound),
            ]
        }
        if rooms.count >= roomsMax { return [refuse(connection, .tooManyRooms)] }
        rooms.append((room, [connection]))
        return [.send(to: connection, .joined(room: room, peers: 1))]
    }

    /// SIGNAL: forward to the other peer, or say why not.
    public func signal(_ connection: Int) -> [Action] {
        guard room(of: connection) != nil else { return [refuse(connection, .notJoined)] }
        guard let other = peer(of: connection) else { return [refuse(connection, .noPeer)] }
        return [.forward(to: other)]
    }

    /// The connection is gone: the peer that stays is told.
    public mutating func disconnect(_ connection: Int) -> [Action] {
        guard let index = rooms.firstIndex(where: { $0.peers.contains(connection) }) else { return [] }
        rooms[index].peers.removeAll { $0 == connection }
        let remaining = rooms[index].peers
        if remaining.isEmpty { rooms.remove(at: index) }
        return remaining.map { .send(to: $0, .peerLeft) }
    }

    private func refuse(_ connection: Int, _ code: RelayErrorCode) -> Action {
        .send(to: connection, .error(code: code, message: code.defaultMessage))
    }
}

/// One step of a room-logic scenario (fuzz inputs and property tests both build these).
public enum RoomsStep: Hashable, Sendable, CustomStringConvertible {
    /// A well-formed JOIN of `RoomsScenario.rooms[room]`.
    case join(connection: Int, room: Int)
    /// A well-formed SIGNAL of `RoomsScenario.kinds[kind]`.
    case signal(connection: Int, kind: Int)
    /// Any bytes at all.
    case frame(connection: Int, bytes: [UInt8])
    case disconnect(connection: Int)

    public var description: String {
        switch self {
        case let .join(connection, room): "join(c\(connection), \(RoomsScenario.rooms[room]))"
        case let .signal(connection, kind): "signal(c\(connection), \(RoomsScenario.kinds[kind]))"
        case let .frame(connection, bytes): "frame(c\(connection), \(String(decoding: bytes, as: UTF8.self).debugDescription))"
        case let .disconnect(connection): "disconnect(c\(connection))"
        }
    }
}

/// Runs `RelayRooms` and `RoomsModel` side by side and reports every difference.
public struct RoomsScenario {
    /// Connections are numbered 0..<connectionCount.
    public static let connectionCount = 6
    /// The relay may hold this many rooms, fewer than `rooms`, so TOO_MANY_ROOMS is reachable.
    public static let roomsMax = 3
    /// Room codes the structured steps use, shortest and longest legal ones included.
    public static let rooms: [RoomCode] = ["ROOM1", "ROOM2", "A", "9", String(repeating: "Z", count: RoomCode.lengthMax)]
        .map { try! RoomCode($0) }
    public static let kinds: [SignalKind] = [.keyExchange, .keyConfirm, .message, .ack, .pake, SignalKind("FILE_CHUNK")!]

    public private(set) var relay = RelayRooms<Int>(limits: .init(roomsMax: roomsMax))
    public private(set) var model = RoomsModel(roomsMax: roomsMax)

    public init() {}

    /// The bytes a step sends (empty for a disconnect).
    public static func frame(for step: RoomsStep) -> [UInt8] {
        switch step {
        case let .join(_, room): WireCodec.encode(ClientMessage.join(rooms[room % rooms.count]))
        case let .signal(_, kind):
            WireCodec.encode(ClientMessage.signal(Signal(kind: kinds[kind % kinds.count], payload: [UInt8(kind)])))
        case let .frame(_, bytes): bytes
        case .disconnect: []
        }
    }

    /// Apply one step to both; returns what disagrees or breaks an invariant (empty: all good).
    public mutating func apply(_ step: RoomsStep) -> [String] {
        let relayActions: [RelayRooms<Int>.Action]
        let modelActions: [RelayRooms<Int>.Action]
        switch step {
        case let .join(connection, _), let .signal(connection, _), let .frame(connection, _):
            let bytes = Self.frame(for: step)
            relayActions = relay.receive(frame: bytes, from: connection % Self.connectionCount)
            modelActions = model.receive(frame: bytes, from: connection % Self.connectionCount)
        case let .disconnect(connection):
            relayActions = relay.disconnect(connection % Self.connectionCount)
            modelActions = model.disconnect(connection % Self.connectionCount)
        }
        var problems: [String] = []
        if relayActions != modelActions {
            problems.append("\(step): relay did \(relayActions), model expects \(modelActions)")
        }
        problems += checkAgreement()
        for case let .send(_, reply) in relayActions {
            let encoded = WireCodec.encode(reply)
            if (try? WireCodec.decodeRelayMessage(encoded)) != reply {
                problems.append("\(step): a client cannot read the relay's reply \(reply)")
            }
        }
        return problems
    }

    /// The relay's observable state equals the model's, and no room holds more than two peers.
    public func checkAgreement() -> [String] {
        var problems: [String] = []
        if relay.joinedConnections != model.joinedConnections {
            problems.append("joined connections \(relay.joinedConnections) != model \(model.joinedConnections)")
        }
        if relay.roomCount != model.rooms.count {
            problems.append("room count \(relay.roomCount) != model \(model.rooms.count)")
        }
        if relay.joinedConnectionCount != model.joinedConnections.count {
            problems.append("joined count \(relay.joinedConnectionCount) != model \(model.joinedConnections.count)")
        }
        for room in Self.rooms where relay.occupancy(of: room) != model.peers(in: room).count {
            problems.append("occupancy of \(room): \(relay.occupancy(of: room)) != model \(model.peers(in: room).count)")
        }
        for connection in 0..<Self.connectionCount {
            if relay.room(of: connection) != model.room(of: connection) {
                problems.append("room of c\(connection): \(String(describing: relay.room(of: connection)))")
            }
            if relay.peer(of: connection) != model.peer(of: connection) {
                problems.append("peer of c\(connection): \(String(describing: relay.peer(of: connection)))")
            }
        }
        if relay.roomCount > Self.roomsMax { problems.append("more rooms than the cap") }
        for room in Self.rooms where relay.occupancy(of: room) > 2 { problems.append("\(room) holds over two peers") }
        return problems
    }
}

/// The room logic fed an arbitrary sequence of frames and disconnects from six connections,
/// compared with `RoomsModel` after every step.
///
/// Input: a sequence of steps, each an op byte (`op % 4`: join, signal, raw frame, disconnect)
/// and a connection byte, then the step's argument (room index, kind index, or a length-prefixed
/// frame of at most 1 KiB).
public func fuzzRelayRooms(_ data: UnsafeRawBufferPointer) {
    var reader = FuzzReader(data)
    var scenario = RoomsScenario()
    // Bounded: every step consumes at least one byte.
    while let op = reader.byte() {
        let connection = Int(reader.byte() ?? 0) % RoomsScenario.connectionCount
        let step: RoomsStep
        switch op % 4 {
        case 0: step = .join(connection: connection, room: Int(reader.byte() ?? 0) % RoomsScenario.rooms.count)
        case 1: step = .signal(connection: connection, kind: Int(reader.byte() ?? 0) % RoomsScenario.kinds.count)
        case 2: step = .frame(connection: connection, bytes: reader.chunk(maxLength: 1024))
        default: step = .disconnect(connection: connection)
        }
        let problems = scenario.apply(step)
        require(problems.isEmpty, problems.joined(separator: "\n"))
    }
}

/// Writes a room scenario in the format `fuzzRelayRooms` reads.
public func encodeRoomsInput(_ steps: [RoomsStep]) -> [UInt8] {
    var writer = FuzzWriter()
    for step in steps {
        switch step {
        case let .join(connection, room):
            writer.byte(0); writer.byte(UInt8(connection)); writer.byte(UInt8(room))
        case let .signal(connection, kind):
            writer.byte(1); writer.byte(UInt8(connection)); writer.byte(UInt8(kind))
        case let .frame(connection, bytes):
            writer.byte(2); writer.byte(UInt8(connection)); writer.chunk(bytes)
        case let .disconnect(connection):
            writer.byte(3); writer.byte(UInt8(connection))
        }
    }
    return writer.bytes
}

/// `RelayRooms` invariants that hold for any connection type.
func checkRoomsInvariants<C>(_ rooms: RelayRooms<C>) {
    require(rooms.joinedConnectionCount <= 2 * rooms.roomCount, "more joined connections than seats")
    require(rooms.roomCount <= rooms.limits.roomsMax, "more rooms than the cap")
    for connection in rooms.joinedConnections {
        guard let room = rooms.room(of: connection) else { fatalError("joined without a room") }
        require((1...2).contains(rooms.occupancy(of: room)), "room occupancy out of range")
    }
}
