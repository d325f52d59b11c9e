import ChatCore
import DequeModule
import HeapModule

/// The relay's decisions, sans-IO: admission, per-connection policy (token buckets, holding of
/// frames over the rate, `RATE_LIMITED`, pings and the idle timeout, pausing reads for the rate
/// limit and for the room-mate's backpressure, every close and its code), shutdown, and the one
/// entry point to the room logic (`RelayRooms`).
///
/// The shell (the NIO relay, or the simulator) reports what happened, each input with `now`, and
/// carries out the actions it drains with `nextAction()`, in order; it asks `pollTimeout()` when
/// to call `handleTimeout(now:)`. Everything is counted in `counters`. The engine never reads a
/// clock, opens a socket, or lets dictionary order reach an output (whole-relay walks go in
/// `ConnectionID` order).
///
/// Every accepted connection goes: `accept` → (`upgraded` → frames …) → `closed`. The shell must
/// report `closed` exactly once for each accepted connection, whatever its state; inputs about an
/// unknown connection are ignored.
///
/// `Frame` is whatever holds a payload in the shell (`ByteBuffer` in NIO, zero-copy; `[UInt8]`
/// in the simulator): a frame held for the rate limit and then forwarded is the same value.
public struct RelayEngine<Frame: RelayFrameBytes> {
    /// The limits this engine enforces.
    public let limits: RelayLimits
    /// The room logic (read-only: every change goes through the engine).
    public internal(set) var rooms: RelayRooms<ConnectionID>

    var storedCounters = RelayCounters()
    var connections: [ConnectionID: ConnectionRecord<Frame>] = [:]
    var addresses: [AddressKey: AddressEntry] = [:]
    var nextConnectionID: UInt64 = 1
    /// Actions not yet drained, oldest first. A deque, so that draining moves each action out
    /// (no copy, no later destroy) and the storage is reused (it does not shrink).
    var actions = Deque<RelayAction<Frame>>()
    var timers = Heap<TimerEntry>()
    /// Connections whose outbound queue the shell reported over the high watermark (usually none).
    var overWatermark = Set<ConnectionID>()
    var phase: Phase

    enum Phase {
        /// Serving; the next sweep (pings, idle timeouts, pruning) is due then.
        case running(nextSweep: Instant)
        /// Every connection was told `SHUTTING_DOWN`; the shutdown ends at the deadline at the latest.
        case shuttingDown(deadline: Instant)
        /// `.shutdownComplete` was emitted.
        case stopped
    }

    /// An engine enforcing `limits`, which must pass `validate()`.
    public init(limits: RelayLimits, now: Instant) throws(InvalidRelaySetting) {
        try limits.validate()
        self.init(uncheckedLimits: limits, now: now)
    }

    /// An engine enforcing `limits` without validating them: for the simulator's planted relay
    /// bug, a message bucket that never refills (`messagesPerSecond = 0`), which no validated
    /// configuration allows. Such a bucket holds the frames over its burst until the connection
    /// ends (no release timer is ever armed for it). Every count must still be non-negative and
    /// each burst at least 1 (`TokenBucket`'s preconditions).
    @_spi(Simulation)
    public init(uncheckedLimits limits: RelayLimits, now: Instant) {
        self.limits = limits
        rooms = RelayRooms(limits: limits.roomLimits)
        phase = .running(nextSweep: now.advanced(by: .seconds(RelayLimits.sweepIntervalSeconds)))
        actions.reserveCapacity(16)
    }

    // MARK: Outputs

    /// The next action to carry out, oldest first; nil when there is none. An action may be
    /// carried out while others wait (the shell may report new inputs meanwhile: their actions
    /// queue behind).
    public mutating func nextAction() -> RelayAction<Frame>? {
        actions.popFirst()
    }

    /// Every count, for the metrics.
    public var counters: RelayCounters {
        var counters = storedCounters
        counters.roomsOpen = rooms.roomCount
        return counters
    }

    /// TCP connections accepted and not yet reported closed, in any state.
    public var openConnectionCount: Int { storedCounters.connectionsOpen }

    /// Whether `beginShutdown` was called.
    public var isShuttingDown: Bool {
        if case .running = phase { return false }
        return true
    }

    // MARK: Connection lifecycle

    /// A TCP connection was accepted from `address`: number it, count it and decide.
    public mutating func accept(from address: RelayAddress, now: Instant) -> Acceptance {
        let id = ConnectionID(nextConnectionID)
        nextConnectionID += 1
        storedCounters.connectionsAccepted += 1
        storedCounters.connectionsOpen += 1
        let (disposition, countedUnder) = admit(address, now: now)
        switch disposition {
        case .serve:
            upgrading(id, countedUnder: countedUnder, refusal: nil, now: now)
        case let .refuse(code, reason):
            upgrading(id, countedUnder: countedUnder, refusal: (code, reason), now: now)
        case .drop:
            connections[id] = ConnectionRecord(countedUnder: countedUnder, state: .disconnecting)
        }
        return Acceptance(id: id, disposition: disposition)
    }

    private mutating func upgrading(
        _ id: ConnectionID, countedUnder: AddressKey?, refusal: (RelayErrorCode, RejectionReason)?, now: Instant
    ) {
        let deadline = now.advanced(by: .seconds(limits.handshakeTimeoutSeconds))
        connections[id] = ConnectionRecord(
            countedUnder: countedUnder, state: .upgrading(Upgrading(deadline: deadline, refusal: refusal)))
        timers.insert(TimerEntry(deadline: deadline, connection: id))
    }

    private mutating func admit(
        _ address: RelayAddress, now: Instant
    ) -> (Acceptance.Disposition, countedUnder: AddressKey?) {
        let open = storedCounters.connectionsOpen
        if isShuttingDown { return (.drop, nil) }
        if open > limits.connectionsMax + RelayLimits.refusalSlack { return (.drop, nil) }
        if open > limits.connectionsMax { return (.refuse(.tooManyConnections, .connectionsMax), nil) }
        let key = address.limitsKey
        if addresses[key] == nil {
            guard addresses.count < limits.addressesTrackedMax else {
                return (.refuse(.tooManyConnections, .connectionsMax), nil)
            }
            let perMinute = UInt64(limits.joinsPerAddressPerMinute)
            addresses[key] = AddressEntry(
                openConnections: 0,
                joinBucket: TokenBucket(
                    ratePerSecond: perMinute, burst: perMinute * RelayLimits.joinCostTokens, now: now)
            )
        }
        addresses[key]!.openConnections += 1
        if addresses[key]!.openConnections > limits.connectionsPerAddressMax {
            return (.refuse(.tooManyConnections, .connectionsPerAddressMax), key)
        }
        return (.serve, key)
    }

    /// The connection finished its TLS and WebSocket upgrade.
    public mutating func upgraded(_ id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id),
            case let .upgrading(upgrading) = connections.values[index].state
        else { return }
        if let refusal = upgrading.refusal {
            storedCounters.reject(refusal.reason)
            close(id, .tryAgainLater, error: refusal.code, now: now)
        } else if isShuttingDown {
            close(id, .goingAway, error: .shuttingDown, now: now)
        } else {
            connections.values[index].state = .serving(Serving(limits: limits, now: now))
            storedCounters.webSocketsOpen += 1
        }
    }

    /// A plain HTTP request (no upgrade) arrived on the WebSocket port; the shell answers it with
    /// `426 Upgrade Required` and closes. Counted only.
    public mutating func refusedPlainHTTP(_ id: ConnectionID) {
        guard connections[id] != nil else { return }
        storedCounters.reject(.notWebSocket)
    }

    /// The shell's report that the connection's outbound queue crossed a watermark: not writable
    /// above the high one, writable again below the low one.
    public mutating func writabilityChanged(_ id: ConnectionID, isWritable: Bool, now: Instant) {
        guard connections.index(forKey: id) != nil else { return }
        if isWritable {
            overWatermark.remove(id)
        } else {
            overWatermark.insert(id)
        }
        guard case .serving = connections[id]?.state, let mate = rooms.peer(of: id) else { return }
        // The room-mate is what fills this queue: stop reading it while the queue is over the
        // mark, so a slow reader costs the relay at most the mark plus one read batch.
        if isWritable {
            resumeAfterBackpressure(mate, now: now)
        } else {
            pause(mate, .peerBackpressure)
        }
    }

    /// The TCP connection is gone (whatever its state). Frames it sent that were held for the
    /// rate limit still go to its peer: the limit paces a live sender; it must not drop a
    /// departed one's last acknowledgements.
    public mutating func closed(_ id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        let held = connections.values[index].withServing { serving in
            defer {
                serving.held = []
                serving.heldBytes = 0
            }
            return serving.held
        }
        if let held {
            // Bounded by the frames held (`RelayLimits.heldBytesMax`).
            for frame in held { process(frame, from: id, now: now) }
            leaveRooms(id, now: now)
        }
        guard let record = connections.removeValue(forKey: id) else { return }
        overWatermark.remove(id)
        storedCounters.connectionsOpen -= 1
        if let key = record.countedUnder, var entry = addresses[key] {
            entry.openConnections -= 1
            addresses[key] = entry
        }
        if case .shuttingDown = phase, storedCounters.connectionsOpen == 0 { finishShutdown() }
    }

    /// Stop serving: every served connection gets `SHUTTING_DOWN` and close 1001; accepts are
    /// dropped from now on. `.shutdownComplete` follows when every connection has closed, or
    /// after `shutdownGraceSeconds`.
    public mutating func beginShutdown(now: Instant) {
        guard case .running = phase else { return }
        phase = .shuttingDown(deadline: now.advanced(by: .seconds(limits.shutdownGraceSeconds)))
        for id in connections.keys.sorted() {
            guard case .serving = connections[id]?.state else { continue }
            close(id, .goingAway, error: .shuttingDown, now: now)
        }
        if storedCounters.connectionsOpen == 0 { finishShutdown() }
    }

    mutating func finishShutdown() {
        phase = .stopped
        actions.append(.shutdownComplete)
    }

    // MARK: Closing

    /// Start the close handshake: an optional `ERROR`, then a close frame with `code`. The
    /// connection leaves its room at once (its room-mate learns now that it left), anything held
    /// is dropped, and reads resume so the client's answer is seen (and the kernel does not reset
    /// the connection over unread bytes before the client has the close). TCP closes when the
    /// client answers, or after `closeHandshakeTimeoutSeconds`.
    mutating func close(
        _ id: ConnectionID, _ code: CloseCode, error: RelayErrorCode?, disconnectWhenWritten: Bool = false,
        now: Instant
    ) {
        guard let index = connections.index(forKey: id) else { return }
        let wasServing: Serving<Frame>?
        switch connections.values[index].state {
        case let .serving(serving): wasServing = serving
        case .upgrading: wasServing = nil
        case .closing, .disconnecting, .modifying: return
        }
        let deadline = now.advanced(by: .seconds(RelayLimits.closeHandshakeTimeoutSeconds))
        connections.values[index].state = .closing(Closing(deadline: deadline))
        timers.insert(TimerEntry(deadline: deadline, connection: id))
        actions.append(.close(id, code, error: error, disconnectWhenWritten: disconnectWhenWritten))
        guard let wasServing else { return }
        leaveRooms(id, now: now)
        if !wasServing.pauseReasons.isEmpty { actions.append(.resumeReading(id)) }
    }

    /// A served connection stops being served: it leaves its room, the peer is told (except at
    /// shutdown, where every peer is told `SHUTTING_DOWN` and a `PEER_LEFT` first would mislead),
    /// and the peer reads again if it was paused for this connection's backpressure.
    private mutating func leaveRooms(_ id: ConnectionID, now: Instant) {
        storedCounters.webSocketsOpen -= 1
        let mate = rooms.peer(of: id)
        let roomActions = rooms.disconnect(id)
        if !isShuttingDown { perform(roomActions) }
        if let mate { resumeAfterBackpressure(mate, now: now) }
    }

    /// Close TCP now. A served connection stays served until `closed` (which sends on what it
    /// held, as for a reset); any other is ignored from now on.
    mutating func disconnect(_ id: ConnectionID) {
        guard let index = connections.index(forKey: id) else { return }
        switch connections.values[index].state {
        case .disconnecting, .modifying: return
        case .serving: break
        case .upgrading, .closing: connections.values[index].state = .disconnecting
        }
        actions.append(.disconnect(id))
    }
}
