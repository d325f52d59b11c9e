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
    /// Where reconnect tokens come from (`SystemEntropy` in the relay; seeded in the simulator).
    let entropy: any EntropySource
    /// The room logic (read-only: every change goes through the engine).
    public internal(set) var rooms: RelayRooms<ConnectionID>

    var storedCounters = RelayCounters()
    var connections: [ConnectionID: ConnectionRecord<Frame>] = [:]
    var addresses: [AddressKey: AddressEntry] = [:]
    /// Open connections per wider IPv6 prefix (/56 and /48 keys); an entry goes with its last one.
    var prefixConnections: [AddressKey: Int] = [:]
    var nextConnectionID: UInt64 = 1
    /// Actions not yet drained, oldest first. A deque, so that draining moves each action out
    /// (no copy, no later destroy) and the storage is reused (it does not shrink).
    var actions = Deque<RelayAction<Frame>>()
    var timers = Heap<TimerEntry>()
    /// Connections whose outbound queue the shell reported over the high watermark (usually none).
    var overWatermark = Set<ConnectionID>()
    var phase: Phase
    /// Cluster mode (`relay --redis`): the node's seats; nil for a single relay, which keeps
    /// every room in `rooms`.
    var cluster: ClusterState?

    enum Phase {
        /// Serving; the next sweep (pings, idle timeouts, pruning) is due then.
        case running(nextSweep: Instant)
        /// Every connection was told `SHUTTING_DOWN`; the shutdown ends at the deadline at the latest.
        case shuttingDown(deadline: Instant)
        /// `.shutdownComplete` was emitted.
        case stopped
    }

    /// An engine enforcing `limits`, which must pass `validate()`, drawing reconnect tokens from
    /// `entropy`.
    public init(limits: RelayLimits, now: Instant, entropy: any EntropySource) throws(InvalidRelaySetting) {
        try limits.validate()
        self.init(uncheckedLimits: limits, now: now, entropy: entropy)
    }

    /// A node of a cluster relay, `clusterNode` its identity in Redis: rooms are Redis's
    /// (`ClusterCommand`s out, answers in); nothing is served until `clusterAvailabilityChanged`.
    public init(
        limits: RelayLimits, now: Instant, entropy: any EntropySource, clusterNode: String
    ) throws(InvalidRelaySetting) {
        try self.init(limits: limits, now: now, entropy: entropy)
        cluster = ClusterState(node: clusterNode)
    }

    /// An engine enforcing `limits` without validating them: for the simulator's planted relay
    /// bug, a message bucket that never refills (`messagesPerSecond = 0`), which no validated
    /// configuration allows. Such a bucket holds the frames over its burst until the connection
    /// ends (no release timer is ever armed for it). Every count must still be non-negative and
    /// each burst at least 1 (`TokenBucket`'s preconditions).
    @_spi(Simulation)
    public init(uncheckedLimits limits: RelayLimits, now: Instant, entropy: any EntropySource) {
        self.limits = limits
        self.entropy = entropy
        rooms = RelayRooms(limits: limits.roomLimits)
        phase = .running(nextSweep: now.advanced(by: .seconds(RelayLimits.sweepIntervalSeconds)))
        actions.reserveCapacity(16)
    }

    /// As `init(uncheckedLimits:now:entropy:)`, for a simulator written before reconnect tokens:
    /// tokens come from a fixed-seed counter (deterministic, and so predictable: a squatter could
    /// guess them, which is why no relay may use this). Pass the simulation's seeded source instead
    /// where there is one.
    @_spi(Simulation)
    public init(uncheckedLimits limits: RelayLimits, now: Instant) {
        self.init(uncheckedLimits: limits, now: now, entropy: CountingEntropy())
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
        if let cluster {
            counters.roomsOpen = Set(cluster.seats.values.map(\.room)).count
        } else {
            counters.roomsOpen = rooms.roomCount
            counters.seatsReserved = rooms.reservedSeatCount
        }
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

    /// The connection finished its TLS and WebSocket upgrade; `binarySignals`: the client offered
    /// `securechat.binary` and the shell selected it in its 101 response (docs/PROTOCOL.md).
    public mutating func upgraded(_ id: ConnectionID, binarySignals: Bool = false, now: Instant) {
        guard let index = connections.index(forKey: id),
            case let .upgrading(upgrading) = connections.values[index].state
        else { return }
        connections.values[index].binarySignals = binarySignals
        if upgrading.awaitsProxyHeader {
            // The shell reads the PROXY header before anything else; an upgrade without one
            // means there was none.
            fault(.badProxyHeader, on: id, now: now)
        } else if let refusal = upgrading.refusal {
            storedCounters.reject(refusal.reason)
            close(id, .tryAgainLater, error: refusal.code, now: now)
        } else if isShuttingDown {
            close(id, .goingAway, error: .shuttingDown, now: now)
        } else {
            let serving = Serving<Frame>(limits: limits, now: now)
            if let deadline = serving.joinDeadline { timers.insert(TimerEntry(deadline: deadline, connection: id)) }
            connections.values[index].state = .serving(serving)
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
        guard case .serving = connections[id]?.state else { return }
        // Its own client is not reading: stop reading it too, or every ping, JOIN or bad frame
        // it sends is answered into a queue that never drains.
        if isWritable {
            unpause(id, .ownBackpressure, now: now)
        } else {
            pause(id, .ownBackpressure)
        }
        guard let mate = localMate(of: id) else { return }
        // The room-mate is what fills this queue: stop reading it while the queue is over the
        // mark, so a slow reader costs the relay at most the mark plus one read batch.
        if isWritable {
            unpause(mate, .peerBackpressure, now: now)
        } else {
            pause(mate, .peerBackpressure)
        }
    }

    /// The TCP connection is gone (whatever its state). Frames it sent that were held for the
    /// rate limit still go to its peer (a burst's worth, `messageBurst`, the oldest first): the
    /// limit paces a live sender; it must not drop a departed one's last acknowledgements. More
    /// than a burst is a flood, not a session's last words, and processing all of it at once
    /// stalled every other room (a megabyte of tiny frames is tens of thousands).
    public mutating func closed(_ id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        let held = connections.values[index].withServing { serving in
            defer {
                serving.held = []
                serving.heldBytes = 0
            }
            return serving.held
        }
        // Bounded by the message burst.
        for frame in (held ?? []).prefix(limits.messageBurst) { process(frame, from: id, now: now) }
        // Gone without a close frame: its seat waits for its reconnect token. (A held frame
        // may have closed it already, for its protocol errors: it has left then.)
        if case .serving = connections[id]?.state { leaveRooms(id, now: now, freeSeat: false) }
        guard let record = connections.removeValue(forKey: id) else { return }
        overWatermark.remove(id)
        storedCounters.connectionsOpen -= 1
        uncount(record)
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
    /// client answers, or after `closeHandshakeTimeoutSeconds`. The seat is reserved for the
    /// client's reconnect token unless `freeSeat` (the client said goodbye itself).
    mutating func close(
        _ id: ConnectionID, _ code: CloseCode, error: RelayErrorCode?, disconnectWhenWritten: Bool = false,
        freeSeat: Bool = false, now: Instant
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
        leaveRooms(id, now: now, freeSeat: freeSeat)
        if !wasServing.pauseReasons.isEmpty { actions.append(.resumeReading(id)) }
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

/// SplitMix64 over a counter from zero: the same bytes in every run. Only for
/// `RelayEngine.init(uncheckedLimits:now:)` (simulations).
final class CountingEntropy: EntropySource {
    private var state: UInt64 = 0

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        for index in buffer.indices {
            if index % 8 == 0 {
                state &+= 0x9E37_79B9_7F4A_7C15
            }
            var mixed = state
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            mixed ^= mixed >> 31
            buffer[index] = UInt8(truncatingIfNeeded: mixed >> (8 * UInt64(index % 8)))
        }
    }
}
