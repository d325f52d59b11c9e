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
    /// The heartbeat key's TTL: a node that stops refreshing is dead this long after its last
    /// refresh. Its room-mates' nodes notice at their next check: PEER_LEFT within
    /// TTL + heartbeat + a round trip (5 s and change) of the kill.
    public static let nodeTTLMilliseconds: Int64 = 4000
    /// A command unanswered this long means Redis is gone: the connection is dropped.
    public static let commandTimeoutMilliseconds: Int64 = 3000
    /// Reconnect backoff: from the first to the last delay, doubling.
    public static let reconnectFirstMilliseconds: Int64 = 100
    public static let reconnectMaxMilliseconds: Int64 = 2000
    /// Commands waiting for Redis's answer at most (more are failed at once, as publish errors).
    static let waitingMax = 65_536
    /// Leaves kept while Redis is down (the oldest is dropped past it).
    static let leaveBacklogMax = 100_000
}

/// The NIO side of cluster mode: two connections to Redis (commands, and a subscriber on this
/// node's channel), the heartbeat, liveness checks of room-mates' nodes, reconnection with
/// backoff. Confined to the hub's event loop. It decides nothing: every answer goes to the
/// engine (through the hub's closures), which decides.
final class ClusterLink {
    struct Events {
        var availability: (Bool) -> Void
        var message: ([UInt8]) -> Void
        var nodesGone: ([String]) -> Void
        var partnerNodes: () -> [String]
        /// This node's heartbeat key had expired: re-register every seat.
        var reregister: () -> Void
        /// A heartbeat was sent (once a second while Redis answers).
        var heartbeat: () -> Void
    }

    private struct Waiter {
        var deadline: NIODeadline
        var callback: (RESPValue?) -> Void
    }

    private enum Script { case join, leave }

    let endpoint: RedisEndpoint
    let node: String
    let eventLoop: any EventLoop
    let logger: Logger
    private let password: [UInt8]?
    /// The largest bulk string Redis may send: a SIGNAL (the relay's largest frame) plus its header.
    private let bulkMaxBytes: Int
    var events: Events?

    private var command: (any Channel)?
    private var commandReady = false
    private var subscriber: (any Channel)?
    private var subscribed = false
    private var available = false
    private var waiting = Deque<Waiter>()
    private var shas: [Script: String] = [:]
    private var leaveBacklog = Deque<[[UInt8]]>()
    private var commandBackoffMs = ClusterTiming.reconnectFirstMilliseconds
    private var subscriberBackoffMs = ClusterTiming.reconnectFirstMilliseconds
    private var flushScheduled = false
    private var stopped = false
    private var tick: RepeatedTask?
    private var stopPromise: EventLoopPromise<Void>?

    private(set) var publishErrors = 0
    private(set) var reconnects = 0
    private(set) var lastRoundTripNanoseconds: UInt64 = 0

    private let sslContext: NIOSSLContext?

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
    }

    var isAvailable: Bool { available }
    private var nodeKey: [UInt8] { Array((ClusterWire.nodeKeyPrefix() + node).utf8) }

    func start() {
        connectCommand()
        connectSubscriber()
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
        send([Array("DEL".utf8), nodeKey]) { _ in link.value.finishStop() }
        eventLoop.scheduleTask(in: .milliseconds(ClusterTiming.commandTimeoutMilliseconds)) { link.value.finishStop() }
        return done.futureResult
    }

    private func finishStop() {
        guard let promise = stopPromise else { return }
        stopPromise = nil
        stopped = true
        command?.close(promise: nil)
        subscriber?.close(promise: nil)
        promise.succeed(())
    }

    // MARK: Engine commands

    func join(
        _ id: ConnectionID, _ request: ClusterJoinRequest, graceMilliseconds: Int64,
        answer: @escaping (ClusterJoinReply) -> Void
    ) {
        guard commandReady else { return answer(.unavailable) }
        let args: [String] = [
            node, String(id.value), ClusterWire.tokenHash(request.token), ClusterWire.tokenHash(request.newToken),
            request.reclaimOnly ? "1" : "0", ClusterWire.nodeKeyPrefix(), ClusterWire.channelPrefix(),
            request.rejoin ? "1" : "0", String(graceMilliseconds),
        ]
        evaluate(.join, key: ClusterWire.roomKey(request.room), args.map { Array($0.utf8) }) { reply in
            answer(Self.joinReply(reply))
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
        let args: [String] = [
            node, String(id.value), String(graceMilliseconds), ClusterWire.channelPrefix(),
            partner?.node ?? "", partner.map { String($0.connection) } ?? "",
        ]
        let command = [Array(ClusterWire.roomKey(room).utf8)] + args.map { Array($0.utf8) }
        guard commandReady else {
            if leaveBacklog.count >= ClusterTiming.leaveBacklogMax { leaveBacklog.removeFirst() }
            leaveBacklog.append(command)
            return
        }
        runLeave(command)
    }

    private func runLeave(_ keyAndArgs: [[UInt8]]) {
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        evaluate(.leave, key: String(decoding: keyAndArgs[0], as: UTF8.self), Array(keyAndArgs.dropFirst())) { reply in
            // Lost with the connection (it may not have run): again once Redis is back. The script
            // is idempotent: a seat already gone only repeats a PEER_LEFT its mate's node ignores.
            guard reply == nil, !link.value.stopped else { return }
            if link.value.leaveBacklog.count >= ClusterTiming.leaveBacklogMax { link.value.leaveBacklog.removeFirst() }
            link.value.leaveBacklog.append(keyAndArgs)
        }
    }

    func publish(to partner: ClusterPeer, from id: ConnectionID, _ frame: ByteBuffer) {
        guard commandReady else {
            publishErrors += 1
            return
        }
        var payload = ClusterWire.signalHeader(to: partner, from: ClusterPeer(node: node, connection: id.value))
        payload.append(contentsOf: frame.readableBytesView)
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        send([Array("PUBLISH".utf8), Array((ClusterWire.channelPrefix() + partner.node).utf8), payload]) { reply in
            if reply == nil { link.value.publishErrors += 1 }
        }
    }

    // MARK: Scripts

    private func evaluate(_ script: Script, key: String, _ args: [[UInt8]], reply: @escaping (RESPValue?) -> Void) {
        let text = script == .join ? ClusterScripts.join : ClusterScripts.leave
        let tail = [Array("1".utf8), Array(key.utf8)] + args
        guard let sha = shas[script] else {
            return send([Array("EVAL".utf8), Array(text.utf8)] + tail, reply)
        }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        send([Array("EVALSHA".utf8), Array(sha.utf8)] + tail) { answer in
            // Redis lost its script cache (SCRIPT FLUSH): send the text once.
            if case let .error(message)? = answer, message.starts(with: Array("NOSCRIPT".utf8)) {
                link.value.send([Array("EVAL".utf8), Array(text.utf8)] + tail, reply)
            } else {
                reply(answer)
            }
        }
    }

    // MARK: The command connection

    private func send(_ arguments: [[UInt8]], _ callback: @escaping (RESPValue?) -> Void) {
        guard let command, waiting.count < ClusterTiming.waitingMax else { return callback(nil) }
        let deadline = NIODeadline.now() + .milliseconds(ClusterTiming.commandTimeoutMilliseconds)
        waiting.append(Waiter(deadline: deadline, callback: callback))
        command.write(command.allocator.buffer(bytes: RESPEncoding.command(arguments)), promise: nil)
        scheduleFlush()
    }

    /// One flush per event-loop turn for everything written in it (many PUBLISHes per read batch).
    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.execute {
            link.value.flushScheduled = false
            link.value.command?.flush()
        }
    }

    private func connectCommand() {
        guard !stopped else { return }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        connect { value in link.value.commandReply(value) } closed: { link.value.commandClosed() }
            .whenComplete { result in
                switch result {
                case let .success(channel):
                    link.value.command = channel
                    link.value.handshake()
                case .failure:
                    link.value.scheduleReconnect(subscriber: false)
                }
            }
    }

    /// AUTH, load the scripts, and the first heartbeat; then the node serves JOINs.
    private func handshake() {
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        if let password {
            send([Array("AUTH".utf8), password]) { reply in
                if case .error? = reply { link.value.logger.error("redis refused the password") }
            }
        }
        for script in [Script.join, .leave] {
            let text = script == .join ? ClusterScripts.join : ClusterScripts.leave
            send([Array("SCRIPT".utf8), Array("LOAD".utf8), Array(text.utf8)]) { reply in
                if let sha = reply?.bytes { link.value.shas[script] = String(decoding: sha, as: UTF8.self) }
            }
        }
        let started = NIODeadline.now()
        send(heartbeatCommand) { reply in
            guard reply == .null || reply == .bulkString(Array("1".utf8)) else {
                link.value.logger.error("redis did not accept the heartbeat; reconnecting")
                link.value.command?.close(promise: nil)
                return
            }
            link.value.lastRoundTripNanoseconds = UInt64((NIODeadline.now() - started).nanoseconds)
            link.value.commandReady = true
            link.value.commandBackoffMs = ClusterTiming.reconnectFirstMilliseconds
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

    private func commandReply(_ value: RESPValue) {
        guard let waiter = waiting.popFirst() else {
            // An answer nobody asked for: the stream is out of step; start again.
            command?.close(promise: nil)
            return
        }
        waiter.callback(value)
    }

    private func commandClosed() {
        command = nil
        let wasReady = commandReady
        commandReady = false
        shas = [:]
        // Bounded by `waitingMax`; a callback may send (and fail at once: no connection).
        while let waiter = waiting.popFirst() { waiter.callback(nil) }
        if wasReady { logger.warning("lost the connection to redis; reconnecting") }
        updateAvailability()
        scheduleReconnect(subscriber: false)
    }

    // MARK: The subscriber connection

    private func connectSubscriber() {
        guard !stopped else { return }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        connect { value in link.value.subscriberMessage(value) } closed: { link.value.subscriberClosed() }
            .whenComplete { result in
                switch result {
                case let .success(channel):
                    link.value.subscriber = channel
                    var commands: [[UInt8]] = []
                    if let password = link.value.password {
                        commands.append(RESPEncoding.command([Array("AUTH".utf8), password]))
                    }
                    let channelName = Array((ClusterWire.channelPrefix() + link.value.node).utf8)
                    commands.append(RESPEncoding.command([Array("SUBSCRIBE".utf8), channelName]))
                    channel.writeAndFlush(channel.allocator.buffer(bytes: commands.flatMap { $0 }), promise: nil)
                case .failure:
                    link.value.scheduleReconnect(subscriber: true)
                }
            }
    }

    private func subscriberMessage(_ value: RESPValue) {
        guard let fields = value.elements, let kind = fields.first?.bytes else {
            if case .error = value {
                logger.error("redis refused the subscriber connection")
                subscriber?.close(promise: nil)
            }
            return
        }
        if kind == Array("message".utf8), fields.count == 3, let payload = fields[2].bytes {
            events?.message(payload)
        } else if kind == Array("subscribe".utf8) {
            subscribed = true
            subscriberBackoffMs = ClusterTiming.reconnectFirstMilliseconds
            updateAvailability()
        }
    }

    private func subscriberClosed() {
        subscriber = nil
        subscribed = false
        updateAvailability()
        scheduleReconnect(subscriber: true)
    }

    // MARK: Common

    private func connect(
        _ onValue: @escaping (RESPValue) -> Void, closed: @escaping () -> Void
    ) -> EventLoopFuture<any Channel> {
        let handler = NIOLoopBound(RedisValueHandler(onValue: onValue, onClose: closed), eventLoop: eventLoop)
        let sslContext = self.sslContext
        // SNI and the name check want a host name; an IP address is checked against the
        // certificate's IP addresses instead (NIOSSL does that when no name is given).
        let serverHostname = endpoint.host.contains(":") || endpoint.host.allSatisfy({ $0.isNumber || $0 == "." })
            ? nil : endpoint.host
        let bulkMaxBytes = bulkMaxBytes
        return ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.milliseconds(ClusterTiming.commandTimeoutMilliseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                    }
                    let decoder = RESPDecoder(bulkMaxBytes: bulkMaxBytes)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
                    try channel.pipeline.syncOperations.addHandler(handler.value)
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
    }

    private func scheduleReconnect(subscriber: Bool) {
        guard !stopped else { return }
        let delay = subscriber ? subscriberBackoffMs : commandBackoffMs
        if subscriber {
            subscriberBackoffMs = min(delay * 2, ClusterTiming.reconnectMaxMilliseconds)
        } else {
            commandBackoffMs = min(delay * 2, ClusterTiming.reconnectMaxMilliseconds)
        }
        reconnects += 1
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: .milliseconds(delay)) {
            if subscriber { link.value.connectSubscriber() } else { link.value.connectCommand() }
        }
    }

    private func updateAvailability() {
        let now = commandReady && subscribed && !stopped
        guard now != available else { return }
        available = now
        if !now { logger.warning("cluster unavailable: new JOINs are refused until redis answers") }
        events?.availability(now)
    }

    /// Once a second: refresh this node's key, check the room-mates' nodes, time out Redis.
    private func heartbeat() {
        if let first = waiting.first, first.deadline < .now() {
            logger.warning("redis did not answer in time; reconnecting")
            command?.close(promise: nil)
            return
        }
        guard commandReady else { return }
        let link = NIOLoopBound(self, eventLoop: eventLoop)
        let started = NIODeadline.now()
        send(heartbeatCommand) { reply in
            if reply != nil { link.value.lastRoundTripNanoseconds = UInt64((NIODeadline.now() - started).nanoseconds) }
            // SET ... GET answers the old value: none means the key had expired, and the other
            // nodes have taken this one for dead meanwhile.
            if reply == .null {
                link.value.logger.warning("this node's heartbeat had expired in redis; registering its seats again")
                link.value.events?.reregister()
            }
        }
        events?.heartbeat()
        // Bounded by the distinct nodes of local room-mates.
        for partnerNode in events?.partnerNodes() ?? [] {
            send([Array("EXISTS".utf8), Array((ClusterWire.nodeKeyPrefix() + partnerNode).utf8)]) { reply in
                if reply == .integer(0) { link.value.events?.nodesGone([partnerNode]) }
            }
        }
    }
}

/// Bytes from Redis to `RESPValue`s (`RESPParser`, bounded; a stream that is not RESP is an
/// error, which closes the connection).
final class RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    struct Invalid: Error {
        var failure: RESPParser.Failure
    }

    private let parser: RESPParser

    /// `bulkMaxBytes`: a SIGNAL is at most the relay's largest frame plus its header; a cap below
    /// that would drop the subscriber connection for one SIGNAL the relay itself accepted.
    init(bulkMaxBytes: Int) {
        parser = RESPParser(bulkMaxBytes: bulkMaxBytes)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch buffer.withUnsafeReadableBytes({ parser.parse($0) }) {
        case .incomplete:
            return .needMoreData
        case let .value(value, length):
            buffer.moveReaderIndex(forwardBy: length)
            context.fireChannelRead(wrapInboundOut(value))
            return .continue
        case let .invalid(failure):
            throw Invalid(failure: failure)
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Hands each value to the link; reports the close; closes on any error.
final class RedisValueHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue

    private let onValue: (RESPValue) -> Void
    private let onClose: () -> Void

    init(onValue: @escaping (RESPValue) -> Void, onClose: @escaping () -> Void) {
        self.onValue = onValue
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onValue(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
