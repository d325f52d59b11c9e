import ChatCore
@_spi(Simulation) import RelayCore

/// The cluster's faults (the scenario decides when) and what the checker may read of the nodes
/// and Redis.
extension World {
    public var clusterNodeCount: Int { cluster?.nodes.count ?? 1 }

    /// Node `node`'s process dies (kill -9): its connections break (each client notices), its
    /// link to Redis goes with it; its heartbeat key stays until its TTL runs out. Returns the
    /// dead incarnation's identity.
    @discardableResult
    public func crashNode(_ node: Int) -> String? {
        guard let cluster, cluster.nodes[node].up else { return nil }
        enterNode(node)
        counters.relayCrashes += 1
        record(.clusterNodeCrash, value: UInt64(node))
        for link in relayLinks.all {
            links[Int(link.value)].broken = true
            links[Int(link.value)].relayOpen = false
            if links[Int(link.value)].clientOpen {
                queue.schedule(after: faults.oneWayDelay(), .clientSeesClose(link))
            }
            let client = Int(links[Int(link.value)].client)
            clients[client].relayLinks.removeAll { $0 == link }
            observer?.world(self, relayClosed: link, client: client)
        }
        relayLinks.removeAll()
        relayArmedTimer = nil
        setNodeUp(node, false)
        let epoch = cluster.nodes[node].redis.epoch &+ 1
        cluster.nodes[node].redis = RedisLink()
        cluster.nodes[node].redis.epoch = epoch
        return cluster.nodes[node].identity
    }

    /// A fresh process of node `node` starts (a new incarnation: a new identity in Redis, so it
    /// never takes its previous life's seats for its own) and connects to Redis.
    public func restartNode(_ node: Int) {
        guard let cluster, !cluster.nodes[node].up else { return }
        enterNode(node)
        record(.clusterNodeRestart, value: UInt64(node))
        let incarnation = cluster.nodes[node].incarnation + 1
        cluster.nodes[node].incarnation = incarnation
        cluster.nodes[node].identity = VirtualCluster.identity(cluster.nodes[node].name, incarnation)
        cluster.nodes[node].generation += Int32(cluster.nodes.count)
        relay = Self.makeClusterEngine(configuration, node: node, incarnation: incarnation, now: now)
        // Link epochs keep counting: a message to the old process is never taken for the new one's.
        let epoch = cluster.nodes[node].redis.epoch &+ 1
        cluster.nodes[node].redis = RedisLink()
        cluster.nodes[node].redis.epoch = epoch
        setNodeUp(node, true)
        scheduleNodeLink(node)
        armRelayTimer()
    }

    private func setNodeUp(_ node: Int, _ up: Bool) {
        guard let cluster else { return }
        cluster.nodes[node].up = up
        if cluster.resident == node {
            relayUp = up
            relayGeneration = cluster.nodes[node].generation
        }
    }

    func scheduleNodeLink(_ node: Int) {
        guard let cluster else { return }
        let generation = cluster.nodes[node].generation
        queue.schedule(at: now, .cluster(.connect(node: Int32(node), generation: generation)))
        let tick = now.advanced(by: .milliseconds(VirtualClusterTiming.heartbeatMilliseconds))
        queue.schedule(at: tick, .cluster(.tick(node: Int32(node), generation: generation)))
    }

    /// Redis restarts (persistence off): every room, node key and subscription is lost; every
    /// node's link breaks at once; connects are refused until `startRedis`.
    public func stopRedis() {
        guard let cluster, redisUp else { return }
        record(.redisRestart)
        cluster.redisUp = false
        cluster.redis.restart()
        cluster.subscribers.removeAll()
        for node in cluster.nodes.indices where cluster.nodes[node].up { linkBroken(node) }
    }

    public func startRedis() {
        cluster?.redisUp = true
    }

    /// Node `node` and Redis cannot reach each other for `duration`: everything between them is
    /// lost; the node notices when an answer is 3 s overdue, and reconnects when the cut is over.
    public func partitionNode(_ node: Int, for duration: Duration) {
        guard let cluster else { return }
        record(.redisPartition, value: UInt64(node))
        let until = now.advanced(by: duration)
        cluster.nodes[node].redis.partitionedUntil = max(cluster.nodes[node].redis.partitionedUntil, until)
    }

    /// Every cluster fault stops: every node up, Redis up, no partition.
    func healCluster() {
        guard let cluster else { return }
        cluster.redisUp = true
        for node in cluster.nodes.indices {
            cluster.nodes[node].redis.partitionedUntil = min(cluster.nodes[node].redis.partitionedUntil, now)
            restartNode(node)
        }
    }

    /// The source of a forward to `link`: the input's link, else the last one that forwarded to
    /// it (a SIGNAL the engine held and releases on a timer has no input link).
    func clusterSource(_ known: LinkID?, to link: LinkID) -> LinkID? {
        guard let cluster else { return known }
        guard let known else { return cluster.lastSource[link.value] }
        cluster.lastSource[link.value] = known
        return known
    }

    /// A cluster world keeps what a node writes to a client in order, and loses or doubles none of
    /// it, as TCP does (the single relay's world reorders, drops and doubles it: see
    /// docs/SIMULATOR.md, "The cluster relay", for why not here).
    func clusterOrdered(_ at: Instant, toClientOn link: LinkID) -> Instant {
        guard let cluster else { return at }
        let index = Int(link.value)
        if index >= cluster.lastToClient.count {
            cluster.lastToClient.append(contentsOf: repeatElement(.zero, count: index - cluster.lastToClient.count + 1))
        }
        let ordered = max(at, cluster.lastToClient[index])
        cluster.lastToClient[index] = ordered
        return ordered
    }

    // MARK: What the checker reads

    /// Make node `node`'s engine the world's `relay` (to read its counters).
    public func readNode(_ node: Int) {
        enterNode(node)
    }

    var redisUp: Bool { cluster?.redisUp ?? false }
    public var redisIsUp: Bool { redisUp }

    /// Whether `identity`'s heartbeat key is in Redis now.
    public func redisNodeExists(_ identity: String) -> Bool {
        cluster?.redis.nodeExists(identity, now: Int64(now.nanoseconds / 1_000_000)) ?? false
    }

    /// How many seats in Redis `identity` holds with their deadline not passed.
    public func redisHeldSeats(of identity: String) -> Int {
        cluster?.redis.heldSeats(of: identity, now: Int64(now.nanoseconds / 1_000_000)) ?? 0
    }

    /// The node a client's connection went to (nil: a single relay, or it never arrived).
    public func clusterNode(of link: LinkID) -> Int? {
        cluster?.node(of: link)
    }

    /// Node `node`'s identity in Redis now.
    public func clusterIdentity(of node: Int) -> String {
        cluster?.nodes[node].identity ?? ""
    }

    public func clusterNodeIsUp(_ node: Int) -> Bool {
        cluster?.nodes[node].up ?? false
    }

    /// Redis restarts so far.
    public var redisRestarts: Int { cluster?.redis.restarts ?? 0 }

    /// The seats Redis holds in `room` now.
    public func redisSeats(in room: RoomCode) -> [VirtualRedis.Seat] {
        guard let cluster else { return [] }
        return cluster.redis.seats(at: cluster.roomKey(room), now: Int64(now.nanoseconds / 1_000_000))
    }

    /// Whether `identity`'s heartbeat key is in Redis and has been without a gap since `time`.
    public func redisNodeAlive(_ identity: String, since time: Instant) -> Bool {
        guard let cluster else { return false }
        let ms = Int64(now.nanoseconds / 1_000_000)
        return cluster.redis.nodeAlive(identity, since: Int64(time.nanoseconds / 1_000_000), now: ms)
    }

    /// When node `node`'s link to Redis last became ready (nil: it is not).
    public func clusterLinkReadySince(_ node: Int) -> Instant? {
        cluster?.nodes[node].redis.readySince
    }

    /// The nodes holding a room-mate of one of node `node`'s connections, as its engine believes.
    public func clusterPartnerNodes(of node: Int) -> [String] {
        guard cluster != nil else { return [] }
        enterNode(node)
        return relay.clusterPartnerNodes
    }

    /// The local seats node `node`'s engine holds.
    public func clusterSeatCount(of node: Int) -> Int {
        guard cluster != nil else { return 0 }
        enterNode(node)
        return relay.clusterSeatCount
    }
}
