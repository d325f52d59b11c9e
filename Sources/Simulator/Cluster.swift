import ChatCore
import ChatTesting
import RelayCore

/// What the caller fixes of a cluster run (`--nodes N` with N > 1); each nil is drawn from the seed.
public struct ClusterOptions: Sendable, Hashable {
    public var nodes: Int
    /// Nodes crash (kill -9) and restart as new incarnations.
    public var nodeCrash: Bool?
    /// Redis restarts, losing every room and node key.
    public var redisRestart: Bool?
    /// A node and Redis are cut off from each other for a while.
    public var redisPartition: Bool?
    /// What a node writes to a client may be lost at the run's drop rate (never doubled or
    /// reordered): harsher than TCP, as the single relay's world is.
    public var nodeFramesLost: Bool

    public init(
        nodes: Int, nodeCrash: Bool? = nil, redisRestart: Bool? = nil, redisPartition: Bool? = nil,
        nodeFramesLost: Bool = false
    ) {
        self.nodes = nodes
        self.nodeCrash = nodeCrash
        self.redisRestart = redisRestart
        self.redisPartition = redisPartition
        self.nodeFramesLost = nodeFramesLost
    }

    public static let nodesMax = 64
}

/// A cluster run's settings, resolved.
public struct ClusterSettings: Sendable, Hashable, Codable {
    public var nodes: Int
    public var nodeCrashes: Int
    public var nodeDowntimeMaxMilliseconds: UInt64
    public var redisRestarts: Int
    public var redisDowntimeMaxMilliseconds: UInt64
    public var redisPartitions: Int
    public var redisPartitionMaxMilliseconds: UInt64
    /// One-way delay between a node and Redis, microseconds.
    public var redisDelayMinMicroseconds: UInt64
    public var redisDelayMaxMicroseconds: UInt64
    /// What a node writes to a client may be lost (`--node-frames-lost`).
    public var nodeFramesLost: Bool
    /// docs/RELAY.md's bound for a dead node: the TTL of its heartbeat key and seats' deadlines, one
    /// heartbeat, and round trips to Redis (three one-way delays: the last refresh in flight, a
    /// room-mate's node's check and its answer).
    public var deadNodeBoundMilliseconds: UInt64
}

extension SimulationOptions {
    func validateCluster() throws(SimulationError) {
        let nodes = cluster?.nodes ?? 1
        guard (1...ClusterOptions.nodesMax).contains(nodes) else {
            throw .invalidOption("--nodes must be from 1 to \(ClusterOptions.nodesMax)")
        }
        if nodes == 1, let cluster, cluster.nodeCrash == true || cluster.redisRestart == true
            || cluster.redisPartition == true || cluster.nodeFramesLost
        {
            throw .invalidOption(
                "--node-crash, --redis-restart, --redis-partition and --node-frames-lost need --nodes 2 or more")
        }
        if let plantedBug, plantedBug.needsCluster, nodes == 1 {
            throw .invalidOption("--plant-bug \(plantedBug.rawValue) breaks the cluster: add --nodes 2 or more")
        }
        guard nodes > 1 else { return }
        if mitm { throw .invalidOption("--mitm plays a single relay: not with --nodes") }
        if plantedBug == .bucketNeverRefills || plantedBug == .thirdPeerJoins || plantedBug == .relayWrongRoom {
            throw .invalidOption("--plant-bug \(plantedBug!.rawValue) is the single relay's: not with --nodes")
        }
    }
}

extension PlantedBug {
    /// The bug is in the cluster (`--nodes` 2 or more).
    public var needsCluster: Bool {
        switch self {
        case .clusterCapOffByOne, .clusterSignalMisrouted, .clusterLongHeartbeatTTL, .clusterUnavailableForever,
            .clusterMateNeverTold:
            true
        default: false
        }
    }

    /// The cluster faults that show the bug: a dead node's key is checked only without a Redis
    /// restart (which loses it anyway) in the window.
    public var clusterFaults: ClusterOptions {
        self == .clusterLongHeartbeatTTL
            ? ClusterOptions(nodes: 3, nodeCrash: true, redisRestart: false, redisPartition: false)
            : ClusterOptions(nodes: 3, nodeCrash: true, redisRestart: true, redisPartition: true)
    }
}

extension ResolvedSettings {
    /// The cluster's settings, drawn from a stream of their own (so a single relay's draws are
    /// unchanged); the single relay's crashes are replaced by the nodes'; the liveness bound grows
    /// by what the cluster adds after a heal (a node's link back within its 2 s backoff, a dead
    /// node's key expiring, a mate confirmed within three heartbeats).
    mutating func resolveCluster(_ options: SimulationOptions) {
        guard let given = options.cluster, given.nodes > 1 else { return }
        var random = Xoshiro256(seed: options.seed, stream: .settings, index: 0xC1)
        let drawnCrash = random.chance(0.5)
        let drawnCrashes = Int(random.inRange(1...3))
        let drawnNodeDowntime: UInt64 = random.pick([500, 2_000, 6_000])
        let drawnRestart = random.chance(0.5)
        let drawnRestarts = Int(random.inRange(1...2))
        let drawnRedisDowntime: UInt64 = random.pick([200, 1_000, 5_000])
        let drawnPartition = random.chance(0.5)
        let drawnPartitions = Int(random.inRange(1...3))
        let drawnPartitionMax: UInt64 = random.pick([1_000, 3_000, 8_000])
        let drawnDelayMax: UInt64 = random.pick([200, 1_000, 5_000])
        let delayMax = drawnDelayMax
        cluster = ClusterSettings(
            nodes: given.nodes,
            nodeCrashes: (given.nodeCrash ?? drawnCrash) ? drawnCrashes : 0,
            nodeDowntimeMaxMilliseconds: drawnNodeDowntime,
            redisRestarts: (given.redisRestart ?? drawnRestart) ? drawnRestarts : 0,
            redisDowntimeMaxMilliseconds: drawnRedisDowntime,
            redisPartitions: (given.redisPartition ?? drawnPartition) ? drawnPartitions : 0,
            redisPartitionMaxMilliseconds: drawnPartitionMax,
            redisDelayMinMicroseconds: 50, redisDelayMaxMicroseconds: delayMax,
            nodeFramesLost: given.nodeFramesLost || options.plantedBug == .clusterMateNeverTold,
            deadNodeBoundMilliseconds: UInt64(VirtualClusterTiming.nodeTTLMilliseconds
                + VirtualClusterTiming.heartbeatMilliseconds) + 3 * (delayMax + 999) / 1000 + 1)
        sources["node-crash"] = given.nodeCrash != nil ? .given : .seed
        sources["redis-restart"] = given.redisRestart != nil ? .given : .seed
        sources["redis-partition"] = given.redisPartition != nil ? .given : .seed
        relayCrashes = 0
        let slack = VirtualClusterTiming.reconnectMaxMilliseconds + VirtualClusterTiming.nodeTTLMilliseconds
            + 4 * VirtualClusterTiming.heartbeatMilliseconds + 16 * Int64((delayMax + 999) / 1000)
        livenessBoundMilliseconds += UInt64(slack)
    }
}

/// The cluster checker's state (`--nodes`): the seats the nodes said JOINED to, per room.
struct ClusterCheck {
    struct Seat {
        var client: Int
        var link: LinkID
        var identity: String
        var confirmedAt: Instant
        var redisRestarts: Int
    }

    /// Seats announced with JOINED and not yet closed, per room.
    var seats: [[Seat]] = []
    /// Dead nodes to check at the bound, in time order: identity and time of death.
    var deaths: [(identity: String, at: Instant)] = []
    /// Partitions between a node and Redis: which node, until when.
    var partitions: [(node: Int, end: Instant)] = []
    var nodeCrashes = 0
    var redisRestarts = 0
    var redisPartitions = 0
    var deadNodeChecks = 0
}

/// The cluster's fault schedule and invariants.
///
/// - room-capacity: Redis never holds more than two seats in a room, and the nodes never have more
///   than two clients seated in a room at once. A node's seat counts from its JOINED for as long as
///   Redis can vouch for it: no Redis restart since, and its node's heartbeat key present without a
///   gap since (a node cut off from Redis past its TTL keeps seats that Redis gave away meanwhile,
///   by design, until it re-registers them; docs/RELAY.md). The key stands for the seats'
///   deadlines: both get the same TTL in the same heartbeat, the key's SET first on the link, so a
///   seat passes its deadline only after its node's key has expired.
/// - only-from-peer: the world's forward check (`Oracle.swift`) sees every SIGNAL a node forwards,
///   local or from another node, with the sender's connection.
/// - liveness: the convergence check after the heal, unchanged, with the cluster's slack in the bound.
/// - dead-node-bound: `deadNodeBoundMilliseconds` after a node's death, every seat it holds in
///   Redis is past its deadline (a JOIN takes it for departed), its heartbeat key is gone (what
///   room-mates' nodes check), and no node whose link to Redis stayed up since still names it as a
///   room-mate's.
extension Simulation {
    func setUpCluster() {
        guard let cluster = settings.cluster else { return }
        clusterCheck.seats = Array(repeating: [], count: settings.rooms)
        let start = Int64(settings.startSpreadMilliseconds) * 1_000_000
        func someTime() -> Instant {
            Instant(nanoseconds: faultRandom.inRange(UInt64(start)...(faultPhaseEnd.nanoseconds - 1)))
        }
        for _ in 0..<cluster.nodeCrashes {
            let node = Int32(faultRandom.below(UInt64(cluster.nodes)))
            world.schedule(SimEvent.nodeCrash.rawValue, client: node, at: someTime())
        }
        for _ in 0..<cluster.redisRestarts { world.schedule(SimEvent.redisRestart.rawValue, at: someTime()) }
        for _ in 0..<cluster.redisPartitions {
            let node = Int32(faultRandom.below(UInt64(cluster.nodes)))
            world.schedule(SimEvent.redisPartition.rawValue, client: node, at: someTime())
        }
    }

    func handleCluster(_ event: SimEvent, _ node: Int) {
        guard let cluster = settings.cluster else { return }
        switch event {
        case .nodeCrash:
            guard healedAt == nil, world.clusterNodeIsUp(node) else { return }
            world.readNode(node)
            collectRelayCounters()
            guard let identity = world.crashNode(node) else { return }
            clusterCheck.nodeCrashes += 1
            clusterCheck.deaths.append((identity, world.now))
            let bound = Duration.milliseconds(Int64(cluster.deadNodeBoundMilliseconds))
            world.schedule(SimEvent.deadNodeCheck.rawValue, at: world.now.advanced(by: bound))
            let downtime = faultRandom.inRange(200...max(200, cluster.nodeDowntimeMaxMilliseconds))
            let restartAt = world.now.advanced(by: .milliseconds(Int64(downtime)))
            world.schedule(SimEvent.nodeRestart.rawValue, client: Int32(node), at: restartAt)
        case .nodeRestart:
            world.restartNode(node)
        case .redisRestart:
            guard healedAt == nil, world.redisIsUp else { return }
            clusterCheck.redisRestarts += 1
            world.stopRedis()
            let downtime = faultRandom.inRange(100...max(100, cluster.redisDowntimeMaxMilliseconds))
            world.schedule(SimEvent.redisStart.rawValue, at: world.now.advanced(by: .milliseconds(Int64(downtime))))
        case .redisStart:
            world.startRedis()
        case .redisPartition:
            guard healedAt == nil else { return }
            clusterCheck.redisPartitions += 1
            let length = faultRandom.inRange(200...max(200, cluster.redisPartitionMaxMilliseconds))
            world.partitionNode(node, for: .milliseconds(Int64(length)))
            clusterCheck.partitions.append((node, world.now.advanced(by: .milliseconds(Int64(length)))))
        case .deadNodeCheck:
            deadNodeCheck()
        default:
            break
        }
    }

    /// Every running node's counts, at the end (a crashed node's were taken at its crash).
    func collectNodeCounters() {
        for node in 0..<world.clusterNodeCount where world.clusterNodeIsUp(node) {
            world.readNode(node)
            collectRelayCounters()
        }
    }

    // MARK: room-capacity

    /// A node said JOINED on `link` (`Oracle.joined`).
    func clusterJoined(_ client: Int, room: RoomCode, link: LinkID) {
        let index = roomIndex(of: client)
        let redisSeats = world.redisSeats(in: room)
        if redisSeats.count > RoomCode.peersMax {
            return fail(.roomCapacity, "Redis holds \(redisSeats.count) seats in room \(room)")
        }
        guard let node = world.clusterNode(of: link) else { return }
        if !clusterCheck.seats[index].contains(where: { $0.link == link }) {
            clusterCheck.seats[index].append(.init(
                client: client, link: link, identity: world.clusterIdentity(of: node), confirmedAt: world.now,
                redisRestarts: world.redisRestarts))
        }
        // Distinct clients: a client's old connection may still hold its seat on one node while
        // its token takes it back through another (the eviction notice is on its way).
        var seated: [Int] = []
        for seat in clusterCheck.seats[index] where seat.redisRestarts == world.redisRestarts
            && world.redisNodeAlive(seat.identity, since: seat.confirmedAt) && !seated.contains(seat.client)
        {
            seated.append(seat.client)
        }
        if seated.count > RoomCode.peersMax {
            fail(.roomCapacity, "room \(room) has \(seated.count) clients seated across the nodes: clients "
                + seated.map(String.init).joined(separator: ", "))
        }
    }

    /// A node let go of `link` (`Oracle.relayClosed`).
    func clusterClosed(_ link: LinkID, client: Int) {
        let index = roomIndex(of: client)
        guard index < clusterCheck.seats.count else { return }
        clusterCheck.seats[index].removeAll { $0.link == link }
    }

    // MARK: dead-node-bound

    private func deadNodeCheck() {
        guard !clusterCheck.deaths.isEmpty, let cluster = settings.cluster else { return }
        let death = clusterCheck.deaths.removeFirst()
        clusterCheck.deadNodeChecks += 1
        let bound = cluster.deadNodeBoundMilliseconds
        let held = world.redisHeldSeats(of: death.identity)
        if held > 0 {
            return fail(.deadNodeBound, "node \(death.identity) died \(bound) ms ago and \(held) of its seats are "
                + "still within their deadline in Redis")
        }
        if world.redisNodeExists(death.identity) {
            return fail(
                .deadNodeBound, "node \(death.identity) died \(bound) ms ago and its heartbeat key is still in Redis")
        }
        for node in 0..<cluster.nodes where world.clusterNodeIsUp(node) {
            // A node that could not ask Redis throughout (its link down, or cut off: it notices
            // only when an answer is 3 s overdue) cannot have learned.
            guard let since = world.clusterLinkReadySince(node), since <= death.at,
                !clusterCheck.partitions.contains(where: { $0.node == node && $0.end > death.at })
            else { continue }
            if world.clusterPartnerNodes(of: node).contains(death.identity) {
                return fail(.deadNodeBound, "node \(world.clusterIdentity(of: node)) still has a room-mate on "
                    + "\(death.identity), dead for \(bound) ms")
            }
        }
    }
}

extension ClusterSettings {
    /// The report's line (`given` marks a setting given on the command line).
    func summary(given: (String) -> String) -> String {
        let crashes = nodeCrashes > 0 ? "\(nodeCrashes) node crash(es) (down up to \(nodeDowntimeMaxMilliseconds) ms)"
            : "no node crash"
        let restarts = redisRestarts > 0
            ? "\(redisRestarts) Redis restart(s) (down up to \(redisDowntimeMaxMilliseconds) ms)" : "no Redis restart"
        let partitions = redisPartitions > 0
            ? "\(redisPartitions) node-Redis partition(s) (up to \(redisPartitionMaxMilliseconds) ms)"
            : "no node-Redis partition"
        return "\(nodes) nodes, Redis delay \(redisDelayMinMicroseconds)..\(redisDelayMaxMicroseconds) us, "
            + crashes + given("node-crash") + ", " + restarts + given("redis-restart") + ", " + partitions
            + given("redis-partition") + ", dead-node bound \(deadNodeBoundMilliseconds) ms"
            + (nodeFramesLost ? ", node frames lost at the drop rate" : "")
    }
}
