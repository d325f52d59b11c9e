import ChatCore
import RelayCore
import Testing

@Suite("Relay room logic (sans-IO)")
struct RelayRoomsTests {
    typealias Rooms = RelayRooms<Int>
    static let room = try! RoomCode("ROOM1")

    func frame(_ message: ClientMessage) -> [UInt8] { WireCodec.encode(message) }

    @Test("Two peers join, both get PEER_FOUND, SIGNALs are forwarded to the other one")
    func joinAndForward() {
        var rooms = Rooms()
        #expect(rooms.receive(frame: frame(.join(Self.room)), from: 1) == [.send(to: 1, .joined(room: Self.room, peers: 1))])
        #expect(rooms.receive(frame: frame(.join(Self.room)), from: 2) == [
            .send(to: 2, .joined(room: Self.room, peers: 2)), .send(to: 1, .peerFound), .send(to: 2, .peerFound),
        ])
        let signal = frame(.signal(Signal(kind: .message, payload: [1, 2, 3])))
        #expect(rooms.receive(frame: signal, from: 1) == [.forward(to: 2)])
        #expect(rooms.receive(frame: signal, from: 2) == [.forward(to: 1)])
        // An unknown but well-formed kind is forwarded blind.
        let future = frame(.signal(Signal(kind: SignalKind("FILE_CHUNK")!, payload: [0])))
        #expect(rooms.receive(frame: future, from: 1) == [.forward(to: 2)])
        #expect(rooms.roomCount == 1)
        #expect(rooms.occupancy(of: Self.room) == 2)
    }

    @Test("A third peer is refused with ROOM_FULL and the room is unaffected")
    func thirdPeer() {
        var rooms = Rooms()
        _ = rooms.join(1, room: Self.room)
        _ = rooms.join(2, room: Self.room)
        #expect(rooms.join(3, room: Self.room) == [.send(to: 3, .error(code: .roomFull, message: RelayErrorCode.roomFull.defaultMessage))])
        #expect(rooms.occupancy(of: Self.room) == 2)
        #expect(rooms.peer(of: 1) == 2)
        #expect(rooms.room(of: 3) == nil)
    }

    @Test("Leaving tells the other peer; the last one out closes the room; the room can be reused")
    func leave() {
        var rooms = Rooms()
        _ = rooms.join(1, room: Self.room)
        _ = rooms.join(2, room: Self.room)
        #expect(rooms.disconnect(1) == [.send(to: 2, .peerLeft)])
        #expect(rooms.disconnect(1) == [])
        #expect(rooms.occupancy(of: Self.room) == 1)
        #expect(rooms.join(3, room: Self.room).contains(.send(to: 2, .peerFound)))
        #expect(rooms.disconnect(2) == [.send(to: 3, .peerLeft)])
        #expect(rooms.disconnect(3) == [])
        #expect(rooms.roomCount == 0)
        #expect(rooms.joinedConnectionCount == 0)
    }

    @Test("SIGNAL before JOIN, SIGNAL with no peer, JOIN of a second room, repeated JOIN")
    func refusals() {
        var rooms = Rooms()
        let signal = frame(.signal(Signal(kind: .message, payload: [1])))
        #expect(rooms.receive(frame: signal, from: 1) == [.send(to: 1, .error(code: .notJoined, message: RelayErrorCode.notJoined.defaultMessage))])
        _ = rooms.join(1, room: Self.room)
        #expect(rooms.receive(frame: signal, from: 1) == [.send(to: 1, .error(code: .noPeer, message: RelayErrorCode.noPeer.defaultMessage))])
        let other = try! RoomCode("OTHER")
        #expect(rooms.join(1, room: other) == [.send(to: 1, .error(code: .alreadyJoined, message: RelayErrorCode.alreadyJoined.defaultMessage))])
        // A repeated JOIN of the same room is answered again (the client retransmits JOIN).
        #expect(rooms.join(1, room: Self.room) == [.send(to: 1, .joined(room: Self.room, peers: 1))])
        _ = rooms.join(2, room: Self.room)
        #expect(rooms.join(2, room: Self.room) == [.send(to: 2, .joined(room: Self.room, peers: 2)), .send(to: 2, .peerFound)])
    }

    @Test("Malformed frames get a typed ERROR and change nothing")
    func malformed() {
        var rooms = Rooms()
        let actions = rooms.receive(frame: Array("{nope".utf8), from: 1)
        guard case let .send(to, .error(code, _)) = actions.first else {
            Issue.record("expected an ERROR, got \(actions)")
            return
        }
        #expect(to == 1 && code == .malformedJSON && actions.count == 1)
        let invalidRoom = rooms.receive(frame: Array(#"{"type":"JOIN","room":"lower"}"#.utf8), from: 1)
        #expect(invalidRoom.count == 1)
        if case let .send(_, .error(code, _)) = invalidRoom.first { #expect(code == .invalidRoom) }
        #expect(rooms.roomCount == 0)
    }

    @Test("The room limit refuses a JOIN that would open one room too many")
    func roomLimit() {
        var rooms = Rooms(limits: .init(roomsMax: 2))
        _ = rooms.join(1, room: try! RoomCode("A"))
        _ = rooms.join(2, room: try! RoomCode("B"))
        #expect(rooms.join(3, room: try! RoomCode("C")) == [.send(to: 3, .error(code: .tooManyRooms, message: RelayErrorCode.tooManyRooms.defaultMessage))])
        // Joining an existing room is still fine.
        #expect(rooms.join(3, room: try! RoomCode("A")).count == 3)
        #expect(rooms.joinedConnections == [1, 2, 3])
    }
}
