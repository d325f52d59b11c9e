import ChatCore
import RelayCore

/// How the cluster world is built (`WorldConfiguration.cluster`): `nodes` relay nodes (two or
/// more; one is the single relay, without Redis) sharing one `VirtualRedis`.
public struct ClusterConfiguration: Sendable, Hashable {
    public var nodes: Int
    /// One-way delay between a node and Redis, microseconds, drawn per message; each connection
    /// keeps its order (TCP), so a later message never overtakes an earlier one.
    public var redisDelayMicroseconds: ClosedRange<UInt64>
    /// Bugs planted in the cluster's shells or its Redis (none unless a self-test asks).
    public var plantedBugs: ClusterPlantedBugs = []
    /// What a node writes to a client may be lost (at the run's drop rate), though never doubled
    /// or reordered: not TCP, but the single relay's world's loss, to show that the relay
    /// protocol needs no PEER_FOUND to arrive when the other side also opens a handshake.
    public var nodeFramesLost = false

    public init(nodes: Int, redisDelayMicroseconds: ClosedRange<UInt64> = 100...2_000) {
        self.nodes = nodes
        self.redisDelayMicroseconds = redisDelayMicroseconds
    }
}

/// Deliberate bugs in the cluster world, for the checker's self-tests (never in shipped code).
public struct ClusterPlantedBugs: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// The virtual Redis's JOIN script checks the cap against three seats, not two.
    public static let joinCapOffByOne = ClusterPlantedBugs(rawValue: 1 << 0)
    /// A node's shell writes a SIGNAL from another node to the connection numbered after the one
    /// it names, without asking the engine (which checks the sender is the seat's room-mate).
    public static let signalToNextConnection = ClusterPlantedBugs(rawValue: 1 << 1)
    /// Once a node's link to Redis has broken, its shell never tells the engine that Redis answers
    /// again: the node refuses every JOIN with CLUSTER_UNAVAILABLE for ever.
    public static let availabilityNeverBack = ClusterPlantedBugs(rawValue: 1 << 3)
    /// A node's shell uses ten times the TTL (40 s) for its heartbeat key and its seats' deadlines
    /// (one constant in `ClusterTiming`): a dead node is taken for alive long past the bound.
    public static let heartbeatTTLTenfold = ClusterPlantedBugs(rawValue: 1 << 4)
    /// A node's shell drops the notices its engine asks for itself (`ClusterCommand.notice`): a
    /// mate presumed gone that comes back is announced to one side only (the old behaviour).
    public static let mateNeverToldOfBreak = ClusterPlantedBugs(rawValue: 1 << 5)
}

/// `ClusterLink`'s timing (RelayServer's `ClusterTiming`, which this module cannot import: no NIO
/// here). `ShippedCodeTests.clusterTiming` checks that the two agree.
public enum VirtualClusterTiming {
    public static let heartbeatMilliseconds: Int64 = 1000
    public static let nodeTTLMilliseconds: Int64 = 4000
    public static let commandTimeoutMilliseconds: Int64 = 3000
    public static let reconnectFirstMilliseconds: Int64 = 100
    public static let reconnectMaxMilliseconds: Int64 = 2000
}

/// The cluster's events in the world's queue; payloads of messages wait in `VirtualCluster`'s
/// tables (kept out of `WorldEvent`, which every frame is).
public enum ClusterEvent: Sendable {
    /// A node's engine timer (`pollTimeout`).
    case nodeTimer(node: Int32, generation: Int32)
    /// A node's once-a-second tick: heartbeat, room-mates' nodes, Redis's answer overdue.
    case tick(node: Int32, generation: Int32)
    /// A node (re)connects to Redis.
    case connect(node: Int32, generation: Int32)
    /// A command reaches Redis.
    case atRedis(UInt32)
    /// A reply or a pub/sub message reaches its node.
    case atNode(UInt32)
}

/// What a node asks of Redis (`ClusterLink`'s commands).
enum RedisCommand {
    case join(ConnectionID, ClusterJoinRequest, grace: Int64)
    case leave(LeaveArguments)
    /// `SPUBLISH sc:ch:<node>`: a SIGNAL (its source link) or a notice the shell sends (none).
    case publish(to: String, [UInt8], source: LinkID?)
    /// `SET sc:node:<id> 1 PX 4000 GET`.
    case heartbeat
    /// `ClusterScripts.refresh` on one room: the node's connections seated there.
    case refresh(key: String, [ConnectionID])
    case exists(String)
    /// The handshake: the first heartbeat and `SUBSCRIBE sc:ch:<id>` (one connection here: see
    /// `World+Cluster.swift`).
    case hello
}

struct LeaveArguments {
    var key: String
    var id: ConnectionID
    var grace: Int64
    var partner: ClusterPeer?
}

/// Redis's answer to a command.
enum RedisReply {
    case join(ClusterJoinReply)
    /// The leave script's: whether the seat was held, and the live room-mate then.
    case leave(held: Bool, mate: ClusterPeer?)
    /// The refresh script's: how many of the asked seats it found.
    case refresh(found: Int)
    case done
    case heartbeat(had: Bool)
    case exists(Bool)
}

/// A message on its way between a node and Redis.
struct RedisMessage {
    var node: Int
    var generation: Int32
    var epoch: UInt32
    var redisRestarts: Int
    var payload: Payload

    enum Payload {
        case command(sequence: UInt32, RedisCommand)
        case reply(sequence: UInt32, RedisReply)
        case published([UInt8], source: LinkID?)
    }
}

/// A node's connection to Redis, as `ClusterLink` keeps it (its command and subscriber
/// connections as one: they break and come back together here).
struct RedisLink {
    /// Counts the connection's lives: a message of an older one is lost with it.
    var epoch: UInt32 = 0
    var connected = false
    /// Handshake done: the engine is told Redis answers.
    var ready = false
    var readySince: Instant?
    /// It has broken at least once (for the `availabilityNeverBack` planted bug).
    var brokeOnce = false
    /// A re-registration was asked since the last heartbeat (`ClusterLink.askReregister`).
    var reregisterAsked = false
    /// Cut off from Redis (a partition) until then: everything either way is lost.
    var partitionedUntil: Instant = .zero
    var reconnectWaitMilliseconds = VirtualClusterTiming.reconnectFirstMilliseconds
    /// Commands sent and not yet answered, oldest first.
    var waiting: [(sequence: UInt32, command: RedisCommand, sentAt: Instant)] = []
    /// Leaves kept while Redis is away, sent first when it is back.
    var backlog: [LeaveArguments] = []
    /// Each direction's last delivery time (TCP's order).
    var toRedisClock: Instant = .zero
    var replyClock: Instant = .zero
    var messageClock: Instant = .zero
}

/// One relay node: a real `RelayEngine` in cluster mode and the shell's state around it. While a
/// node is the world's resident one, its engine, links and timer live in the world's `relay`
/// fields and these hold placeholders (`World.enterNode`).
struct VirtualNode {
    let name: String
    var identity: String
    var incarnation: UInt32 = 0
    var engine: RelayEngine<[UInt8]>
    var up = true
    var generation: Int32
    var links = RelayConnectionTable()
    var armedTimer: Instant?
    var redis = RedisLink()
    /// Cross-node SIGNALs Redis did not take (the link was down), as `relay_cluster_publish_errors_total`.
    var publishErrors = 0
}

/// The cluster's share of the world: its nodes, its Redis and the messages between them.
final class VirtualCluster {
    let configuration: ClusterConfiguration
    var nodes: [VirtualNode]
    /// The node whose state is in the world's `relay` fields.
    var resident = 0
    var redis = VirtualRedis()
    var redisUp = true
    /// Subscriptions: node identity -> (node, generation, link epoch).
    var subscribers: [String: (node: Int, generation: Int32, epoch: UInt32)] = [:]
    /// Which node each link connected to (-1: none yet), by `LinkID`.
    var linkNodes: [Int32] = []
    var inFlight: [UInt32: RedisMessage] = [:]
    var nextMessage: UInt32 = 0
    var nextSequence: UInt32 = 0
    var random: Xoshiro256
    /// Room keys of the simulated rooms, computed once each.
    var roomKeys: [RoomCode: String] = [:]
    /// The last connection that forwarded to a link (a SIGNAL the engine held and releases on a
    /// timer has no input link), by the destination's `LinkID`.
    var lastSource: [UInt32: LinkID] = [:]
    /// The last delivery time toward the client on each link (`World.clusterOrdered`).
    var lastToClient: [Instant] = []
    /// Frames toward a client wait until then, by link (a cut of its link: `clusterStep`).
    var heldUntil: [UInt32: Instant] = [:]

    init(configuration: ClusterConfiguration, nodes: [VirtualNode], random: Xoshiro256) {
        self.configuration = configuration
        self.nodes = nodes
        self.random = random
        redis.capOffByOne = configuration.plantedBugs.contains(.joinCapOffByOne)
    }

    func roomKey(_ room: RoomCode) -> String {
        if let key = roomKeys[room] { return key }
        let key = ClusterWire.roomKey(room)
        roomKeys[room] = key
        return key
    }

    func node(of link: LinkID) -> Int? {
        let index = Int(link.value)
        guard index < linkNodes.count, linkNodes[index] >= 0 else { return nil }
        return Int(linkNodes[index])
    }

    func assign(_ link: LinkID, to node: Int) {
        let index = Int(link.value)
        if index >= linkNodes.count {
            linkNodes.append(contentsOf: repeatElement(-1, count: index - linkNodes.count + 1))
        }
        linkNodes[index] = Int32(node)
    }

    /// A node identity: its name, `.`, 8 hex digits of incarnation (`ClusterNodeName`).
    static func identity(_ name: String, _ incarnation: UInt32) -> String {
        let digits = Array("0123456789abcdef")
        let hex = (0..<8).map { digits[Int((incarnation >> (28 - 4 * UInt32($0))) & 0xF)] }
        return name + "." + String(hex)
    }
}
