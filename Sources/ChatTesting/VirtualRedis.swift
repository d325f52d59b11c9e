import ChatCore
import RelayCore

/// The cluster simulator's Redis: the state the cluster relay keeps in Redis and the scripts that
/// change it, with exactly the semantics of `ClusterScripts` (RelayServer) as the engine sees them.
/// Each method is one script or command, run alone (Redis is single-threaded: a race of JOINs
/// from many nodes is a sequence of these), on the world's clock (`TIME`, TTLs). Notices the
/// scripts publish come back as `(node, bytes)` for the world to deliver on that node's channel,
/// with the scripts' text (`ClusterWire`).
///
/// A room is `ClusterWire.roomKey(room)` holding at most two seats (as the Lua's JSON array); a
/// reserved seat has `node == ""` and `until`. Node keys hold an expiry (`SET ... PX`). A restart
/// loses everything (`--save '' --appendonly no`). No ordered collection reaches an output: rooms
/// and node keys are only looked up by key (`rooms` and `seats(in:)` for the checker).
public struct VirtualRedis {
    /// One seat, as the scripts' JSON holds it: `n`, `c`, `t`, `u`.
    public struct Seat: Hashable, Sendable {
        public var node: String
        public var connection: String
        public var tokenHash: String
        public var until: Int64?

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

    /// A publish the script made: the channel's node and the message.
    public typealias Publish = (node: String, message: [UInt8])

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

    /// Whether node `node`'s key has been present without a gap since `time` (for the checker).
    public mutating func nodeAlive(_ node: String, since time: Int64, now: Int64) -> Bool {
        nodeExists(node, now: now) && (nodeAliveSince[node] ?? .max) <= time
    }

    // MARK: The JOIN script

    /// `ClusterScripts.join`, as `ClusterLink.join` calls it.
    public mutating func join(
        key: String, node: String, connection: UInt64, _ request: ClusterJoinRequest, graceMilliseconds: Int64,
        now: Int64
    ) -> (ClusterJoinReply, [Publish]) {
        let conn = String(connection)
        let token = ClusterWire.tokenHash(request.token)
        let newToken = ClusterWire.tokenHash(request.newToken)
        let stored = room(key, now: now)?.seats ?? []
        var (seats, changed) = liveSeats(stored, node: node, grace: graceMilliseconds, now: now)
        func refuse(_ code: RelayErrorCode) -> (ClusterJoinReply, [Publish]) {
            if changed { store(seats, at: key, now: now) }
            return (.refused(code), [])
        }
        var index = seats.firstIndex { $0.node == node && $0.connection == conn }
        var reclaimed = false
        var evicted: ClusterPeer?
        if index == nil && !token.isEmpty {
            for position in seats.indices
            where seats[position].tokenHash == token && (!request.rejoin || seats[position].node.isEmpty) {
                index = position
                reclaimed = true
                if !seats[position].node.isEmpty {
                    evicted = seats[position].peer
                }
                seats[position].node = node
                seats[position].connection = conn
                seats[position].until = nil
            }
        }
        if index == nil {
            if request.reclaimOnly { return refuse(.joinRateLimited) }
            if seats.count >= (capOffByOne ? 3 : 2) {
                return refuse(seats.contains { $0.node.isEmpty } ? .seatReserved : .roomFull)
            }
            seats.append(Seat(node: node, connection: conn, tokenHash: newToken, until: nil))
            index = seats.count - 1
        }
        var partner: ClusterPeer?
        for position in seats.indices where position != index && !seats[position].node.isEmpty {
            partner = seats[position].peer
        }
        rooms[key] = Room(seats: seats, expiresAt: nil)
        var publishes: [Publish] = []
        if let partner, partner.node != node {
            let me = ClusterPeer(node: node, connection: connection)
            publishes.append((partner.node, ClusterWire.encode(.peerFound(to: partner.connection, partner: me))))
        }
        if let evicted, evicted.node != node {
            publishes.append((evicted.node, ClusterWire.encode(.evicted(to: evicted.connection))))
        }
        return (.admitted(partner: partner, reclaimed: reclaimed, evicted: evicted), publishes)
    }

    /// The JOIN script's first pass: a reservation that ran out goes; a seat of a dead node (its
    /// heartbeat key gone) waits for its token for the grace, or goes if it has none.
    private mutating func liveSeats(_ seats: [Seat], node: String, grace: Int64, now: Int64) -> ([Seat], Bool) {
        var kept: [Seat] = []
        var changed = false
        for var seat in seats {
            let alive: Bool
            if seat.node.isEmpty {
                alive = (seat.until ?? 0) > now
            } else if seat.node == node || nodeExists(seat.node, now: now) {
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
            let until = seats.map { $0.until ?? 0 }.max() ?? 0
            rooms[key] = Room(seats: seats, expiresAt: now + (until - now + 1000))
        }
    }

    // MARK: The leave script

    /// `ClusterScripts.leave`, as `ClusterLink.leave` calls it; true if the connection held a seat.
    public mutating func leave(
        key: String, node: String, connection: UInt64, graceMilliseconds: Int64, partner: ClusterPeer?, now: Int64
    ) -> (Bool, [Publish]) {
        let conn = String(connection)
        let me = ClusterPeer(node: node, connection: connection)
        var hint: [Publish] {
            guard let partner, partner.node != node else { return [] }
            return [(partner.node, ClusterWire.encode(.peerLeft(to: partner.connection, partner: me)))]
        }
        guard let seats = room(key, now: now)?.seats else { return (false, hint) }
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
            } else if !seat.node.isEmpty || (seat.until ?? 0) > now {
                kept.append(seat)
            }
        }
        guard found else { return (false, hint) }
        var publishes: [Publish] = []
        var live = false
        var until: Int64 = 0
        for seat in kept {
            if !seat.node.isEmpty {
                live = true
                if seat.node != node {
                    let notice = ClusterNotice.peerLeft(to: UInt64(seat.connection) ?? 0, partner: me)
                    publishes.append((seat.node, ClusterWire.encode(notice)))
                }
            } else if let reserved = seat.until, reserved > until {
                until = reserved
            }
        }
        if kept.isEmpty {
            rooms[key] = nil
        } else {
            rooms[key] = Room(seats: kept, expiresAt: live ? nil : now + (until - now + 1000))
        }
        return (true, publishes)
    }
}
