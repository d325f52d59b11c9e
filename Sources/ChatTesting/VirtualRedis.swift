import ChatCore
import RelayCore

/// The cluster simulator's Redis: the state the cluster relay keeps in Redis and the scripts that
/// change it, with exactly the semantics of `ClusterScripts` (RelayServer) as the engine sees them.
/// Each method is one script or command, run alone (Redis is single-threaded: a race of JOINs
/// from many nodes is a sequence of these), on the world's clock (`TIME`, TTLs).
///
/// As the real scripts, each touches its room's key only: a held seat carries its own deadline
/// `until` (TIME + the seat TTL the node passes), pushed forward by the node's per-room `refresh`
/// every heartbeat; JOIN judges a seat alive by that deadline alone (never by a node key). The
/// scripts publish nothing: JOIN and LEAVE return whom to tell, and the world's node shell
/// publishes the notices itself (`World+Cluster.swift`), as `ClusterLink` does. Node keys
/// (`SET ... PX ... GET`, `EXISTS`) are single-key commands of the shell only: stall detection and
/// partners' liveness.
///
/// A room is `ClusterWire.roomKey(room)` holding at most two seats (as the Lua's MessagePack array); a
/// reserved seat has `node == ""` and is reserved until `until`, a held one is held until then. A
/// restart loses everything (`--save '' --appendonly no`). No ordered collection reaches an
/// output: rooms and node keys are looked up by key; the checker's questions over all rooms
/// (`heldSeats(of:)`) answer a count.
public struct VirtualRedis {
    /// One seat, as the scripts' MessagePack array holds it: `[node, connection, token hash, until
    /// ms]` (the token hash's 8 raw bytes, `ClusterWire.tokenHash`; empty for none).
    public struct Seat: Hashable, Sendable {
        public var node: String
        public var connection: String
        public var tokenHash: [UInt8]
        public var until: Int64

        /// The seat's holder (a live seat's).
        var peer: ClusterPeer { ClusterPeer(node: node, connection: UInt64(connection) ?? 0) }
    }

    struct Room {
        var seats: [Seat]
        /// `PX`/`PEXPIRE` (nil: no TTL; a plain `SET` removes it).
        var expiresAt: Int64?
    }

    var rooms: [String: Room] = [:]
    /// Node key (`sc:node:<id>` without the prefix) -> expiry, milliseconds.
    var nodeKeys: [String: Int64] = [:]
    /// When each node key was last created after being absent (the checker's node liveness epochs).
    var nodeAliveSince: [String: Int64] = [:]
    /// Redis restarts so far (each loses every key).
    public private(set) var restarts = 0

    /// The planted bug of the two-peer cap: the JOIN script's cap check is off by one (a third
    /// seat is admitted).
    var capOffByOne = false

    public init() {}

    // MARK: Keys and expiry

    private mutating func room(_ key: String, now: Int64) -> Room? {
        guard let room = rooms[key] else { return nil }
        if let expiry = room.expiresAt, expiry <= now {
            rooms[key] = nil
            return nil
        }
        return room
    }

    /// `EXISTS sc:node:<node>`.
    public mutating func nodeExists(_ node: String, now: Int64) -> Bool {
        guard let expiry = nodeKeys[node] else { return false }
        if expiry <= now {
            nodeKeys[node] = nil
            return false
        }
        return true
    }

    /// `SET sc:node:<node> 1 PX ttl GET`: true if the key was there (not expired).
    public mutating func heartbeat(_ node: String, ttlMilliseconds: Int64, now: Int64) -> Bool {
        let had = nodeExists(node, now: now)
        if !had { nodeAliveSince[node] = now }
        nodeKeys[node] = now + ttlMilliseconds
        return had
    }

    /// `DEL sc:node:<node>` (a node's clean stop).
    public mutating func deleteNode(_ node: String) {
        nodeKeys[node] = nil
    }

    /// A restart with persistence off: every room and node key is gone.
    public mutating func restart() {
        rooms.removeAll()
        nodeKeys.removeAll()
        restarts += 1
    }

    /// The seats of the room at `key` now (for the checker).
    public mutating func seats(at key: String, now: Int64) -> [Seat] {
        room(key, now: now)?.seats ?? []
    }

    /// The seats `node` holds whose deadline has not passed (for the checker's dead-node-bound; a
    /// count, so the rooms' order reaches nothing).
    public mutating func heldSeats(of node: String, now: Int64) -> Int {
        var count = 0
        for key in Array(rooms.keys) {
            for seat in room(key, now: now)?.seats ?? [] where seat.node == node && seat.until > now { count += 1 }
        }
        return count
    }

    /// Whether node `node`'s key has been present without a gap since `time` (for the checker).
    public mutating func nodeAlive(_ node: String, since time: Int64, now: Int64) -> Bool {
        nodeExists(node, now: now) && (nodeAliveSince[node] ?? .max) <= time
    }

    // MARK: The JOIN script

    /// `ClusterScripts.join`, as `ClusterLink.join` calls it (`seatTTL`: its `ARGV[6]`). The
    /// caller publishes `F` to a remote partner and `E` to an evicted holder's node.
    public mutating func join(
        key: String, node: String, connection: UInt64, _ request: ClusterJoinRequest, seatTTL: Int64,
        graceMilliseconds: Int64, now: Int64
    ) -> ClusterJoinReply {
        let conn = String(connection)
        let token = ClusterWire.tokenHash(request.token)
        let newToken = ClusterWire.tokenHash(request.newToken)
        let stored = room(key, now: now)?.seats ?? []
        var (seats, changed) = liveSeats(stored, node: node, grace: graceMilliseconds, now: now)
        func refuse(_ code: RelayErrorCode) -> ClusterJoinReply {
            if changed { store(seats, at: key, now: now) }
            return .refused(code)
        }
        var index = seats.firstIndex { $0.node == node && $0.connection == conn }
        var reclaimed = false
        var evicted: ClusterPeer?
        if index == nil && !token.isEmpty {
            for position in seats.indices where seats[position].tokenHash == token {
                // Its token's seat is held elsewhere (taken back there): never a second copy.
                if request.rejoin && !seats[position].node.isEmpty { return refuse(.seatReserved) }
                index = position
                reclaimed = true
                if !seats[position].node.isEmpty { evicted = seats[position].peer }
                seats[position].node = node
                seats[position].connection = conn
            }
        }
        if index == nil {
            if request.reclaimOnly { return refuse(.joinRateLimited) }
            if seats.count >= (capOffByOne ? 3 : 2) {
                return refuse(seats.contains { $0.node.isEmpty } ? .seatReserved : .roomFull)
            }
            seats.append(Seat(node: node, connection: conn, tokenHash: newToken, until: 0))
            index = seats.count - 1
        }
        guard let index else { return .unavailable }
        seats[index].until = now + seatTTL
        var partner: ClusterPeer?
        for position in seats.indices where position != index && !seats[position].node.isEmpty {
            partner = seats[position].peer
        }
        rooms[key] = Room(seats: seats, expiresAt: nil)
        return .admitted(partner: partner, reclaimed: reclaimed, evicted: evicted)
    }

    /// The JOIN script's first pass: a reservation that ran out goes; a held seat past its
    /// deadline (its node died, or stalled past the TTL) waits for its token for the grace, or
    /// goes if it has none. The joining node's own seats are alive.
    private func liveSeats(_ seats: [Seat], node: String, grace: Int64, now: Int64) -> ([Seat], Bool) {
        var kept: [Seat] = []
        var changed = false
        for var seat in seats {
            let alive: Bool
            if seat.node.isEmpty {
                alive = seat.until > now
            } else if seat.node == node || seat.until > now {
                alive = true
            } else if grace > 0 && !seat.tokenHash.isEmpty {
                seat.node = ""
                seat.connection = ""
                seat.until = now + grace
                alive = true
                changed = true
            } else {
                alive = false
            }
            if alive { kept.append(seat) } else { changed = true }
        }
        return (kept, changed)
    }

    /// The refusal's store: what changed (a dead node's seat reserved once); a room with no live
    /// seat expires with its last reservation.
    private mutating func store(_ seats: [Seat], at key: String, now: Int64) {
        if seats.isEmpty {
            rooms[key] = nil
        } else if seats.contains(where: { !$0.node.isEmpty }) {
            rooms[key] = Room(seats: seats, expiresAt: nil)
        } else {
            let until = seats.map(\.until).max() ?? 0
            rooms[key] = Room(seats: seats, expiresAt: now + (until - now + 1000))
        }
    }

    // MARK: The leave and refresh scripts

    /// `ClusterScripts.leave`, as `ClusterLink.leave` calls it: whether the connection held a seat
    /// and, if it did, its live room-mate now (possibly on this node). The caller tells a remote
    /// mate `L`: this one, or the one it knew if Redis had no seat (a restart).
    public mutating func leave(
        key: String, node: String, connection: UInt64, graceMilliseconds: Int64, now: Int64
    ) -> (held: Bool, mate: ClusterPeer?) {
        let conn = String(connection)
        guard let seats = room(key, now: now)?.seats else { return (false, nil) }
        var kept: [Seat] = []
        var found = false
        for var seat in seats {
            if seat.node == node && seat.connection == conn {
                found = true
                if graceMilliseconds > 0 && !seat.tokenHash.isEmpty {
                    seat.node = ""
                    seat.connection = ""
                    seat.until = now + graceMilliseconds
                    kept.append(seat)
                }
            } else if !seat.node.isEmpty || seat.until > now {
                kept.append(seat)
            }
        }
        guard found else { return (false, nil) }
        var mate: ClusterPeer?
        var until: Int64 = 0
        for seat in kept {
            if !seat.node.isEmpty {
                mate = seat.peer
            } else if seat.until > until {
                until = seat.until
            }
        }
        if kept.isEmpty {
            rooms[key] = nil
        } else {
            rooms[key] = Room(seats: kept, expiresAt: mate != nil ? nil : now + (until - now + 1000))
        }
        return (true, mate)
    }

    /// `ClusterScripts.refresh`: push the deadline of each of `connections`' seats held by `node`
    /// to now + `seatTTL`; how many it found (fewer than asked: the node registers again).
    public mutating func refresh(
        key: String, node: String, connections: [ConnectionID], seatTTL: Int64, now: Int64
    ) -> Int {
        guard var stored = room(key, now: now) else { return 0 }
        var found = 0
        for position in stored.seats.indices where stored.seats[position].node == node {
            for id in connections where stored.seats[position].connection == String(id.value) {
                stored.seats[position].until = now + seatTTL
                found += 1
            }
        }
        // The script's SET keeps no TTL (a room with a held seat has none anyway).
        if found > 0 { rooms[key] = Room(seats: stored.seats, expiresAt: nil) }
        return found
    }
}
