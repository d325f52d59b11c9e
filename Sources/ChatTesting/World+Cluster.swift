@_spi(Simulation) import ChatCore
@_spi(Simulation) import RelayCore

/// The cluster world (`WorldConfiguration.cluster`, issue 15): N relay nodes, each the real
/// `RelayEngine` in cluster mode, sharing a `VirtualRedis`, with what `ClusterLink` (the NIO
/// shell, RelayServer) does around each engine: the JOIN and leave scripts, then the notices
/// their answers name (`F`, `E`, `L`, published by the node itself, ahead of that connection's
/// SIGNALs on the same link), SPUBLISH of SIGNALs to the room-mate's node, every second the
/// heartbeat key, a `refresh` of each room holding local seats (fewer found than asked, or the
/// key expired: register every seat again) and the room-mates' nodes checked, a command
/// unanswered for 3 s taken as Redis gone, reconnection with backoff, leaves kept while Redis is
/// away, and availability told to the engine. Clients connect to a random node each time (DNS
/// round robin).
///
/// Simplifications, each on the side of more faults rather than fewer: a node's command and
/// subscriber connections are one link here (they break and come back together); a message lost
/// in a partition is lost for good and the link breaks when the node notices (a command overdue by
/// 3 s), as TCP either delivers in order or breaks; a connect during a partition fails at once
/// (and backs off). Every delay and choice comes from the seed, and nothing is iterated in a
/// dictionary's order.
///
/// Only one node's state is in the world's `relay` fields at a time (the resident one): each event
/// first makes its node resident (`enterNode`), so the single relay's code (World+Relay.swift)
/// serves every node unchanged.
extension World {
    /// Whether this world is a cluster (two or more nodes).
    public var isCluster: Bool { cluster != nil }

    static func makeClusterNodes(
        _ configuration: WorldConfiguration, _ cluster: ClusterConfiguration
    ) -> [VirtualNode] {
        (0..<cluster.nodes).map { index in
            let name = "n\(index)"
            return VirtualNode(
                name: name, identity: VirtualCluster.identity(name, 0),
                engine: makeClusterEngine(configuration, node: index, incarnation: 0, now: .zero),
                generation: Int32(index))
        }
    }

    static func makeClusterEngine(
        _ configuration: WorldConfiguration, node: Int, incarnation: UInt32, now: Instant
    ) -> RelayEngine<[UInt8]> {
        let entropy = SeededEntropy(
            seed: configuration.seed, stream: .relay, index: UInt64(node + 1) << 32 | UInt64(incarnation))
        do {
            return try RelayEngine(
                limits: configuration.relayLimits, now: now, entropy: entropy,
                clusterNode: VirtualCluster.identity("n\(node)", incarnation))
        } catch {
            preconditionFailure("the world's relay limits are invalid: \(error)")
        }
    }

    /// Build the cluster in a new world: node 0 resident, every node connecting to Redis.
    func startCluster(_ configuration: ClusterConfiguration) {
        var nodes = Self.makeClusterNodes(self.configuration, configuration)
        swap(&relay, &nodes[0].engine)
        let random = Xoshiro256(seed: self.configuration.seed, stream: .network, index: 0xC1_05_7E)
        cluster = VirtualCluster(configuration: configuration, nodes: nodes, random: random)
        for node in 0..<configuration.nodes { scheduleNodeLink(node) }
    }

    /// Make `node` the resident one: its engine, links and timer in the world's `relay` fields
    /// (swapped: the parked node's fields hold the previous resident's placeholders), its state and
    /// generation copied.
    func enterNode(_ node: Int) {
        guard let cluster, cluster.resident != node else { return }
        let old = cluster.resident
        swap(&relay, &cluster.nodes[old].engine)
        swap(&relayLinks, &cluster.nodes[old].links)
        swap(&relayArmedTimer, &cluster.nodes[old].armedTimer)
        swap(&relay, &cluster.nodes[node].engine)
        swap(&relayLinks, &cluster.nodes[node].links)
        swap(&relayArmedTimer, &cluster.nodes[node].armedTimer)
        // Copies: the node's own fields stay authoritative (`setNodeUp`).
        relayUp = cluster.nodes[node].up
        relayGeneration = cluster.nodes[node].generation
        cluster.resident = node
    }

    /// The event that fires the resident node's engine timer.
    var clusterTimerEvent: WorldEvent? {
        cluster.map { .cluster(.nodeTimer(node: Int32($0.resident), generation: $0.nodes[$0.resident].generation)) }
    }

    // MARK: Stepping

    /// `step()` in a cluster world: each event runs with its node resident.
    func clusterStep(_ event: WorldEvent) -> StepResult {
        guard let cluster else { return .stale }
        switch event {
        case let .scenario(kind, client): return .scenario(kind: kind, client: client)
        case let .clientTimer(client): return clientTimer(Int(client)) ? .handled : .stale
        case .relayTimer: return .stale
        case let .connectArrives(link):
            let node = cluster.node(of: link) ?? Int(cluster.random.below(UInt64(cluster.nodes.count)))
            cluster.assign(link, to: node)
            enterNode(node)
            connectArrives(link)
        case let .upgradeArrives(link): upgradeArrives(link)
        case let .connectRefused(link): connectRefused(link)
        case let .toRelay(link, frame):
            if let node = cluster.node(of: link) { enterNode(node) }
            frameArrivesAtRelay(link, frame)
        case let .toClient(link, frame):
            // TCP: what a node wrote waits out a cut of the client's link, in order (behind what
            // already waits, even if the cut ended early), unless the connection breaks meanwhile.
            let cutUntil = clients[Int(links[Int(link.value)].client)].cutUntil
            let waiting = cluster.heldUntil[link.value] ?? .zero
            if cutUntil > now || waiting > now, !links[Int(link.value)].broken {
                let until = max(cutUntil, waiting)
                cluster.heldUntil[link.value] = until
                queue.schedule(at: until, .toClient(link, frame))
                return .handled
            }
            if let node = cluster.node(of: link) { enterNode(node) }
            frameArrivesAtClient(link, frame)
        case let .relaySeesClose(link):
            guard let node = cluster.node(of: link) else { return .handled }
            enterNode(node)
            relaySeesClose(link)
        case let .clientSeesClose(link): clientSeesClose(link)
        case let .clientWritable(link, writable): clientWritable(link, writable)
        case let .cluster(event): return clusterEvent(event) ? .handled : .stale
        }
        return .handled
    }

    private func clusterEvent(_ event: ClusterEvent) -> Bool {
        guard let cluster else { return false }
        switch event {
        case let .nodeTimer(node, generation):
            enterNode(Int(node))
            guard relayUp, relayGeneration == generation, relayArmedTimer == now else { return false }
            relayArmedTimer = nil
            record(.relayTimer, value: UInt64(node))
            relay.handleTimeout(now: now)
            drainRelay()
        case let .tick(node, generation): return tick(Int(node), generation)
        case let .connect(node, generation): return connectToRedis(Int(node), generation)
        case let .atRedis(id):
            guard let message = cluster.inFlight.removeValue(forKey: id) else { return false }
            atRedis(message)
        case let .atNode(id):
            guard let message = cluster.inFlight.removeValue(forKey: id) else { return false }
            atNode(message)
        }
        return true
    }

    /// The cluster command of the resident node's engine (`RelayHub.performCluster`).
    func performClusterCommand(_ command: ClusterCommand<[UInt8]>) {
        guard let cluster else { return }
        let node = cluster.resident
        let grace = Int64(relay.limits.seatGraceSeconds) * 1000
        switch command {
        case let .join(id, request):
            guard cluster.nodes[node].redis.ready else {
                relay.clusterJoinAnswered(id, request, .unavailable, now: now)
                return
            }
            sendToRedis(node, .join(id, request, grace: grace))
        case let .leave(id, room, reserve, partner):
            let leave = LeaveArguments(key: cluster.roomKey(room), id: id, grace: reserve ? grace : 0, partner: partner)
            guard cluster.nodes[node].redis.ready else { return cluster.nodes[node].redis.backlog.append(leave) }
            sendToRedis(node, .leave(leave))
        case let .signal(to, from, frame, binary):
            guard cluster.nodes[node].redis.ready else {
                cluster.nodes[node].publishErrors += 1
                return
            }
            let me = ClusterPeer(node: cluster.nodes[node].identity, connection: from.value)
            let payload = ClusterWire.signalHeader(to: to, from: me, binary: binary) + frame
            sendToRedis(node, .publish(to: to.node, payload, source: relayLinks[from]))
        case let .notice(to, notice):
            guard cluster.nodes[node].redis.ready else {
                cluster.nodes[node].publishErrors += 1
                return
            }
            // The planted bug: the engine's own word to a mate's node never leaves (as before it
            // had one, a mate presumed gone and back was announced to one side only).
            if cluster.configuration.plantedBugs.contains(.mateNeverToldOfBreak) { return }
            notify(node, to, notice)
        }
    }

    // MARK: Messages between nodes and Redis

    private func redisDelay() -> Duration {
        guard let cluster else { return .zero }
        return .microseconds(cluster.random.inRange(cluster.configuration.redisDelayMicroseconds))
    }

    private func schedule(_ message: RedisMessage, at time: Instant, toRedis: Bool) {
        guard let cluster else { return }
        let id = cluster.nextMessage
        cluster.nextMessage &+= 1
        cluster.inFlight[id] = message
        queue.schedule(at: time, .cluster(toRedis ? .atRedis(id) : .atNode(id)))
    }

    /// A node sends a command on its link (in order behind what it sent before); lost in a
    /// partition (the node notices when the answer is overdue).
    func sendToRedis(_ node: Int, _ command: RedisCommand) {
        guard let cluster else { return }
        let sequence = cluster.nextSequence
        cluster.nextSequence &+= 1
        cluster.nodes[node].redis.waiting.append((sequence, command, now))
        guard cluster.nodes[node].redis.partitionedUntil <= now else { return }
        let at = max(now.advanced(by: redisDelay()), cluster.nodes[node].redis.toRedisClock)
        cluster.nodes[node].redis.toRedisClock = at
        let message = RedisMessage(
            node: node, generation: cluster.nodes[node].generation, epoch: cluster.nodes[node].redis.epoch,
            redisRestarts: cluster.redis.restarts, payload: .command(sequence: sequence, command))
        schedule(message, at: at, toRedis: true)
    }

    /// Whether a message between `message.node` and Redis still gets through now: the same node
    /// process, link and Redis process as when it was sent, no partition.
    private func deliverable(_ message: RedisMessage) -> Bool {
        guard let cluster, redisUp, message.redisRestarts == cluster.redis.restarts else { return false }
        let node = cluster.nodes[message.node]
        return node.up && node.generation == message.generation
            && node.redis.epoch == message.epoch && node.redis.connected && node.redis.partitionedUntil <= now
    }

    /// The TTL a node's shell gives its heartbeat key and its seats' deadlines (one constant).
    private var nodeTTL: Int64 {
        let tenfold = cluster?.configuration.plantedBugs.contains(.heartbeatTTLTenfold) == true
        return VirtualClusterTiming.nodeTTLMilliseconds * (tenfold ? 10 : 1)
    }

    private func atRedis(_ message: RedisMessage) {
        guard let cluster, deliverable(message), case let .command(sequence, command) = message.payload else { return }
        let ms = Int64(now.nanoseconds / 1_000_000)
        let identity = cluster.nodes[message.node].identity
        var reply = RedisReply.done
        switch command {
        case let .join(id, request, grace):
            reply = .join(cluster.redis.join(
                key: cluster.roomKey(request.room), node: identity, connection: id.value, request,
                seatTTL: nodeTTL, graceMilliseconds: grace, now: ms))
        case let .leave(leave):
            let (held, mate) = cluster.redis.leave(
                key: leave.key, node: identity, connection: leave.id.value, graceMilliseconds: leave.grace, now: ms)
            reply = .leave(held: held, mate: mate)
        case let .refresh(key, connections):
            reply = .refresh(found: cluster.redis.refresh(
                key: key, node: identity, connections: connections, seatTTL: nodeTTL, now: ms))
        case let .publish(to, payload, source):
            self.publish(payload, to: to, source: source)
        case .heartbeat:
            reply = .heartbeat(had: cluster.redis.heartbeat(
                identity, ttlMilliseconds: nodeTTL, now: ms))
        case let .exists(other):
            reply = .exists(cluster.redis.nodeExists(other, now: ms))
        case .hello:
            reply = .heartbeat(had: cluster.redis.heartbeat(
                identity, ttlMilliseconds: nodeTTL, now: ms))
            cluster.subscribers[identity] = (message.node, message.generation, message.epoch)
        }
        var answer = message
        answer.payload = .reply(sequence: sequence, reply)
        let at = max(now.advanced(by: redisDelay()), cluster.nodes[message.node].redis.replyClock)
        cluster.nodes[message.node].redis.replyClock = at
        schedule(answer, at: at, toRedis: false)
    }

    /// `PUBLISH sc:ch:<node>`: to its subscriber if it has one (else nobody hears it).
    private func publish(_ payload: [UInt8], to identity: String, source: LinkID?) {
        guard let cluster, let subscriber = cluster.subscribers[identity] else { return }
        let message = RedisMessage(
            node: subscriber.node, generation: subscriber.generation, epoch: subscriber.epoch,
            redisRestarts: cluster.redis.restarts, payload: .published(payload, source: source))
        guard deliverable(message) else { return }
        let at = max(now.advanced(by: redisDelay()), cluster.nodes[subscriber.node].redis.messageClock)
        cluster.nodes[subscriber.node].redis.messageClock = at
        schedule(message, at: at, toRedis: false)
    }

    private func atNode(_ message: RedisMessage) {
        guard let cluster, deliverable(message) else { return }
        enterNode(message.node)
        switch message.payload {
        case .command: return
        case let .reply(sequence, reply):
            guard let index = cluster.nodes[message.node].redis.waiting.firstIndex(where: { $0.sequence == sequence })
            else { return }
            let command = cluster.nodes[message.node].redis.waiting.remove(at: index).command
            answered(command, reply, node: message.node)
        case let .published(bytes, source):
            received(bytes, source: source, node: message.node)
        }
        drainRelay()
    }

    /// Redis answered the resident node's command: what `ClusterLink` does with the answer.
    private func answered(_ command: RedisCommand, _ reply: RedisReply, node: Int) {
        guard let cluster else { return }
        let identity = cluster.nodes[node].identity
        switch (command, reply) {
        case let (.join(id, request, _), .join(answer)):
            // The notices first: they then precede, on the same link and channel, every SIGNAL
            // this connection sends to those nodes.
            if case let .admitted(partner, _, evicted) = answer {
                let me = ClusterPeer(node: identity, connection: id.value)
                if let partner, partner.node != identity {
                    notify(node, partner.node, .peerFound(to: partner.connection, partner: me))
                }
                if let evicted, evicted.node != identity {
                    notify(node, evicted.node, .evicted(to: evicted.connection))
                }
            }
            relay.clusterJoinAnswered(id, request, answer, now: now)
        case let (.leave(leave), .leave(held, mate)):
            // The room-mate Redis named, or (Redis had no seat, e.g. it restarted) the one known.
            let told = held ? mate : leave.partner
            if let told, told.node != identity {
                let me = ClusterPeer(node: identity, connection: leave.id.value)
                notify(node, told.node, .peerLeft(to: told.connection, partner: me))
            }
        case let (.refresh(_, connections), .refresh(found)) where found < connections.count:
            // Redis lost or reserved a seat this node holds.
            askReregister(node)
        case (.hello, _):
            linkReady(node)
        case (.heartbeat, .heartbeat(had: false)):
            // This node's key had expired: the others took it for dead meanwhile.
            askReregister(node)
        case let (.exists(other), .exists(false)):
            relay.clusterNodesGone([other], now: now)
        default:
            break
        }
    }

    /// `SPUBLISH` of a notice on `target`'s channel, sent by `node` like any command.
    private func notify(_ node: Int, _ target: String, _ notice: ClusterNotice) {
        sendToRedis(node, .publish(to: target, ClusterWire.encode(notice), source: nil))
    }

    /// At most once per heartbeat (`ClusterLink.askReregister`).
    private func askReregister(_ node: Int) {
        guard let cluster, !cluster.nodes[node].redis.reregisterAsked else { return }
        cluster.nodes[node].redis.reregisterAsked = true
        relay.clusterReregister(now: now)
    }

    /// A message on the resident node's channel (`RelayHub.clusterMessage`).
    private func received(_ bytes: [UInt8], source: LinkID?, node: Int) {
        guard let message = ClusterWire.parse(bytes) else { return }
        switch message {
        case let .notice(notice):
            relay.clusterNotice(notice, now: now)
        case let .signal(to, from, bodyOffset, binary):
            let frame = Array(bytes[bodyOffset...])
            relaySource = source
            defer { relaySource = nil }
            if cluster?.configuration.plantedBugs.contains(.signalToNextConnection) == true,
                relayLinks[ConnectionID(to + 1)] != nil
            {
                relayForward(binary ? BinarySignal.text(frame) ?? frame : frame, to: ConnectionID(to + 1))
                return
            }
            relay.clusterSignal(to: to, from: from, frame, binary: binary, now: now)
            performRelayActions()
        }
    }

    // MARK: The link's life

    private func connectToRedis(_ node: Int, _ generation: Int32) -> Bool {
        guard let cluster, cluster.nodes[node].up, cluster.nodes[node].generation == generation,
            !cluster.nodes[node].redis.connected
        else { return false }
        guard redisUp, cluster.nodes[node].redis.partitionedUntil <= now else {
            scheduleReconnect(node)
            return true
        }
        cluster.nodes[node].redis.connected = true
        record(.clusterLinkUp, value: UInt64(node))
        sendToRedis(node, .hello)
        return true
    }

    private func scheduleReconnect(_ node: Int) {
        guard let cluster else { return }
        let delay = cluster.nodes[node].redis.reconnectWaitMilliseconds
        let next = min(delay * 2, VirtualClusterTiming.reconnectMaxMilliseconds)
        cluster.nodes[node].redis.reconnectWaitMilliseconds = next
        let generation = cluster.nodes[node].generation
        queue.schedule(after: .milliseconds(delay), .cluster(.connect(node: Int32(node), generation: generation)))
    }

    /// The handshake's answer: leaves kept meanwhile go first, then the engine hears Redis is back
    /// (and registers every seat again).
    private func linkReady(_ node: Int) {
        guard let cluster else { return }
        cluster.nodes[node].redis.ready = true
        cluster.nodes[node].redis.readySince = now
        cluster.nodes[node].redis.reconnectWaitMilliseconds = VirtualClusterTiming.reconnectFirstMilliseconds
        let backlog = cluster.nodes[node].redis.backlog
        cluster.nodes[node].redis.backlog.removeAll()
        for leave in backlog { sendToRedis(node, .leave(leave)) }
        if cluster.configuration.plantedBugs.contains(.availabilityNeverBack) && cluster.nodes[node].redis.brokeOnce {
            return
        }
        relay.clusterAvailabilityChanged(true, now: now)
    }

    /// The resident node's link broke: waiting JOINs are answered unavailable, waiting leaves kept
    /// for later, the engine told, and the node reconnects with backoff.
    func linkBroken(_ node: Int) {
        guard let cluster, cluster.nodes[node].redis.connected else { return }
        enterNode(node)
        record(.clusterLinkDown, value: UInt64(node))
        cluster.nodes[node].redis.connected = false
        cluster.nodes[node].redis.ready = false
        cluster.nodes[node].redis.readySince = nil
        cluster.nodes[node].redis.brokeOnce = true
        cluster.nodes[node].redis.epoch &+= 1
        let waiting = cluster.nodes[node].redis.waiting
        cluster.nodes[node].redis.waiting.removeAll()
        for entry in waiting {
            switch entry.command {
            case let .join(id, request, _): relay.clusterJoinAnswered(id, request, .unavailable, now: now)
            case let .leave(leave): cluster.nodes[node].redis.backlog.append(leave)
            default: break
            }
        }
        relay.clusterAvailabilityChanged(false, now: now)
        drainRelay()
        scheduleReconnect(node)
    }

    /// Once a second (`ClusterLink.heartbeat`): Redis's answer overdue by 3 s breaks the link;
    /// else the heartbeat key, each room's seats refreshed, the engine's heartbeat input, and the
    /// room-mates' nodes checked, in that order on the link.
    private func tick(_ node: Int, _ generation: Int32) -> Bool {
        guard let cluster, cluster.nodes[node].up, cluster.nodes[node].generation == generation else { return false }
        let next = now.advanced(by: .milliseconds(VirtualClusterTiming.heartbeatMilliseconds))
        queue.schedule(at: next, .cluster(.tick(node: Int32(node), generation: generation)))
        let timeout = Duration.milliseconds(VirtualClusterTiming.commandTimeoutMilliseconds)
        if let first = cluster.nodes[node].redis.waiting.first, first.sentAt.advanced(by: timeout) < now {
            linkBroken(node)
            return true
        }
        guard cluster.nodes[node].redis.ready else { return true }
        enterNode(node)
        sendToRedis(node, .heartbeat)
        cluster.nodes[node].redis.reregisterAsked = false
        for (room, connections) in relay.clusterSeatRooms {
            sendToRedis(node, .refresh(key: cluster.roomKey(room), connections))
        }
        relay.clusterHeartbeat(now: now)
        for other in relay.clusterPartnerNodes { sendToRedis(node, .exists(other)) }
        drainRelay()
        return true
    }
}
