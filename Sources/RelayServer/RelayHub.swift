import ChatCore
import Logging
import NIOCore
import NIOSSL
import RelayCore

/// The relay's NIO shell state, confined to one event loop: the engine (RelayCore's
/// `RelayEngine`, which makes every decision), the handler of each connection by its
/// `ConnectionID`, the list of connections to flush, and the one timer the engine asks for.
///
/// The hub only moves frames into the engine, reads the clock, and carries out the engine's
/// actions: writes (flushed once at the end of a read batch), read pausing, closes.
///
/// Why one event loop for every connection (and so no lock): each engine input touches the
/// state of two connections (the sender and its peer). Spreading connections over several loops
/// would need either a lock around the engine plus a cross-loop `execute` hop for every
/// forwarded frame (the peer's channel lives on another loop), or a second copy of the state.
/// On the 2-core machine this relay is measured on, the load generator needs the other core
/// anyway, so a second relay loop would buy no parallelism and would add a lock and a hop per
/// frame; the multi-loop variant was therefore not built or measured (BENCHMARKS.md says so). A
/// deployment that needs more cores runs more relay processes.
/// Cluster mode's settings (`relay --redis`), resolved before the hub starts.
struct ClusterSetup: Sendable {
    var endpoint: RedisEndpoint
    var password: [UInt8]?
    /// For `rediss://`.
    var sslContext: NIOSSLContext?
    /// The node's name and incarnation (`name.hex8`).
    var identity: String
}

final class RelayHub {
    let configuration: RelayConfiguration
    let eventLoop: any EventLoop
    let metrics: RelayMetrics
    let logger: Logger

    private(set) var engine: RelayEngine<ByteBuffer>
    private var handlers: [ConnectionID: RelayConnectionHandler] = [:]
    /// Connections written to since the last flush; flushed at the end of a read batch, or at
    /// the end of any other input.
    private var pendingFlush: [RelayConnectionHandler] = []
    private var isFlushing = false
    private var isDraining = false
    private var timer: Scheduled<Void>?
    private var timerDeadline: Instant?
    private var shutdownPromise: EventLoopPromise<Void>?
    private var shutdownDone: EventLoopFuture<Void>?
    /// The counts as last copied into `metrics`.
    private var exportedCounters = RelayCounters()
    /// Cluster mode's Redis connections (nil: a single relay).
    private let link: ClusterLink?
    private var exportedLink = (publishErrors: 0, reconnects: 0, malformed: 0)
    /// Pub/sub messages from Redis that did not parse (dropped).
    private var malformedClusterMessages = 0

    init(
        configuration: RelayConfiguration, eventLoop: any EventLoop, metrics: RelayMetrics, logger: Logger,
        cluster: ClusterSetup? = nil
    ) throws(InvalidRelaySetting) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.logger = logger
        if let cluster {
            engine = try RelayEngine(
                limits: configuration.limits, now: Self.now, entropy: SystemEntropy(), clusterNode: cluster.identity)
            link = ClusterLink(
                endpoint: cluster.endpoint, password: cluster.password, sslContext: cluster.sslContext,
                node: cluster.identity, frameSizeMaxBytes: configuration.limits.frameSizeMaxBytes,
                eventLoop: eventLoop, logger: logger)
        } else {
            engine = try RelayEngine(limits: configuration.limits, now: Self.now, entropy: SystemEntropy())
            link = nil
        }
    }

    /// A cluster node that cannot reach Redis (`/healthz` says degraded).
    var isClusterDegraded: Bool { link.map { !$0.isAvailable } ?? false }

    /// The engine's clock: the event loop's monotonic clock.
    static var now: Instant { Instant(nanoseconds: NIODeadline.now().uptimeNanoseconds) }

    /// Arm the engine's first timer (its once-a-second sweep).
    func start() {
        eventLoop.preconditionInEventLoop()
        scheduleTimer()
        guard let link else { return }
        let hub = NIOLoopBound(self, eventLoop: eventLoop)
        link.events = ClusterLink.Events(
            availability: { available in hub.value.clusterInput { $0.clusterAvailabilityChanged(available, now: $1) } },
            message: { payload in hub.value.clusterMessage(payload) },
            messagesRead: { hub.value.endOfReadBatch() },
            nodesGone: { nodes in hub.value.clusterInput { $0.clusterNodesGone(nodes, now: $1) } },
            partnerNodes: { hub.value.engine.clusterPartnerNodes },
            seatRooms: { hub.value.engine.clusterSeatRooms },
            reregister: { hub.value.clusterInput { $0.clusterReregister(now: $1) } },
            heartbeat: { hub.value.clusterInput { $0.clusterHeartbeat(now: $1) } }
        )
        logger.info("cluster node starting", metadata: ["node": "\(link.node)"])
        link.start()
    }

    /// After the shutdown: the last leaves reach Redis, and this node's heartbeat key goes.
    func stopCluster() -> EventLoopFuture<Void> {
        link?.stop() ?? eventLoop.makeSucceededVoidFuture()
    }

    // MARK: Cluster inputs

    /// An input from Redis to the engine; may arrive while actions are being carried out (an
    /// answer given at once because Redis is down): the draining loop takes its actions then.
    private func clusterInput(_ body: (inout RelayEngine<ByteBuffer>, Instant) -> Void) {
        body(&engine, Self.now)
        if !isDraining { run() }
    }

    /// A message on this node's pub/sub channel, inside the subscriber's read batch: like a
    /// client's frame, its actions are carried out now and its writes flushed by
    /// `endOfReadBatch` (`messagesRead`), so a batch of SIGNALs from Redis costs one flush per
    /// receiving connection rather than one per SIGNAL.
    private func clusterMessage(_ payload: ByteBuffer) {
        guard let message = payload.withUnsafeReadableBytes({ ClusterWire.parse($0) }) else {
            malformedClusterMessages += 1
            return
        }
        switch message {
        case let .notice(notice):
            engine.clusterNotice(notice, now: Self.now)
        case let .signal(to, from, bodyOffset, binary):
            // The frame in a buffer of its own: `payload` is a view of the subscriber's read
            // buffer, which a frame queued for a slow receiver would otherwise keep whole.
            let frame = ByteBuffer(bytes: payload.readableBytesView.dropFirst(bodyOffset))
            engine.clusterSignal(to: to, from: from, frame, binary: binary, now: Self.now)
        }
        if !isDraining { drain() }
    }

    private func performCluster(_ command: ClusterCommand<ByteBuffer>) {
        guard let link else { return }
        switch command {
        case let .join(id, request):
            let hub = NIOLoopBound(self, eventLoop: eventLoop)
            let graceMilliseconds = Int64(configuration.limits.seatGraceSeconds) * 1000
            link.join(id, request, graceMilliseconds: graceMilliseconds) { reply in
                hub.value.clusterInput { $0.clusterJoinAnswered(id, request, reply, now: $1) }
            }
        case let .leave(id, room, reserve, partner):
            let graceMilliseconds = reserve ? Int64(configuration.limits.seatGraceSeconds) * 1000 : 0
            link.leave(id, room: room, graceMilliseconds: graceMilliseconds, partner: partner)
        case let .signal(to, from, frame, binary):
            link.publish(to: to, from: from, frame, binary: binary)
        case let .notice(to, notice):
            link.notify(to, notice)
        }
    }

    // MARK: Inputs

    /// A TCP connection was accepted. Returns its handler (to add to the pipeline once upgraded),
    /// or nil when the engine drops it: the caller closes the socket.
    func accept(_ channel: any Channel) -> RelayConnectionHandler? {
        eventLoop.preconditionInEventLoop()
        let address = RelayAddress(channel.remoteAddress)
        let acceptance = engine.accept(from: address, now: Self.now)
        let id = acceptance.id
        let hub = NIOLoopBound(self, eventLoop: eventLoop)
        channel.closeFuture.whenComplete { _ in hub.value.closed(id) }
        if acceptance.disposition != .serve {
            // Addresses only at trace level: the default level never logs who connects.
            logger.debug("connection refused", metadata: ["admission": "\(acceptance.disposition)"])
            logger.trace(
                "connection refused",
                metadata: ["admission": "\(acceptance.disposition)", "address": "\(address.limitsKey)"])
        }
        scheduleTimer()
        if acceptance.disposition == .drop { return nil }
        let handler = RelayConnectionHandler(hub: self, id: id, channel: channel)
        handlers[id] = handler
        return handler
    }

    /// `--trust-proxy proxy-protocol`: the connection's PROXY header named its client (nil: the
    /// proxy's own connection, a health check).
    func proxyHeaderRead(_ id: ConnectionID, client: RelayAddress?) {
        engine.proxyHeaderRead(id, client: client, now: Self.now)
        run()
    }

    /// The pong last written on `id` left for the socket (or the channel closed, which can
    /// report it while an action is being carried out: the loop draining them then takes the
    /// new ones).
    func pongWritten(_ id: ConnectionID) {
        engine.pongWritten(id, now: Self.now)
        if !isDraining { run() }
    }

    func upgraded(_ id: ConnectionID, binarySignals: Bool) {
        engine.upgraded(id, binarySignals: binarySignals, now: Self.now)
        run()
    }

    /// A frame inside a read batch: its writes are flushed by `endOfReadBatch`.
    @inline(__always)
    func receive(_ frame: InboundFrame<ByteBuffer>, from id: ConnectionID) {
        engine.receive(frame, from: id, now: Self.now)
        drain()
    }

    func endOfReadBatch() {
        flushPending()
        scheduleTimer()
    }

    func writabilityChanged(_ id: ConnectionID, isWritable: Bool) {
        engine.writabilityChanged(id, isWritable: isWritable, now: Self.now)
        run()
    }

    func fault(_ fault: TransportFault, on id: ConnectionID) {
        engine.fault(fault, on: id, now: Self.now)
        run()
    }

    func refusedPlainHTTP(_ id: ConnectionID) {
        engine.refusedPlainHTTP(id)
    }

    private func closed(_ id: ConnectionID) {
        // Forgotten first: nothing more is written to a closed channel.
        handlers[id] = nil
        engine.closed(id, now: Self.now)
        run()
    }

    /// Stop serving: the engine tells every peer `SHUTTING_DOWN` with close 1001. Completes when
    /// every TCP connection has closed or after `shutdownGraceSeconds`.
    func shutdown() -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        if let shutdownDone { return shutdownDone }
        let promise = eventLoop.makePromise(of: Void.self)
        shutdownPromise = promise
        shutdownDone = promise.futureResult
        engine.beginShutdown(now: Self.now)
        run()
        return promise.futureResult
    }

    /// Copy the engine's counts into the Prometheus registry and render it.
    func exportMetrics() -> [UInt8] {
        let counters = engine.counters
        metrics.export(counters, since: exportedCounters)
        exportedCounters = counters
        if let link {
            let now = (link.publishErrors, link.reconnects, malformedClusterMessages)
            metrics.exportCluster(
                available: link.isAvailable, roundTripNanoseconds: link.lastRoundTripNanoseconds,
                publishErrors: now.0 - exportedLink.publishErrors, reconnects: now.1 - exportedLink.reconnects,
                malformed: now.2 - exportedLink.malformed)
            exportedLink = (now.0, now.1, now.2)
        }
        return metrics.exposition()
    }

    // MARK: Carrying out actions

    /// After any input outside a read batch: actions, flush, timer.
    private func run() {
        drain()
        flushPending()
        scheduleTimer()
    }

    private func drain() {
        // Bounded by what the inputs queued: a few actions per frame, at most a few per
        // connection for a sweep or a shutdown. Carrying one out may report new inputs
        // (writability changes inside a write or flush); theirs queue behind and are drained here.
        let wasDraining = isDraining
        isDraining = true
        defer { isDraining = wasDraining }
        while let action = engine.nextAction() {
            perform(action)
        }
    }

    private func perform(_ action: RelayAction<ByteBuffer>) {
        switch action {
        case let .forward(id, frame):
            guard let handler = handlers[id] else { return }
            handler.write(.text, frame)
            markForFlush(handler)
        case let .forwardBinary(id, frame):
            guard let handler = handlers[id] else { return }
            handler.write(.binary, frame)
            markForFlush(handler)
        case let .send(id, message):
            guard let handler = handlers[id] else { return }
            handler.write(.text, handler.channel.allocator.buffer(bytes: WireCodec.encode(message)))
            markForFlush(handler)
        case let .pong(id, payload):
            guard let handler = handlers[id] else { return }
            handler.writePong(payload)
            markForFlush(handler)
        case let .ping(id):
            guard let handler = handlers[id] else { return }
            handler.write(.ping, ByteBuffer())
            markForFlush(handler)
        case let .close(id, code, error, disconnectWhenWritten):
            if error == .idleTimeout { logger.debug("closing an idle connection") }
            handlers[id]?.close(code: code, error: error, disconnectWhenWritten: disconnectWhenWritten)
        case let .disconnect(id):
            handlers[id]?.channel.close(promise: nil)
        case let .pauseReading(id):
            handlers[id]?.pauseReading()
        case let .resumeReading(id):
            handlers[id]?.resumeReading()
        case .shutdownComplete:
            shutdownPromise?.succeed(())
            shutdownPromise = nil
        case let .cluster(command):
            performCluster(command)
        }
    }

    private func markForFlush(_ handler: RelayConnectionHandler) {
        guard !handler.flushPending else { return }
        handler.flushPending = true
        pendingFlush.append(handler)
    }

    /// Flush every connection written to since the last flush.
    private func flushPending() {
        // A flush can report writability (inline), whose actions may mark more connections:
        // the loop below picks those up rather than a nested flush.
        guard !isFlushing, !pendingFlush.isEmpty else { return }
        isFlushing = true
        var index = 0
        // Bounded: a connection is re-added only if written to again by an input reported
        // during this flush, and writability inputs write nothing of their own.
        while index < pendingFlush.count {
            let handler = pendingFlush[index]
            index += 1
            handler.flushPending = false
            handler.flushNow()
        }
        pendingFlush.removeAll(keepingCapacity: true)
        isFlushing = false
    }

    /// Keep one task scheduled on the event loop for the engine's earliest deadline.
    private func scheduleTimer() {
        guard let deadline = engine.pollTimeout() else { return }
        // One already due no later fires first, and reschedules for what is left.
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        let hub = NIOLoopBound(self, eventLoop: eventLoop)
        timer = eventLoop.scheduleTask(deadline: .uptimeNanoseconds(deadline.nanoseconds)) {
            hub.value.timerFired()
        }
    }

    private func timerFired() {
        timer = nil
        timerDeadline = nil
        engine.handleTimeout(now: Self.now)
        run()
    }
}
