import ChatCore
import Logging
import NIOCore

/// The relay's shared state, confined to one event loop: the room logic, the registry of open
/// WebSocket connections, per-address accounting, and the list of channels to flush.
///
/// Why one event loop for every connection (and so no lock): ChatCore's `RelayRooms` is a struct
/// whose every input touches the state of two connections (the sender and its peer). Spreading
/// connections over several loops would need either a lock around the rooms plus a cross-loop
/// `execute` hop for every forwarded frame (the peer's channel lives on another loop), or a
/// second copy of the state. On the 2-core machine this relay is measured on, the load
/// generator needs the other core anyway, so a second relay loop would buy no parallelism and
/// would add a lock and a hop per frame; the multi-loop variant was therefore not built or
/// measured (BENCHMARKS.md says so). A deployment that needs more cores runs more relay processes.
final class RelayHub {
    /// What to do with a newly accepted TCP connection.
    enum Admission: Equatable {
        /// Serve it.
        case admit
        /// Finish the WebSocket upgrade, answer `ERROR` with this code, and close with 1013.
        case refuse(RelayErrorCode, RejectionReason)
        /// Far over the caps: close the socket at once, spending nothing on it.
        case drop
    }

    /// Per-IP-address accounting. An entry lives while the address has open connections or a
    /// join bucket that is not yet full again (so disconnecting does not reset the join rate).
    struct AddressState {
        var openConnections: Int
        var joinBucket: TokenBucket
    }

    let configuration: RelayConfiguration
    let eventLoop: any EventLoop
    let metrics: RelayMetrics
    let logger: Logger

    private(set) var rooms: RelayRooms<ConnectionID>
    private var connections: [ConnectionID: RelayConnectionHandler] = [:]
    private var addresses: [String: AddressState] = [:]
    /// TCP connections open in any state (handshaking, refused, serving, closing).
    private(set) var openConnectionCount = 0
    private var nextConnectionID: UInt64 = 1
    /// Connections written to during the current read batch; flushed once at its end.
    private var pendingFlush: [RelayConnectionHandler] = []
    private(set) var isShuttingDown = false
    private var sweepTask: RepeatedTask?

    /// Accepted connections beyond the caps that still get a typed answer; past this many
    /// more, sockets are closed without one (a flood must not cost a handshake each).
    static let refusalSlack = 256
    /// The most addresses tracked at once (each costs a few dozen bytes).
    var addressesTrackedMax: Int { configuration.connectionsMax * 4 }

    init(configuration: RelayConfiguration, eventLoop: any EventLoop, metrics: RelayMetrics, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.logger = logger
        self.rooms = RelayRooms(limits: configuration.roomLimits)
    }

    /// The injected clock of ChatCore types, read from the event loop's monotonic clock.
    var now: Instant { Instant(nanoseconds: NIODeadline.now().uptimeNanoseconds) }

    // MARK: Connection lifecycle

    /// A TCP connection was accepted from `address` (its IP, no port). Counts it and decides.
    func accept(address: String) -> Admission {
        eventLoop.preconditionInEventLoop()
        openConnectionCount += 1
        metrics.connectionsAccepted.increment()
        metrics.connectionsOpen.increment()
        let admission = admit(address: address)
        if admission != .admit {
            // Addresses only at trace level: the default level never logs who connects.
            logger.debug("connection refused", metadata: ["admission": "\(admission)"])
            logger.trace("connection refused", metadata: ["admission": "\(admission)", "address": "\(address)"])
        }
        return admission
    }

    private func admit(address: String) -> Admission {
        if isShuttingDown { return .drop }
        if openConnectionCount > configuration.connectionsMax + Self.refusalSlack { return .drop }
        if openConnectionCount > configuration.connectionsMax {
            return .refuse(.tooManyConnections, .connectionsMax)
        }
        if addresses[address] == nil {
            guard addresses.count < addressesTrackedMax else { return .refuse(.tooManyConnections, .connectionsMax) }
            let perMinute = UInt64(configuration.joinsPerAddressPerMinute)
            // TokenBucket counts whole tokens per second: one join costs 60 tokens, refilled at
            // `perMinute` tokens per second, so any per-minute rate is exact.
            addresses[address] = AddressState(
                openConnections: 0,
                joinBucket: TokenBucket(ratePerSecond: perMinute, burst: perMinute * 60, now: now)
            )
        }
        addresses[address]!.openConnections += 1
        if addresses[address]!.openConnections > configuration.connectionsPerAddressMax {
            return .refuse(.tooManyConnections, .connectionsPerAddressMax)
        }
        return .admit
    }

    /// The TCP connection from `address` closed (whatever its state was).
    func connectionClosed(address: String) {
        eventLoop.preconditionInEventLoop()
        precondition(openConnectionCount > 0, "more closes than accepts")
        openConnectionCount -= 1
        metrics.connectionsOpen.decrement()
        if var state = addresses[address] {
            precondition(state.openConnections > 0, "more closes than accepts for an address")
            state.openConnections -= 1
            addresses[address] = state
        }
    }

    /// A connection finished its WebSocket upgrade and will be served.
    func register(_ handler: RelayConnectionHandler) -> ConnectionID {
        eventLoop.preconditionInEventLoop()
        let id = ConnectionID(nextConnectionID)
        nextConnectionID += 1
        connections[id] = handler
        metrics.webSocketsOpen.increment()
        return id
    }

    /// A registered connection is gone: leave its room, tell the peer, forget it.
    func unregister(_ id: ConnectionID) {
        eventLoop.preconditionInEventLoop()
        guard connections.removeValue(forKey: id) != nil else { return }
        metrics.webSocketsOpen.decrement()
        let peer = rooms.peer(of: id)
        let actions = rooms.disconnect(id)
        // At shutdown every peer is told SHUTTING_DOWN; a PEER_LEFT before it would mislead.
        if !isShuttingDown { perform(actions) }
        metrics.roomsOpen.set(Int64(rooms.roomCount))
        // The peer may have been paused waiting for this connection to drain.
        if let peer, let handler = connections[peer] { handler.resumeAfterBackpressure() }
        flushPending()
    }

    // MARK: Frames

    /// A text frame from a registered connection, after its rate limits admitted it. Returns the
    /// connection it was forwarded to, if any (the caller checks that one's backpressure).
    @discardableResult
    func receive(frame: ByteBuffer, from id: ConnectionID) -> RelayConnectionHandler? {
        let decoded: ClientFrame
        do {
            decoded = try frame.withUnsafeReadableBytes { bytes throws(WireError) in
                try WireCodec.inspectClientFrame(bytes, limits: rooms.limits.wire)
            }
        } catch {
            metrics.reject(RejectionReason(error.relayErrorCode))
            send(.error(code: error.relayErrorCode, message: error.description), to: id)
            return nil
        }
        switch decoded {
        case let .join(room):
            join(room, from: id)
            return nil
        case .signal:
            var forwardedTo: RelayConnectionHandler?
            for action in rooms.signal(from: id) {
                switch action {
                case let .forward(to: peer):
                    forwardedTo = forward(frame, to: peer)
                case let .send(to: target, message):
                    if case let .error(code, _) = message { metrics.reject(RejectionReason(code)) }
                    send(message, to: target)
                }
            }
            return forwardedTo
        }
    }

    private func join(_ room: RoomCode, from id: ConnectionID) {
        // A repeated JOIN of the same room is a client's retransmission: not a new join.
        if rooms.room(of: id) != room, let handler = connections[id] {
            let address = handler.address
            if var state = addresses[address] {
                let admitted = state.joinBucket.tryConsume(60, now: now)
                addresses[address] = state
                guard admitted else {
                    metrics.reject(.joinRateLimited)
                    send(.error(code: .joinRateLimited, message: RelayErrorCode.joinRateLimited.defaultMessage), to: id)
                    return
                }
            }
        }
        let actions = rooms.join(id, room: room)
        metrics.roomsOpen.set(Int64(rooms.roomCount))
        perform(actions)
    }

    private func perform(_ actions: [RelayRooms<ConnectionID>.Action]) {
        for action in actions {
            switch action {
            case let .send(to: target, message):
                if case let .error(code, _) = message { metrics.reject(RejectionReason(code)) }
                send(message, to: target)
            case .forward:
                // Only SIGNALs forward, and `receive` handles those itself with the frame at hand.
                assertionFailure("a forward outside a SIGNAL")
            }
        }
    }

    private func forward(_ frame: ByteBuffer, to peer: ConnectionID) -> RelayConnectionHandler? {
        guard let handler = connections[peer] else { return nil }
        metrics.framesForwarded.increment()
        metrics.bytesForwarded.increment(by: Int64(frame.readableBytes))
        handler.writeText(frame)
        markForFlush(handler)
        return handler
    }

    /// Send a relay message to a registered connection (buffered until the batch's flush).
    func send(_ message: RelayMessage, to id: ConnectionID) {
        guard let handler = connections[id] else { return }
        handler.writeText(handler.allocator.buffer(bytes: WireCodec.encode(message)))
        markForFlush(handler)
    }

    func markForFlush(_ handler: RelayConnectionHandler) {
        guard !handler.flushPending else { return }
        handler.flushPending = true
        // Bounded: each open connection appears at most once (flushPending guards it).
        precondition(pendingFlush.count < openConnectionCount, "flush list larger than the connection count")
        pendingFlush.append(handler)
    }

    /// Flush every connection written to since the last flush (called at the end of a read batch).
    func flushPending() {
        guard !pendingFlush.isEmpty else { return }
        let handlers = pendingFlush
        pendingFlush.removeAll(keepingCapacity: true)
        for handler in handlers {
            handler.flushPending = false
            handler.flushNow()
        }
    }

    /// The other peer in `id`'s room, if registered.
    func peerHandler(of id: ConnectionID) -> RelayConnectionHandler? {
        rooms.peer(of: id).flatMap { connections[$0] }
    }

    // MARK: Timers and shutdown

    /// Start the once-a-second sweep: pings, idle timeouts, pruning of address entries.
    func startSweeping() {
        eventLoop.preconditionInEventLoop()
        let hub = NIOLoopBound(self, eventLoop: eventLoop)
        sweepTask = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            hub.value.sweep()
        }
    }

    private func sweep() {
        let now = self.now
        let pingIntervalNanoseconds = UInt64(configuration.pingIntervalSeconds) * 1_000_000_000
        let idleNanoseconds = UInt64(configuration.idleTimeoutSeconds) * 1_000_000_000
        // Order does not reach any output that matters (each connection is judged alone), but
        // walk in ID order anyway so that behaviour is reproducible.
        for id in connections.keys.sorted() {
            connections[id]?.tick(
                now: now, pingIntervalNanoseconds: pingIntervalNanoseconds, idleNanoseconds: idleNanoseconds)
        }
        flushPending()
        pruneAddresses(now: now)
    }

    private func pruneAddresses(now: Instant) {
        let burst = UInt64(configuration.joinsPerAddressPerMinute) * 60
        addresses = addresses.filter { _, state in
            var bucket = state.joinBucket
            return state.openConnections > 0 || bucket.available(now: now) < burst
        }
    }

    /// Stop serving: every registered connection gets `SHUTTING_DOWN` and close 1001. Returns when
    /// every TCP connection has closed or after `shutdownGraceSeconds`.
    func shutdown() -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        isShuttingDown = true
        sweepTask?.cancel()
        for id in connections.keys.sorted() {
            connections[id]?.close(code: .goingAway, error: .shuttingDown)
        }
        flushPending()
        let done = eventLoop.makePromise(of: Void.self)
        let deadline = NIODeadline.now() + .seconds(Int64(configuration.shutdownGraceSeconds))
        waitForClosures(until: deadline, promise: done)
        return done.futureResult
    }

    private func waitForClosures(until deadline: NIODeadline, promise: EventLoopPromise<Void>) {
        if openConnectionCount == 0 || NIODeadline.now() >= deadline {
            promise.succeed(())
            return
        }
        let hub = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: .milliseconds(20)) {
            hub.value.waitForClosures(until: deadline, promise: promise)
        }
    }
}
