import ChatCore

/// A connection somewhere in the cluster: the node that holds it and its `ConnectionID` there.
public struct ClusterPeer: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The node's identity in Redis (its name and an incarnation suffix, `ClusterNodeName`).
    public var node: String
    public var connection: UInt64

    public init(node: String, connection: UInt64) {
        self.node = node
        self.connection = connection
    }

    public static func < (lhs: ClusterPeer, rhs: ClusterPeer) -> Bool {
        (lhs.node, lhs.connection) < (rhs.node, rhs.connection)
    }

    public var description: String { "\(node)/\(connection)" }
}

/// What the JOIN script is asked (see docs/RELAY.md "Cluster"): take a seat in `room` for a local
/// connection, atomically across the cluster.
public struct ClusterJoinRequest: Hashable, Sendable {
    public var room: RoomCode
    /// The reconnect token the client presented (takes back the seat that has it, reserved or held).
    public var token: ReconnectToken?
    /// The token a fresh seat gets (nil when seats are not reserved: `seatGraceSeconds` 0).
    public var newToken: ReconnectToken?
    /// The address is over its join rate: only a seat with `token` may be taken.
    public var reclaimOnly: Bool
    /// A re-registration of a seat this node already holds (after Redis came back), or a look-up
    /// of who holds the room's other seat now.
    public var rejoin: Bool
    /// For a rejoin: how many notices the seat had heard when it was asked (`ClusterSeat.heard`).
    /// Not sent to Redis: an answer overtaken by a notice that disagrees with it is asked again.
    public var heard: UInt32

    public init(
        room: RoomCode, token: ReconnectToken?, newToken: ReconnectToken?, reclaimOnly: Bool = false,
        rejoin: Bool = false, heard: UInt32 = 0
    ) {
        self.room = room
        self.token = token
        self.newToken = newToken
        self.reclaimOnly = reclaimOnly
        self.rejoin = rejoin
        self.heard = heard
    }
}

/// Redis's answer to a `ClusterJoinRequest`, as the shell parsed it.
public enum ClusterJoinReply: Hashable, Sendable {
    /// Seated. `partner`: the room's other live peer, if any. `reclaimed`: the seat with the
    /// presented token was taken back (its token stays). `evicted`: the connection that held
    /// that seat until now (a half-open old connection of the same client), to be closed.
    case admitted(partner: ClusterPeer?, reclaimed: Bool, evicted: ClusterPeer?)
    /// Refused: `ROOM_FULL`, `SEAT_RESERVED` or `JOIN_RATE_LIMITED`.
    case refused(RelayErrorCode)
    /// Redis did not answer (down, unreachable, timed out, or an unexpected reply).
    case unavailable
}

/// A control message from another node, through its pub/sub channel.
public enum ClusterNotice: Hashable, Sendable {
    /// Local connection `to` has a new room-mate, `partner` (it just joined on its node).
    case peerFound(to: UInt64, partner: ClusterPeer)
    /// `partner`, local connection `to`'s room-mate, left.
    case peerLeft(to: UInt64, partner: ClusterPeer)
    /// Local connection `to` lost its seat to a JOIN with its own token on another node: close it.
    case evicted(to: UInt64)
}

/// What the engine asks of Redis (the shell carries it out; answers come back as inputs).
public enum ClusterCommand<Frame: RelayFrameBytes> {
    /// Run the JOIN script for a local connection; answer with `clusterJoinAnswered`.
    case join(ConnectionID, ClusterJoinRequest)
    /// Run the leave script: the connection's seat in `room` is reserved for its token for
    /// `seatGraceSeconds` if `reserve`, else freed; the script tells a room-mate on another node.
    /// Queued while Redis is down (bounded) and run when it is back. `partner`: the room-mate the
    /// node knew, told directly if Redis no longer has the seat (it restarted meanwhile).
    case leave(ConnectionID, room: RoomCode, reserve: Bool, partner: ClusterPeer?)
    /// Publish a SIGNAL to the room-mate's node, for `to`; `from` is the local sender; `binary`:
    /// the frame is a binary SIGNAL (`ClusterWire`'s `B` header), else a text one (`S`).
    case signal(to: ClusterPeer, from: ConnectionID, Frame, binary: Bool)
    /// Publish `notice` on node `to`'s channel, in order behind this node's earlier commands (the
    /// engine's own word to a room-mate's node: `ClusterSeat.presumedGone`).
    case notice(to: String, ClusterNotice)
}

/// One local connection's seat in cluster mode.
struct ClusterSeat: Hashable, Sendable {
    var room: RoomCode
    var token: ReconnectToken?
    /// The room's other live peer (on this node or another), as the last answer or notice said.
    var partner: ClusterPeer?
    /// The remote mate this node told its client had left without the mate's node saying so (that
    /// node's heartbeat key was gone, or Redis had no seat for it): its own client was told
    /// nothing. If it turns up again, its node is told PEER_LEFT then PEER_FOUND for it, so both
    /// sides start a handshake, and a lost PEER_FOUND on one side is repaired by the other's.
    var presumedGone: ClusterPeer?
    /// Notices heard about this seat (and room-mates' nodes found gone): a rejoin's answer carries
    /// the count at its asking (`ClusterJoinRequest.heard`) to tell whether a notice overtook it.
    var heard: UInt32 = 0
}

/// The engine's cluster state: every local seat and pending JOIN. Redis holds the truth about
/// rooms (who sits where, across nodes); this is the node's share of it.
struct ClusterState: Sendable {
    let node: String
    /// Whether Redis answers (the shell says so): JOINs are refused with `CLUSTER_UNAVAILABLE`
    /// while it does not.
    var available = false
    var seats: [ConnectionID: ClusterSeat] = [:]
    /// JOINs sent to Redis and not yet answered.
    var pending: [ConnectionID: ClusterJoinRequest] = [:]
    /// A room-mate announced (PEER_FOUND from its node) while the JOIN's own answer was still on its
    /// way: Redis's notice and its answer travel on two connections, so the notice can come first.
    /// At most one per pending JOIN; dropped with it.
    var announced: [ConnectionID: ClusterPeer] = [:]
    /// Seats whose re-registration found no room-mate in Redis while the seat had one: the mate's
    /// node announces itself when it registers again; if it has not after this many heartbeats,
    /// the seat asks Redis once more and, still alone, tells its client PEER_LEFT.
    var unconfirmed: [ConnectionID: Int] = [:]
    static let unconfirmedHeartbeats = 3

    init(node: String) {
        self.node = node
    }
}

/// A node's name: 1-40 characters of A-Z, a-z, 0-9, `-` and `_` (it appears in Redis keys,
/// channel names and the pub/sub messages' text).
public enum ClusterNodeName {
    public static let lengthMax = 40

    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return (1...lengthMax).contains(bytes.count) && bytes.allSatisfy(isNameByte)
    }

    /// Node identities in Redis: a name, `.`, and 8 hex digits of incarnation.
    public static func isValidIdentity(_ identity: String) -> Bool {
        // The UTF-8 view, not an array of it: every cross-node message's sender is checked.
        let bytes = identity.utf8
        return (3...(lengthMax + 9)).contains(bytes.count)
            && bytes.allSatisfy { isNameByte($0) || $0 == UInt8(ascii: ".") }
    }

    static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default: false
        }
    }
}

extension ClusterCommand: Equatable where Frame: Equatable {}
extension ClusterCommand: Hashable where Frame: Hashable {}
extension ClusterCommand: Sendable where Frame: Sendable {}
