import ChatCore
import RelayCore

/// A deliberately naive reference model of the relay's room logic (docs/PROTOCOL.md §1, with
/// seat reservation), to compare `RelayRooms` against step by step.
///
/// It keeps rooms and their seats in plain arrays scanned linearly (no dictionaries, no
/// indexes), takes the parse result from `WireCodec.decodeClientMessage` (the relay itself uses
/// the separate zero-copy `inspectClientFrame`; only a JOIN's reconnect token, which the full
/// decoder leaves out, is read from it), and writes each protocol rule out as the table says it.
public struct RoomsModel: Sendable {
    public typealias Action = RelayRooms<Int>.Action

    /// A place in a room: a live connection, or reserved (`holder` nil) until `until`.
    public struct Seat: Sendable {
        public var holder: Int?
        public var token: ReconnectToken?
        public var until: Instant?
    }

    /// Open rooms and their seats in join order.
    public private(set) var rooms: [(room: RoomCode, seats: [Seat])] = []
    public let roomsMax: Int

    public init(roomsMax: Int) {
        self.roomsMax = roomsMax
    }

    public func room(of connection: Int) -> RoomCode? {
        rooms.first { $0.seats.contains { $0.holder == connection } }?.room
    }

    /// The live connections of `room`, in seat order.
    public func peers(in room: RoomCode) -> [Int] {
        seats(in: room).compactMap(\.holder)
    }

    public func seats(in room: RoomCode) -> [Seat] {
        rooms.first { $0.room == room }?.seats ?? []
    }

    public func peer(of connection: Int) -> Int? {
        guard let room = room(of: connection) else { return nil }
        return peers(in: room).first { $0 != connection }
    }

    public var joinedConnections: [Int] {
        rooms.flatMap { $0.seats.compactMap(\.holder) }.sorted()
    }

    public var reservedSeatCount: Int {
        rooms.reduce(0) { $0 + $1.seats.filter { $0.holder == nil }.count }
    }

    /// The relay's answer to one frame from `connection` (no tokens given out).
    public mutating func receive(frame: [UInt8], from connection: Int) -> [Action] {
        let message: ClientMessage
        do {
            message = try WireCodec.decodeClientMessage(frame)
        } catch {
            return [.send(to: connection, .error(code: error.relayErrorCode, message: error.description))]
        }
        switch message {
        case let .join(room):
            var token: ReconnectToken?
            if case let .join(_, presented)? = try? WireCodec.inspectClientFrame(frame) { token = presented }
            return join(connection, room, token: token, newToken: nil)
        case .signal: return signal(connection)
        }
    }

    /// JOIN: answer a repeat again, refuse a second room; a reserved seat with the token is
    /// taken back; else a free seat (with `newToken`), or ROOM_FULL, or one room too many.
    public mutating func join(
        _ connection: Int, _ room: RoomCode, token: ReconnectToken?, newToken: ReconnectToken?
    ) -> [Action] {
        if let current = self.room(of: connection) {
            if current != room { return [refuse(connection, .alreadyJoined)] }
            return welcome(connection, room, announce: false)
        }
        if let index = rooms.firstIndex(where: { $0.room == room }) {
            let reserved = rooms[index].seats.firstIndex { token != nil && $0.token == token && $0.holder == nil }
            if let token, let seat = reserved {
                rooms[index].seats[seat] = Seat(holder: connection, token: token, until: nil)
            } else {
                if rooms[index].seats.count >= 2 { return [refuse(connection, .roomFull)] }
                rooms[index].seats.append(Seat(holder: connection, token: newToken, until: nil))
            }
        } else {
            if rooms.count >= roomsMax { return [refuse(connection, .tooManyRooms)] }
            rooms.append((room, [Seat(holder: connection, token: newToken, until: nil)]))
        }
        return welcome(connection, room, announce: true)
    }

    private func welcome(_ connection: Int, _ room: RoomCode, announce: Bool) -> [Action] {
        let live = peers(in: room)
        let token = seats(in: room).first { $0.holder == connection }?.token
        let joined: RelayMessage = if let token {
            .joinedWithToken(room: room, peers: live.count, token: token)
        } else {
            .joined(room: room, peers: live.count)
        }
        var actions: [Action] = [.send(to: connection, joined)]
        if let other = live.first(where: { $0 != connection }) {
            if announce { actions.append(.send(to: other, .peerFound)) }
            actions.append(.send(to: connection, .peerFound))
        }
        return actions
    }

    /// SIGNAL: forward to the other live peer, or say why not.
    public func signal(_ connection: Int) -> [Action] {
        guard room(of: connection) != nil else { return [refuse(connection, .notJoined)] }
        guard let other = peer(of: connection) else { return [refuse(connection, .noPeer)] }
        return [.forward(to: other)]
    }

    /// The connection is gone: the live peer that stays is told. With `reserveUntil`, a seat
    /// that has a token waits for it; any other seat is freed.
    public mutating func disconnect(_ connection: Int, reserveUntil: Instant? = nil) -> [Action] {
        guard let index = rooms.firstIndex(where: { $0.seats.contains { $0.holder == connection } }),
            let seat = rooms[index].seats.firstIndex(where: { $0.holder == connection })
        else { return [] }
        if let reserveUntil, rooms[index].seats[seat].token != nil {
            rooms[index].seats[seat].holder = nil
            rooms[index].seats[seat].until = reserveUntil
        } else {
            rooms[index].seats.remove(at: seat)
        }
        let remaining = rooms[index].seats.compactMap(\.holder)
        if rooms[index].seats.isEmpty { rooms.remove(at: index) }
        return remaining.map { .send(to: $0, .peerLeft) }
    }

    /// Free every reservation that has ended by `now`; close rooms left empty.
    public mutating func expire(now: Instant) {
        for index in rooms.indices {
            rooms[index].seats.removeAll { $0.holder == nil && ($0.until ?? now) <= now }
        }
        rooms.removeAll { $0.seats.isEmpty }
    }

    private func refuse(_ connection: Int, _ code: RelayErrorCode) -> Action {
        .send(to: connection, .error(code: code, message: code.defaultMessage))
    }
}

/// One step of a room-logic scenario (fuzz inputs and property tests both build these).
public enum RoomsStep: Hashable, Sendable, CustomStringConvertible {
    /// A well-formed JOIN of `RoomsScenario.rooms[room]` (as a frame: no tokens given out).
    case join(connection: Int, room: Int)
    /// A well-formed SIGNAL of `RoomsScenario.kinds[kind]`.
    case signal(connection: Int, kind: Int)
    /// Any bytes at all.
    case frame(connection: Int, bytes: [UInt8])
    /// The connection is gone; its seat is freed.
    case disconnect(connection: Int)
    /// A JOIN through the engine's path, which gives out tokens: presenting the `token`-th token
    /// given out so far (modulo their number), or a made-up one when `token` is 255 or none was.
    case joinWithToken(connection: Int, room: Int, token: Int)
    /// The connection is gone without a goodbye: a seat with a token is reserved.
    case leave(connection: Int)
    /// The clock moves on `seconds`; reservations that ended are freed.
    case advance(seconds: Int)

    public var description: String {
        switch self {
        case let .join(connection, room): "join(c\(connection), \(RoomsScenario.rooms[room]))"
        case let .signal(connection, kind): "signal(c\(connection), \(RoomsScenario.kinds[kind]))"
        case let .frame(connection, bytes):
            "frame(c\(connection), \(String(decoding: bytes, as: UTF8.self).debugDescription))"
        case let .disconnect(connection): "disconnect(c\(connection))"
        case let .joinWithToken(connection, room, token):
            "joinWithToken(c\(connection), \(RoomsScenario.rooms[room]), token #\(token))"
        case let .leave(connection): "leave(c\(connection))"
        case let .advance(seconds): "advance(\(seconds) s)"
        }
    }

    /// Read one step (an op byte, a connection byte, then the step's arguments) from fuzz input;
    /// nil at the end. Ops 0-3 are the original four; 4-7 the seat steps (and so every input
    /// written before them reads as it did).
    public static func read(from reader: inout FuzzReader) -> RoomsStep? {
        guard let op = reader.byte() else { return nil }
        let connection = Int(reader.byte() ?? 0) % RoomsScenario.connectionCount
        let room = { (reader: inout FuzzReader) in Int(reader.byte() ?? 0) % RoomsScenario.rooms.count }
        switch op % 8 {
        case 0: return .join(connection: connection, room: room(&reader))
        case 1: return .signal(connection: connection, kind: Int(reader.byte() ?? 0) % RoomsScenario.kinds.count)
        case 2: return .frame(connection: connection, bytes: reader.chunk(maxLength: 1024))
        case 3: return .disconnect(connection: connection)
        case 4: return .joinWithToken(connection: connection, room: room(&reader), token: Int(reader.byte() ?? 0))
        case 5, 6: return .leave(connection: connection)
        default: return .advance(seconds: Int(reader.byte() ?? 0) % 40)
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
    public static let rooms: [RoomCode] = [
        "ROOM1", "ROOM2", "A", "9", String(repeating: "Z", count: RoomCode.lengthMax),
    ].map { try! RoomCode($0) }
    public static let kinds: [SignalKind] = [
        .keyExchange, .keyConfirm, .message, .ack, .pake, SignalKind("FILE_CHUNK")!,
    ]
    /// How long a reserved seat waits (`leave` steps).
    public static let graceSeconds: Int64 = 30

    public private(set) var relay = RelayRooms<Int>(limits: .init(roomsMax: roomsMax))
    public private(set) var model = RoomsModel(roomsMax: roomsMax)
    public private(set) var now = Instant(nanoseconds: 1_000_000_000)
    /// The tokens the relay has given out, in order (steps present them back by index).
    public private(set) var issued: [ReconnectToken] = []
    /// The model's own count of tokens given out: it names the token it expects each new seat to
    /// get, so a relay that gives out a token when it should not (or fails to) disagrees.
    private var modelIssued = 0

    public init() {}

    /// The n-th token given out: made up from the counter, distinct and never zero.
    static func token(_ index: Int) -> ReconnectToken {
        ReconnectToken(
            high: 0x5EA7_0000_0000_0000 | UInt64(index), low: UInt64(index) &* 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The bytes a step sends (empty for a step that sends nothing).
    public static func frame(for step: RoomsStep) -> [UInt8] {
        switch step {
        case let .join(_, room): WireCodec.encode(ClientMessage.join(rooms[room % rooms.count]))
        case let .signal(_, kind):
            WireCodec.encode(ClientMessage.signal(Signal(kind: kinds[kind % kinds.count], payload: [UInt8(kind)])))
        case let .frame(_, bytes): bytes
        case .disconnect, .joinWithToken, .leave, .advance: []
        }
    }

    /// The token a `joinWithToken` step presents.
    func presented(_ index: Int) -> ReconnectToken {
        guard index != 255, !issued.isEmpty else { return ReconnectToken(high: 0xBAD, low: UInt64(index)) }
        return issued[index % issued.count]
    }

    /// Apply one step to both; returns what disagrees or breaks an invariant (empty: all good).
    public mutating func apply(_ step: RoomsStep) -> [String] {
        let (relayActions, modelActions) = run(step)
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

    private mutating func run(_ step: RoomsStep) -> ([RelayRooms<Int>.Action], [RelayRooms<Int>.Action]) {
        switch step {
        case let .join(connection, _), let .signal(connection, _), let .frame(connection, _):
            let bytes = Self.frame(for: step)
            return (relay.receive(frame: bytes, from: connection), model.receive(frame: bytes, from: connection))
        case let .disconnect(connection):
            return (relay.disconnect(connection), model.disconnect(connection))
        case let .joinWithToken(connection, room, index):
            let token = presented(index)
            let code = Self.rooms[room % Self.rooms.count]
            var given: [ReconnectToken] = []
            let next = issued.count
            let relayActions = relay.join(connection, room: code, token: token) {
                given.append(Self.token(next + given.count))
                return given[given.count - 1]
            }
            issued += given
            // The model's token for a new seat: the next in the same sequence, if the model
            // gives one out at all (it decides for itself whether the JOIN makes a new seat).
            let before = model.seats(in: code).count
            let wasMember = model.room(of: connection) != nil
            let modelActions = model.join(connection, code, token: token, newToken: Self.token(modelIssued))
            if !wasMember && model.seats(in: code).count > before { modelIssued += 1 }
            return (relayActions, modelActions)
        case let .leave(connection):
            let until = now.advanced(by: .seconds(Self.graceSeconds))
            let relayActions = relay.leave(connection, reserveUntil: until).actions
            return (relayActions, model.disconnect(connection, reserveUntil: until))
        case let .advance(seconds):
            now = now.advanced(by: .seconds(seconds))
            for seat in relay.reservedSeats where seat.until <= now {
                _ = relay.expireReservation(seat.token, now: now)
            }
            model.expire(now: now)
            return ([], [])
        }
    }

    /// The relay's observable state equals the model's, and no room holds more than two seats.
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
        if relay.reservedSeatCount != model.reservedSeatCount {
            problems.append("reserved seats \(relay.reservedSeatCount) != model \(model.reservedSeatCount)")
        }
        for room in Self.rooms where relay.occupancy(of: room) != model.seats(in: room).count {
            problems.append("occupancy of \(room): \(relay.occupancy(of: room)) != \(model.seats(in: room).count)")
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
        for room in Self.rooms where relay.occupancy(of: room) > 2 { problems.append("\(room) holds over two seats") }
        return problems
    }
}

/// The room logic fed an arbitrary sequence of frames, JOINs with reconnect tokens, departures
/// (freeing or reserving the seat) and clock steps from six connections, compared with
/// `RoomsModel` after every step.
///
/// Input: a sequence of steps (`RoomsStep.read`), each an op byte (`op % 8`: join, signal, raw
/// frame, disconnect, join with a token, leave (two ops), advance) and a connection byte, then
/// the step's arguments (room index, kind index, a length-prefixed frame of at most 1 KiB, a
/// token index, seconds).
public func fuzzRelayRooms(_ data: UnsafeRawBufferPointer) {
    var reader = FuzzReader(data)
    var scenario = RoomsScenario()
    // Bounded: every step consumes at least one byte.
    while let step = RoomsStep.read(from: &reader) {
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
        case let .joinWithToken(connection, room, token):
            writer.byte(4); writer.byte(UInt8(connection)); writer.byte(UInt8(room)); writer.byte(UInt8(token))
        case let .leave(connection):
            writer.byte(5); writer.byte(UInt8(connection))
        case let .advance(seconds):
            writer.byte(7); writer.byte(0); writer.byte(UInt8(seconds))
        }
    }
    return writer.bytes
}

/// `RelayRooms` invariants that hold for any connection type.
func checkRoomsInvariants<C>(_ rooms: RelayRooms<C>) {
    require(
        rooms.joinedConnectionCount + rooms.reservedSeatCount <= 2 * rooms.roomCount, "more seats than rooms hold")
    require(rooms.roomCount <= rooms.limits.roomsMax, "more rooms than the cap")
    for connection in rooms.joinedConnections {
        guard let room = rooms.room(of: connection) else { fatalError("joined without a room") }
        require((1...2).contains(rooms.occupancy(of: room)), "room occupancy out of range")
    }
}
