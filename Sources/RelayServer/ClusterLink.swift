import ChatCore
import DequeModule
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import RelayCore

/// Where the cluster's Redis is: `redis://HOST:PORT` or, over TLS, `rediss://HOST:PORT` (`--redis`).
public struct RedisEndpoint: Sendable, Hashable {
    public var host: String
    public var port: Int
    /// `rediss://`: TLS (NIOSSL), the server's certificate checked against the system's roots or
    /// `--redis-ca-file`, and its name against HOST.
    public var usesTLS: Bool

    /// Parse `redis[s]://HOST:PORT` (or without `:PORT`, 6379; `[v6]` hosts). A password in the
    /// URL is refused: it would be on the command line (`--redis-password-file` instead).
    public init(url: String) throws(InvalidRelaySetting) {
        func invalid(_ reason: String) -> InvalidRelaySetting { InvalidRelaySetting(flag: "redis", reason: reason) }
        usesTLS = url.hasPrefix("rediss://")
        guard usesTLS || url.hasPrefix("redis://") else { throw invalid("must be redis://HOST:PORT or rediss://") }
        var rest = Substring(url.dropFirst(usesTLS ? "rediss://".count : "redis://".count))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("@") else { throw invalid("no password in the URL; use --redis-password-file") }
        guard !rest.contains("/") else { throw invalid("no database or path: redis://HOST:PORT") }
        var host = rest
        var port = 6379
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unclosed [") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let tail = rest[rest.index(after: close)...]
            if !tail.isEmpty {
                guard tail.hasPrefix(":"), let number = Int(tail.dropFirst()) else { throw invalid("bad port") }
                port = number
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let number = Int(rest[rest.index(after: colon)...]) else { throw invalid("bad port") }
            port = number
        }
        guard !host.isEmpty, (1...65_535).contains(port) else { throw invalid("must be redis://HOST:PORT") }
        self.host = String(host)
        self.port = port
    }
}

/// Timing of the cluster's liveness protocol; docs/RELAY.md derives the failure bound from it.
public enum ClusterTiming {
    /// A node refreshes its heartbeat key, and checks its room-mates' nodes, this often.
    public static let heartbeatMilliseconds: Int64 = 1000
    /// The heartbeat key's TTL, and a held seat's (every heartbeat pushes each local seat's
    /// deadline this far, in the room's own key): a node that stops refreshing is dead this long
    /// after its last refresh. Its room-mates' nodes notice at their next check: PEER_LEFT within
    /// TTL + heartbeat + a round trip (5 s and change) of the kill; the JOIN script takes its seats
    /// for departed from the same moment.
    public static let nodeTTLMilliseconds: Int64 = 4000
    /// A command unanswered this long means Redis is gone: the connection is dropped.
    public static let commandTimeoutMilliseconds: Int64 = 3000
    /// Reconnect backoff: from the first to the last delay, doubling.
    public static let reconnectFirstMilliseconds: Int64 = 100
    public static let reconnectMaxMilliseconds: Int64 = 2000
    /// Replies to `SPUBLISH`es alone are read this late at most (`RedisConnection`): what a
    /// `-MOVED` or a publish error waits to be seen, and how long a sent SIGNAL is kept for it.
    static let publishReplyReadMilliseconds: Int64 = 5
    /// Commands waiting for Redis's answer at most (more are failed at once, as publish errors).
    static let waitingMax = 65_536
    /// Leaves kept while Redis is down (the oldest is dropped past it).
    static let leaveBacklogMax = 100_000
}

/// The NIO side of cluster mode: command connections to Redis (one to a single Redis; one per
/// master of a Redis Cluster, each command routed by its key's hash slot, `-MOVED` and `-ASK`
/// followed), a subscriber on this node's sharded channel (on the shard that owns it), the
/// heartbeat, liveness checks of room-mates' nodes, reconnection with backoff. Confined to the
/// hub's event loop. It decides nothing: every answer goes to the engine (through the hub's
/// closures), which decides.
///
/// Single Redis or Cluster is detected, not configured: the first connection asks
/// `CLUSTER SLOTS`, which a server without cluster support refuses.
final class ClusterLink {
    struct Events {
        var availability: (Bool) -> Void
        /// A message on this node's channel (a view of the read buffer, valid during the call);
        /// its writes wait for `messagesRead`.
        var message: (ByteBuffer) -> Void
        /// The subscriber's read batch ended (or it closed): flush what its messages wrote.
        var messagesRead: () -> Void
        var nodesGone: ([String]) -> Void
        var partnerNodes: () -> [String]
        /// Each room holding local seats, with their connections (refreshed every heartbeat).
        var seatRooms: () -> [(room: RoomCode, connections: [ConnectionID])]
        /// This node's heartbeat key had expired, or Redis lost a seat it holds: re-register every seat.
        var reregister: () -> Void
        /// A heartbeat was sent (once a second while Redis answers).
        var heartbeat: () -> Void
    }

    private enum Script: CaseIterable {
        case join, leave, refresh

        var text: String {
            switch self {
            case .join: ClusterScripts.join
            case .leave: ClusterScripts.leave
            case .refresh: ClusterScripts.refresh
            }
        }
    }

    /// What the server at `--redis` turned out to be.
    private enum Mode {
        case unknown
        case single
        case cluster(RedisSlotMap)
    }

    /// A leave waiting for Redis: the room's key, the script's arguments, and whom to tell if
    /// Redis no longer has the seat.
    private struct Leave {
        var key: [UInt8]
        var arguments: [[UInt8]]
        var id: ConnectionID
        var partner: ClusterPeer?
    }

    let endpoint: RedisEndpoint
    let node: String
    let eventLoop: any EventLoop
    let logger: Logger
    private let password: [UInt8]?
    /// The largest bulk string Redis may send: a SIGNAL (the relay's largest frame) plus its header.
    private let bulkMaxBytes: Int
    private let sslContext: NIOSSLContext?
    var events: Events?

    private let seed: RedisServerAddress
    private var mode = Mode.unknown
    private var connections: [RedisServerAddress: RedisConnection] = [:]
    /// Every needed connection is up and Redis took this node's heartbeat: commands may go.
    private var commandReady = false
    private var probing = false
    private var refreshingMap = false
    private var subscriber: (any Channel)?
    private var subscriberAddress: RedisServerAddress?
    /// A subscriber connection is being made or waits for its reconnect delay.
    private var subscriberPending = false
    private var subscribed = false
    private var subscriberBackoffMs = ClusterTiming.reconnectFirstMilliseconds
    private var available = false
    private var shas: [Script: String] = [:]
    private var leaveBacklog = Deque<Leave>()
    private var reregisterAsked = false
    private var stopped = false
    private var tick: RepeatedTask?
    private var stopPromise: EventLoopPromise<Void>?

    private(set) var publishErrors = 0
    private(set) var reconnects = 0
    private(set) var lastRoundTripNanoseconds: UInt64 = 0

    init(
        endpoint: RedisEndpoint, password: [UInt8]?, sslContext: NIOSSLContext?, node: String,
        frameSizeMaxBytes: Int, eventLoop: any EventLoop, logger: Logger
    ) {
        self.endpoint = endpoint
        self.sslContext = sslContext
        bulkMaxBytes = frameSizeMaxBytes + ClusterWire.signalHeaderMaxBytes
        self.password = password
        self.node = node
        self.eventLoop = eventLoop
        self.logger = logger
        seed = RedisServerAddress(host: endpoint.host, port: endpoint.port)
    }

    var isAvailable: Bool { available }
    private var nodeKey: [UInt8] { Array((ClusterWire.nodeKeyPrefix() + node).utf8) }
    private var channelName: [UInt8] { Self.channel(of: node) }

    private static func channel(of node: String) -> [UInt8] { Array((ClusterWire.channelPrefix() + node).utf8) }

    func start() {
        connect(seed)
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        tick = eventLoop.scheduleRepeatedTask(
            initialDelay: .milliseconds(ClusterTiming.heartbeatMilliseconds),
            delay: .milliseconds(ClusterTiming.heartbeatMilliseconds)
        ) { _ in link.value.heartbeat() }
    }

    /// Stop: wait (bounded) for the commands already sent (the last leaves), remove this node's
    /// heartbeat key so room-mates' nodes learn at once, and close.
    func stop() -> EventLoopFuture<Void> {
        tick?.cancel()
        let done = eventLoop.makePromise(of: Void.self)
        stopPromise = done
        guard commandReady else {
            finishStop()
            return done.futureResult
        }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        command(nodeKey, [Array("DEL".utf8), nodeKey]) { _ in link.value.finishStop() }
        eventLoop.scheduleTask(in: .milliseconds(ClusterTiming.commandTimeoutMilliseconds)) { link.value.finishStop() }
        return done.futureResult
    }

    private func finishStop() {
        guard let promise = stopPromise else { return }
        stopPromise = nil
        stopped = true
        for address in connections.keys.sorted() { connections[address]?.close() }
        subscriber?.close(promise: nil)
        promise.succeed(())
    }

    // MARK: Engine commands

    func join(
        _ id: ConnectionID, _ request: ClusterJoinRequest, graceMilliseconds: Int64,
        answer: @escaping (ClusterJoinReply) -> Void
    ) {
        guard commandReady else { return answer(.unavailable) }
        let args: [[UInt8]] = [
            Array(node.utf8), Array(String(id.value).utf8), ClusterWire.tokenHash(request.token),
            ClusterWire.tokenHash(request.newToken), Array((request.reclaimOnly ? "1" : "0").utf8),
            Array(String(ClusterTiming.nodeTTLMilliseconds).utf8), Array((request.rejoin ? "1" : "0").utf8),
            Array(String(graceMilliseconds).utf8),
        ]
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        evaluate(.join, key: Array(ClusterWire.roomKey(request.room).utf8), args) { reply in
            let parsed = Self.joinReply(reply)
            // The notices first: they then precede, on the same connection and channel, every
            // SIGNAL this connection sends to those nodes.
            if case let .admitted(partner, _, evicted) = parsed {
                let me = ClusterPeer(node: link.value.node, connection: id.value)
                if let partner, partner.node != me.node {
                    link.value.notify(partner.node, .peerFound(to: partner.connection, partner: me))
                }
                if let evicted, evicted.node != me.node {
                    link.value.notify(evicted.node, .evicted(to: evicted.connection))
                }
            }
            answer(parsed)
        }
    }

    /// The JOIN script's reply, strictly: anything unexpected is `unavailable`.
    static func joinReply(_ reply: RESPValue?) -> ClusterJoinReply {
        guard let fields = reply?.elements?.map({ $0.bytes.map { String(decoding: $0, as: UTF8.self) } }),
            let status = fields.first ?? nil
        else { return .unavailable }
        if status == "refused", fields.count == 2, let text = fields[1], let code = RelayErrorCode(rawValue: text) {
            return .refused(code)
        }
        guard status == "admitted", fields.count == 6 else { return .unavailable }
        func peer(_ nodeIndex: Int) -> ClusterPeer? {
            guard let node = fields[nodeIndex], !node.isEmpty, let text = fields[nodeIndex + 1],
                let connection = UInt64(text)
            else { return nil }
            return ClusterPeer(node: node, connection: connection)
        }
        return .admitted(partner: peer(1), reclaimed: fields[3] == "1", evicted: peer(4))
    }

    func leave(_ id: ConnectionID, room: RoomCode, graceMilliseconds: Int64, partner: ClusterPeer?) {
        let args = [node, String(id.value), String(graceMilliseconds)].map { Array($0.utf8) }
        let leave = Leave(key: Array(ClusterWire.roomKey(room).utf8), arguments: args, id: id, partner: partner)
        guard commandReady else { return backlog(leave) }
        runLeave(leave)
    }

    private func backlog(_ leave: Leave) {
        if leaveBacklog.count >= ClusterTiming.leaveBacklogMax { leaveBacklog.removeFirst() }
        leaveBacklog.append(leave)
    }

    private func runLeave(_ leave: Leave) {
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        evaluate(.leave, key: leave.key, leave.arguments) { reply in
            // Lost with the connection (it may not have run): again once Redis is back. The script
            // is idempotent: a seat already gone only repeats a PEER_LEFT its mate's node ignores.
            guard let reply else {
                if !link.value.stopped { link.value.backlog(leave) }
                return
            }
            link.value.leaveAnswered(leave, reply)
        }
    }

    /// Tell the remote room-mate: the one Redis named, or (Redis no longer had the seat, e.g. it
    /// restarted) the one this node knew.
    private func leaveAnswered(_ leave: Leave, _ reply: RESPValue) {
        let me = ClusterPeer(node: node, connection: leave.id.value)
        guard let fields = reply.elements, case let .integer(held)? = fields.first else { return }
        var mate = leave.partner
        if held == 1 {
            mate = nil
            if fields.count == 3, let mateNode = fields[1].bytes, !mateNode.isEmpty, let text = fields[2].bytes,
                let connection = UInt64(String(decoding: text, as: UTF8.self))
            {
                mate = ClusterPeer(node: String(decoding: mateNode, as: UTF8.self), connection: connection)
            }
        }
        guard let mate, mate.node != node else { return }
        notify(mate.node, .peerLeft(to: mate.connection, partner: me))
    }

    /// A SIGNAL to `partner`'s node: its header and the frame written straight into the
    /// `SPUBLISH` command's one buffer (one copy of the frame, no array or closure per SIGNAL).
    /// `binary`: a binary SIGNAL, sent under its own header so the receiving node knows its form.
    func publish(to partner: ClusterPeer, from id: ConnectionID, _ frame: ByteBuffer, binary: Bool) {
        guard commandReady else {
            publishErrors += 1
            return
        }
        let me = ClusterPeer(node: node, connection: id.value)
        let header = ClusterWire.signalHeaderLength(to: partner, from: me)
        spublish(to: partner.node, payloadBytes: header + frame.readableBytes) { command in
            command.writeWithUnsafeMutableBytes(minimumWritableBytes: header) { out in
                ClusterWire.writeSignalHeader(to: partner, from: me, binary: binary, into: out) ? header : 0
            }
            command.writeImmutableBuffer(frame)
        }
    }

    /// Publish `notice` on node `target`'s channel (the scripts' answers name whom to tell; the
    /// engine asks for one itself, `ClusterCommand.notice`). Lost while Redis is away, as a SIGNAL.
    func notify(_ target: String, _ notice: ClusterNotice) {
        let text = ClusterWire.encode(notice)
        spublish(to: target, payloadBytes: text.count) { $0.writeBytes(text) }
    }

    /// A sharded publish on `target`'s channel (on a Cluster, to the shard that owns its slot):
    /// `writePayload` writes the message's `payloadBytes` bytes into the command. Its reply comes
    /// back to `publishAnswered`.
    private func spublish(to target: String, payloadBytes: Int, _ writePayload: (inout ByteBuffer) -> Void) {
        guard let connection = routeChannel(of: target) else {
            publishErrors += 1
            return
        }
        let prefix = ClusterWire.channelPrefix()
        var command = ByteBufferAllocator().buffer(capacity: 64 + prefix.utf8.count + target.utf8.count + payloadBytes)
        command.writeSPUBLISHHeader(channelPrefix: prefix, name: target, payloadBytes: payloadBytes)
        let start = command.writerIndex
        writePayload(&command)
        // Never a length that disagrees with the bytes: Redis would read the stream out of step.
        guard command.writerIndex - start == payloadBytes else {
            publishErrors += 1
            return
        }
        command.writeRESPLineEnd()
        connection.sendPublish(command, redirected: false)
    }

    /// An `SPUBLISH`'s reply: nil (no connection, Redis gone) or an error is a publish error,
    /// but a first `-MOVED` or `-ASK` sends the command once to where it now goes (as `command`
    /// does for other commands).
    private func publishAnswered(
        _ reply: RESPValue?, command: ByteBuffer, redirected: Bool, from connection: RedisConnection
    ) {
        guard let reply else {
            publishErrors += 1
            return
        }
        guard case let .error(text) = reply else { return }
        guard !redirected, let redirect = RedisRedirect.parse(text, asked: connection.address) else {
            publishErrors += 1
            return
        }
        switch redirect {
        case let .moved(_, to):
            refreshMap(preferring: connection)
            guard let target = connections[to], target.ready else { return publishErrors += 1 }
            target.sendPublish(command, redirected: true)
        case let .ask(_, to):
            guard let target = connections[to], target.ready else { return publishErrors += 1 }
            target.send([Array("ASKING".utf8)]) { _ in }
            target.sendPublish(command, redirected: true)
        }
    }

    // MARK: Scripts and routing

    private func evaluate(_ script: Script, key: [UInt8], _ args: [[UInt8]], reply: @escaping (RESPValue?) -> Void) {
        let tail = [Array("1".utf8), key] + args
        guard let sha = shas[script] else {
            return command(key, [Array("EVAL".utf8), Array(script.text.utf8)] + tail, reply)
        }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        command(key, [Array("EVALSHA".utf8), Array(sha.utf8)] + tail) { answer in
            // This server lost its script cache (SCRIPT FLUSH, a restart, a new master): the text once.
            if case let .error(message)? = answer, message.starts(with: Array("NOSCRIPT".utf8)) {
                link.value.command(key, [Array("EVAL".utf8), Array(script.text.utf8)] + tail, reply)
            } else {
                reply(answer)
            }
        }
    }

    /// The connection that serves `target`'s channel (`route` without building the channel's
    /// name for a single Redis).
    private func routeChannel(of target: String) -> RedisConnection? {
        if case .single = mode {
            guard let connection = connections[seed], connection.ready else { return nil }
            return connection
        }
        return route(Self.channel(of: target))
    }

    /// The connection that serves `key`: the single Redis, or the master of the key's slot.
    private func route(_ key: [UInt8]) -> RedisConnection? {
        let address: RedisServerAddress
        switch mode {
        case .unknown: return nil
        case .single: address = seed
        case let .cluster(map): address = map.master(for: key)
        }
        guard let connection = connections[address], connection.ready else { return nil }
        return connection
    }

    /// Send a command about `key` where it lives. A `-MOVED` reply updates the slot map and the
    /// command goes once to the new owner; an `-ASK` sends it once there after `ASKING`.
    private func command(_ key: [UInt8], _ arguments: [[UInt8]], _ callback: @escaping (RESPValue?) -> Void) {
        guard let connection = route(key) else { return callback(nil) }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        connection.send(arguments) { reply in
            guard case let .error(text)? = reply, let redirect = RedisRedirect.parse(text, asked: connection.address)
            else { return callback(reply) }
            link.value.redirected(redirect, from: connection, arguments, callback)
        }
    }

    private func redirected(
        _ redirect: RedisRedirect, from connection: RedisConnection, _ arguments: [[UInt8]],
        _ callback: @escaping (RESPValue?) -> Void
    ) {
        switch redirect {
        case let .moved(_, to):
            refreshMap(preferring: connection)
            guard let target = connections[to], target.ready else { return callback(nil) }
            target.send(arguments, callback)
        case let .ask(_, to):
            guard let target = connections[to], target.ready else { return callback(nil) }
            target.send([Array("ASKING".utf8)]) { _ in }
            target.send(arguments, callback)
        }
    }

    // MARK: Command connections

    private func connect(_ address: RedisServerAddress) {
        guard !stopped else { return }
        let connection = connections[address] ?? RedisConnection(address: address, eventLoop: eventLoop)
        connections[address] = connection
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        connection.publishAnswered = { connection, reply, command, redirected in
            link.value.publishAnswered(reply, command: command, redirected: redirected, from: connection)
        }
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        RedisConnection.connect(
            to: address, sslContext: sslContext, bulkMaxBytes: bulkMaxBytes, eventLoop: eventLoop,
            gate: connection.makeGate(),
            onValue: { value in bound.value.received(value) },
            readComplete: { bound.value.readCompleted() },
            closed: { link.value.connectionClosed(bound.value) }
        ).whenComplete { result in
            switch result {
            case let .success(channel):
                // A connection dropped from the map meanwhile is not used.
                guard link.value.connections[address] === bound.value, !link.value.stopped else {
                    return channel.close(promise: nil)
                }
                bound.value.attach(channel)
                link.value.handshake(bound.value)
            case .failure:
                link.value.scheduleReconnect(bound.value)
            }
        }
    }

    /// AUTH, load the scripts, and (unless Redis is known to be a single server) ask for the slot
    /// map; then the connection serves commands.
    private func handshake(_ connection: RedisConnection) {
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        if let password {
            connection.send([Array("AUTH".utf8), password]) { reply in
                if case .error? = reply { link.value.logger.error("redis refused the password") }
            }
        }
        for script in Script.allCases {
            connection.send([Array("SCRIPT".utf8), Array("LOAD".utf8), Array(script.text.utf8)]) { reply in
                if let sha = reply?.bytes { link.value.shas[script] = String(decoding: sha, as: UTF8.self) }
            }
        }
        if case .single = mode {
            return opened(connection)
        }
        connection.send([Array("CLUSTER".utf8), Array("SLOTS".utf8)]) { reply in
            guard let reply else { return }
            link.value.slotsAnswered(reply, from: connection)
            link.value.opened(connection)
        }
    }

    private func opened(_ connection: RedisConnection) {
        guard connection.channel != nil else { return }
        connection.ready = true
        connection.backoffMilliseconds = ClusterTiming.reconnectFirstMilliseconds
        tryReady()
    }

    /// `CLUSTER SLOTS` answered: a server without cluster support refuses it (single Redis);
    /// a Cluster's map routes every key from now on.
    private func slotsAnswered(_ reply: RESPValue, from connection: RedisConnection) {
        if case let .error(text) = reply {
            guard text.starts(with: Array("ERR This instance has cluster support disabled".utf8)) else {
                logger.error("redis refused CLUSTER SLOTS; reconnecting")
                return connection.close()
            }
            guard case .unknown = mode else { return }
            mode = .single
            logger.info("redis is a single server")
            return connectSubscriber()
        }
        do throws(RedisSlotMap.Invalid) {
            apply(try RedisSlotMap(clusterSlots: reply, asked: connection.address))
        } catch {
            logger.error("redis cluster's slot map is not usable; reconnecting", metadata: ["reason": "\(error)"])
            connection.close()
        }
    }

    /// A new slot map: a connection per master (others closed), the subscriber on the shard of
    /// this node's channel.
    private func apply(_ map: RedisSlotMap) {
        var known = false
        if case let .cluster(old) = mode { known = old == map }
        mode = .cluster(map)
        guard !known else { return }
        logger.info("redis cluster", metadata: ["masters": "\(map.masters.count)"])
        for address in connections.keys.sorted() where !map.masters.contains(address) {
            connections.removeValue(forKey: address)?.close()
        }
        for address in map.masters where connections[address] == nil { connect(address) }
        if let subscriber, subscriberAddress != map.master(for: channelName) {
            subscriber.close(promise: nil)
        } else {
            connectSubscriber()
        }
        tryReady()
    }

    /// Ask a ready connection for the slot map again (a `-MOVED`, a lost master, a moved channel):
    /// `preferred`, the one that answered `-MOVED`, if it is ready.
    ///
    /// Until the new map is in, and then until the publishes sent before it are answered, every
    /// connection reads its replies at once (not in batches); on `preferred` the map's reply comes
    /// after those of every publish sent there before it. So a `-MOVED` is seen within a round
    /// trip, as before batching: in order per sender as far as one round trip allows.
    private func refreshMap(preferring preferred: RedisConnection? = nil) {
        guard case .cluster = mode, !refreshingMap else { return }
        let ordered = connections.keys.sorted().compactMap { connections[$0] }
        guard let source = preferred?.ready == true ? preferred : ordered.first(where: \.ready) else { return }
        refreshingMap = true
        for connection in ordered { connection.readAtOnce() }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        source.send([Array("CLUSTER".utf8), Array("SLOTS".utf8)]) { reply in
            link.value.refreshingMap = false
            for connection in link.value.connections.values { connection.readInBatches() }
            if let reply { link.value.slotsAnswered(reply, from: source) }
        }
    }

    /// Every connection the map needs is up: send the heartbeat, and once Redis took it, serve.
    private func tryReady() {
        guard !commandReady, !probing, !stopped else { return }
        let needed: [RedisServerAddress]
        switch mode {
        case .unknown: return
        case .single: needed = [seed]
        case let .cluster(map): needed = map.masters
        }
        guard needed.allSatisfy({ connections[$0]?.ready == true }) else { return }
        probing = true
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        let started = NIODeadline.now()
        command(nodeKey, heartbeatCommand) { reply in
            link.value.probing = false
            guard reply == .null || reply == .bulkString(Array("1".utf8)) else {
                link.value.logger.error("redis did not accept the heartbeat; reconnecting")
                link.value.route(link.value.nodeKey)?.close()
                return
            }
            link.value.lastRoundTripNanoseconds = UInt64((NIODeadline.now() - started).nanoseconds)
            link.value.commandReady = true
            link.value.logger.info("connected to redis", metadata: ["node": "\(link.value.node)"])
            // Leaves from while Redis was away first, then the availability (which re-registers).
            while let leave = link.value.leaveBacklog.popFirst() { link.value.runLeave(leave) }
            link.value.updateAvailability()
        }
    }

    private var heartbeatCommand: [[UInt8]] {
        [
            Array("SET".utf8), nodeKey, Array("1".utf8), Array("PX".utf8),
            Array(String(ClusterTiming.nodeTTLMilliseconds).utf8), Array("GET".utf8),
        ]
    }

    private func connectionClosed(_ connection: RedisConnection) {
        let wasReady = commandReady
        connection.closed()
        guard connections[connection.address] === connection else { return }
        commandReady = false
        shas = [:]
        if wasReady { logger.warning("lost a connection to redis; reconnecting") }
        updateAvailability()
        scheduleReconnect(connection)
    }

    private func scheduleReconnect(_ connection: RedisConnection) {
        guard !stopped, connections[connection.address] === connection else { return }
        let delay = connection.backoffMilliseconds
        connection.backoffMilliseconds = min(delay * 2, ClusterTiming.reconnectMaxMilliseconds)
        reconnects += 1
        // A master gone for good (a failover): the others know its successor.
        refreshMap()
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        let address = connection.address
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: .milliseconds(delay)) {
            guard link.value.connections[address] === bound.value else { return }
            link.value.connect(address)
        }
    }

    // MARK: The subscriber connection

    /// Where this node's channel lives: the single Redis, or its slot's master.
    private var subscriberTarget: RedisServerAddress? {
        switch mode {
        case .unknown: nil
        case .single: seed
        case let .cluster(map): map.master(for: channelName)
        }
    }

    private func connectSubscriber() {
        guard !stopped, subscriber == nil, !subscriberPending, let address = subscriberTarget else { return }
        subscriberPending = true
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        RedisConnection.connect(
            to: address, sslContext: sslContext, bulkMaxBytes: bulkMaxBytes, eventLoop: eventLoop,
            onValue: { value in link.value.subscriberMessage(value) },
            onMessage: { payload in link.value.events?.message(payload) },
            readComplete: { link.value.events?.messagesRead() },
            closed: { link.value.subscriberClosed() }
        ).whenComplete { result in
            link.value.subscriberPending = false
            switch result {
            case let .success(channel):
                link.value.subscriber = channel
                link.value.subscriberAddress = address
                var commands: [[UInt8]] = []
                if let password = link.value.password {
                    commands.append(RESPEncoding.command([Array("AUTH".utf8), password]))
                }
                commands.append(RESPEncoding.command([Array("SSUBSCRIBE".utf8), link.value.channelName]))
                channel.writeAndFlush(channel.allocator.buffer(bytes: commands.flatMap { $0 }), promise: nil)
            case .failure:
                link.value.scheduleSubscriberReconnect()
            }
        }
    }

    private func subscriberMessage(_ value: RESPValue) {
        guard let fields = value.elements, let kind = fields.first?.bytes else {
            if case let .error(text) = value {
                // `-MOVED`: the channel's slot is elsewhere now (a reshard, a failover).
                if RedisRedirect.parse(text, asked: subscriberAddress ?? seed) != nil {
                    refreshMap()
                } else {
                    logger.error("redis refused the subscriber connection")
                }
                subscriber?.close(promise: nil)
            }
            return
        }
        // An `smessage` the decoder's fast path did not take (a form it does not read, such as
        // a RESP3 set): the same message.
        if kind == Array("smessage".utf8), fields.count == 3, let payload = fields[2].bytes {
            events?.message(ByteBuffer(bytes: payload))
        } else if kind == Array("ssubscribe".utf8) {
            subscribed = true
            subscriberBackoffMs = ClusterTiming.reconnectFirstMilliseconds
            updateAvailability()
        } else if kind == Array("sunsubscribe".utf8) {
            // Redis dropped the subscription: the slot moved. Subscribe again where it is now.
            logger.warning("redis moved this node's channel; subscribing again")
            refreshMap()
            subscriber?.close(promise: nil)
        }
    }

    private func subscriberClosed() {
        // Messages decoded as the connection closed had no read batch end of their own.
        events?.messagesRead()
        subscriber = nil
        subscriberAddress = nil
        subscribed = false
        updateAvailability()
        scheduleSubscriberReconnect()
    }

    private func scheduleSubscriberReconnect() {
        guard !stopped else { return }
        let delay = subscriberBackoffMs
        subscriberBackoffMs = min(delay * 2, ClusterTiming.reconnectMaxMilliseconds)
        reconnects += 1
        subscriberPending = true
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: .milliseconds(delay)) {
            link.value.subscriberPending = false
            link.value.connectSubscriber()
        }
    }

    // MARK: Common

    private func updateAvailability() {
        let now = commandReady && subscribed && !stopped
        guard now != available else { return }
        available = now
        if !now { logger.warning("cluster unavailable: new JOINs are refused until redis answers") }
        events?.availability(now)
    }

    /// Once a second: refresh this node's key and its seats' deadlines, check the room-mates'
    /// nodes, time out Redis.
    private func heartbeat() {
        for address in connections.keys.sorted() {
            guard let connection = connections[address], connection.isOverdue else { continue }
            logger.warning("redis did not answer in time; reconnecting")
            connection.close()
        }
        guard commandReady else { return }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        let started = NIODeadline.now()
        command(nodeKey, heartbeatCommand) { reply in
            if reply != nil { link.value.lastRoundTripNanoseconds = UInt64((NIODeadline.now() - started).nanoseconds) }
            // SET ... GET answers the old value: none means the key had expired, and the other
            // nodes have taken this one for dead meanwhile.
            if reply == .null {
                link.value.logger.warning("this node's heartbeat had expired in redis; registering its seats again")
                link.value.askReregister()
            }
        }
        reregisterAsked = false
        refreshSeats()
        events?.heartbeat()
        // Bounded by the distinct nodes of local room-mates.
        for partnerNode in events?.partnerNodes() ?? [] {
            let key = Array((ClusterWire.nodeKeyPrefix() + partnerNode).utf8)
            command(key, [Array("EXISTS".utf8), key]) { reply in
                if reply == .integer(0) { link.value.events?.nodesGone([partnerNode]) }
            }
        }
    }

    /// Push the deadline of every local seat forward, room by room (pipelined; each script in
    /// its room's slot). A room that has fewer of this node's seats than it holds lost some
    /// (reserved while this node was taken for dead, or lost by a shard): register again.
    private func refreshSeats() {
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        let ttl = Array(String(ClusterTiming.nodeTTLMilliseconds).utf8)
        for (room, ids) in events?.seatRooms() ?? [] {
            let args = [Array(node.utf8), ttl] + ids.map { Array(String($0.value).utf8) }
            evaluate(.refresh, key: Array(ClusterWire.roomKey(room).utf8), args) { reply in
                guard case let .integer(found)? = reply, found < ids.count else { return }
                link.value.logger.warning("redis lost a seat of this node; registering its seats again")
                link.value.askReregister()
            }
        }
    }

    /// At most once per heartbeat (re-registration is idempotent, but costs a script per seat).
    private func askReregister() {
        guard !reregisterAsked else { return }
        reregisterAsked = true
        events?.reregister()
    }
}
