@_spi(Simulation) import ChatCore
import HeapModule
import RelayCore

/// One deterministic run: many virtual clients and one virtual relay on a virtual clock, over a
/// lossy virtual network, from one seed.
///
/// Only the clock, the network and the entropy are simulated. Each client is ChatCore's real
/// `SessionManager` (with a reconnect policy around it, as a shell has); the relay is ChatCore's
/// real `RelayRooms` (with the connection handling around it, as the relay shell has). Everything
/// random comes from streams of one seeded generator; events are ordered by (virtual time, sequence
/// number), so ties break the same way in every run; nothing iterates a Set or Dictionary.
///
/// A run has two phases (TigerBeetle's VOPR): a fault phase in which frames are dropped, duplicated,
/// delayed and reordered, connections reset, links partition, the relay crashes and clients restart;
/// then a liveness phase in which every fault heals and every session must converge within a bound.
/// The invariants (`Invariant`) are checked after every event; the first violation stops the run.
public final class Simulation {
    public let settings: ResolvedSettings
    private let options: SimulationOptions

    // Clock and queue.
    private var queue = Heap<ScheduledEvent>()
    private var nextSequence: UInt64 = 0
    private var now: UInt64 = 0
    private var faultPhaseEnd: UInt64
    private var livenessDeadline: UInt64 = .max
    private var healed = false
    private var finished = false

    // Random streams (see Xoshiro256.Stream).
    private var networkRandom: Xoshiro256
    private var faultRandom: Xoshiro256
    private var workloadRandom: Xoshiro256
    private var reconnectRandom: Xoshiro256
    private var plantedRandom: Xoshiro256

    // Participants.
    private var clients: [VirtualClient] = []
    private var relayUp = true
    private var rooms: RelayRooms<UInt64>
    /// The connections the relay answered JOINED on, per room: the checker's own count, kept from
    /// what the relay said rather than from `RelayRooms`' internals.
    private var roomMembers: [[UInt64]]
    private var nextConnectionSerial: UInt64 = 1

    // Authentication.
    /// Each room's password (its code's words) when the run has passwords; empty otherwise.
    private var roomPasswords: [Password] = []
    /// The malicious relay's endpoint toward each client (`--mitm`), by client index.
    private var endpoints: [MitmEndpoint?] = []
    /// An endpoint whose session ended (authentication failed) is replaced by a fresh one, a new
    /// guess, up to this many times per client.
    private static let endpointGenerationsMax = 64

    // Checking.
    private let transitions = TransitionTable()
    private var ledger: [[MessageRecord]]
    private var violation: Violation?
    private let trace: Trace

    // Measurements.
    private var counters = Counters()
    private var handshakeLatencies: [UInt64] = []
    private var deliveryLatencies: [UInt64] = []
    private var healedAt: UInt64?
    private var convergedAt: UInt64?

    /// Connection identifiers carry their client in the low bits, so the relay's connection
    /// needs no lookup table: `serial << clientBits | client`.
    private static let clientBits: UInt64 = 20
    private static let clientMask: UInt64 = (1 << clientBits) - 1
    /// Virtual time between convergence checks in the liveness phase.
    private static let convergenceCheckInterval: UInt64 = 100 * nanosecondsPerMillisecond
    static let nanosecondsPerMillisecond: UInt64 = 1_000_000
    /// A run that processes more events than this stops with a liveness violation (a livelock).
    public static let eventsMax: UInt64 = 2_000_000_000

    /// Prepare a run. `traceFile`: also write every trace record there, one line each.
    public init(options: SimulationOptions, traceFile: String? = nil) throws(SimulationError) {
        try options.validate()
        precondition(UInt64(options.peers) <= Self.clientMask + 1)
        self.options = options
        settings = ResolvedSettings(options: options)
        faultPhaseEnd = settings.faultPhaseMilliseconds * Self.nanosecondsPerMillisecond
        networkRandom = Xoshiro256(seed: options.seed, stream: .network)
        faultRandom = Xoshiro256(seed: options.seed, stream: .faults)
        workloadRandom = Xoshiro256(seed: options.seed, stream: .workload)
        reconnectRandom = Xoshiro256(seed: options.seed, stream: .reconnect)
        plantedRandom = Xoshiro256(seed: options.seed, stream: .planted)
        rooms = RelayRooms(limits: .init(roomsMax: max(settings.rooms, 1)))
        roomMembers = Array(repeating: [], count: settings.rooms)
        ledger = Array(repeating: [], count: settings.peers)
        trace = try Trace(tailCapacity: options.traceTailCount, filePath: traceFile)
    }

    // MARK: Running

    /// Run to the end: convergence after the heal, or the first violation.
    /// `progress` is called now and then with the fraction of the fault phase's virtual time elapsed
    /// (1 in the liveness phase).
    public func run(progress: ((Double) -> Void)? = nil) -> SimulationReport {
        if options.guardedMemory { return runAll(progress: progress) }
        return SecureBytes.withOrdinaryMemoryInSimulation { runAll(progress: progress) }
    }

    private func runAll(progress: ((Double) -> Void)?) -> SimulationReport {
        let wallStart = ContinuousClock.now
        setUp()
        var processed: UInt64 = 0
        // Progress is measured against the fault phase: the liveness phase usually takes a small
        // fraction of its bound, so the bound would make a bar that stops a third of the way.
        let horizon = Double(faultPhaseEnd)
        while violation == nil, !finished, let scheduled = queue.popMin() {
            precondition(scheduled.time >= now, "the event queue went back in time")
            now = scheduled.time
            if handle(scheduled.event) { processed += 1 } else { counters.staleTimers += 1 }
            if processed & 0xFFFF == 0, let progress { progress(min(1, Double(now) / horizon)) }
            if processed >= Self.eventsMax {
                fail(.liveness, "more than \(Self.eventsMax) events: a livelock")
            }
        }
        if violation == nil && !finished {
            fail(.liveness, "the event queue ran dry before every session converged")
        }
        if violation == nil { finalAccounting() }
        trace.flush()
        let wall = ContinuousClock.now - wallStart
        return report(events: processed, wall: wall)
    }

    private func setUp() {
        let spread = settings.startSpreadMilliseconds * Self.nanosecondsPerMillisecond
        if settings.password {
            let codes = SeededEntropy(seed: options.seed, stream: .codes, index: 0)
            roomPasswords = (0..<settings.rooms).map { _ in ChatCode.generate(entropy: codes).password! }
        }
        if options.mitm {
            endpoints = Array(repeating: nil, count: settings.peers)
        }
        for index in 0..<settings.peers {
            let client = VirtualClient(index: index, room: RoomCode.simulated(index / 2))
            clients.append(client)
            startIncarnation(client)
            if options.mitm { endpoints[index] = makeEndpoint(for: client, generation: 0) }
            schedule(at: workloadRandom.inRange(0...spread), .connectAttempt(client: Int32(index)))
            // The user's typing: sorted uniform times over the fault phase.
            var times = (0..<settings.messagesPerPeer).map { _ in workloadRandom.inRange(spread...faultPhaseEnd) }
            times.sort()
            client.sendTimes = times
            if let first = times.first { schedule(at: first, .userSend(client: Int32(index))) }
            if let mean = settings.resetMeanIntervalMilliseconds {
                scheduleFault(.reset(client: Int32(index)), meanMilliseconds: mean, after: spread)
            }
            if let mean = settings.partitionMeanIntervalMilliseconds {
                scheduleFault(.partition(client: Int32(index)), meanMilliseconds: mean, after: spread)
            }
            if let mean = settings.peerRestartMeanIntervalMilliseconds {
                scheduleFault(.peerCrash(client: Int32(index)), meanMilliseconds: mean, after: spread)
            }
        }
        for _ in 0..<settings.relayCrashes {
            schedule(at: faultRandom.inRange(spread...faultPhaseEnd - 1), .relayCrash)
        }
        schedule(at: faultPhaseEnd, .heal)
    }

    /// Schedule the next occurrence of a per-client fault: uniform in [0, 2 × mean] after `after`,
    /// and only inside the fault phase.
    private func scheduleFault(_ event: Event, meanMilliseconds: UInt64, after: UInt64) {
        let interval = faultRandom.inRange(0...(2 * meanMilliseconds * Self.nanosecondsPerMillisecond))
        let time = after + interval
        if time < faultPhaseEnd { schedule(at: time, event) }
    }

    private func schedule(at time: UInt64, _ event: Event) {
        precondition(time >= now)
        queue.insert(ScheduledEvent(time: time, sequence: nextSequence, event: event))
        nextSequence += 1
    }

    /// Handle one event; false for a superseded timer (nothing happened).
    private func handle(_ event: Event) -> Bool {
        switch event {
        case .connectAttempt(let client): connectAttempt(clients[Int(client)])
        case .connectEstablished(let client, let attempt): connectEstablished(clients[Int(client)], attempt: attempt)
        case .connectFailed(let client, let attempt): connectFailed(clients[Int(client)], attempt: attempt)
        case .toRelay(let client, let connection, let frame): frameAtRelay(clients[Int(client)], connection, frame)
        case .toClient(let client, let connection, let frame): frameAtClient(clients[Int(client)], connection, frame)
        case .relayLearnsClose(let client, let connection): relayLearnsClose(clients[Int(client)], connection)
        case .clientLearnsClose(let client, let connection): clientLearnsClose(clients[Int(client)], connection)
        case .timer(let client): return timer(clients[Int(client)])
        case .mitmTimer(let client): return endpointTimer(clients[Int(client)])
        case .userSend(let client): userSend(clients[Int(client)])
        case .reset(let client): reset(clients[Int(client)])
        case .partition(let client): partition(clients[Int(client)])
        case .peerCrash(let client): peerCrash(clients[Int(client)])
        case .peerRestart(let client): peerRestart(clients[Int(client)])
        case .relayCrash: relayCrash()
        case .relayRestart: relayRestart()
        case .heal: heal()
        case .convergenceCheck: convergenceCheck()
        }
        return true
    }

    // MARK: Clients and their connections

    /// A new process for the client: a fresh `SessionManager` with its own seeded entropy.
    private func startIncarnation(_ client: VirtualClient) {
        let entropy = SeededEntropy(
            seed: options.seed, incarnation: UInt64(client.index) << 16 | UInt64(client.incarnation))
        let session = SessionManager(
            configuration: SessionConfiguration(room: client.room),
            password: settings.password ? roomPasswords[client.index / 2] : nil, entropy: entropy)
        switch options.plantedBug {
        case .skipCounterCheck: session.plantedBugs = .skipCounterCheck
        case .dropAcknowledged: session.plantedBugs = .dropAcknowledgedMessage
        case .relayWrongRoom, nil: break
        }
        client.session = session
        client.observedState = .initial
        client.userFoundAt = nil
        client.idToNumber = []
        client.lastShown = []
        client.terminal = nil
        client.armedTimer = .max
        client.reconnectFailures = 0
    }

    private func connectAttempt(_ client: VirtualClient) {
        client.reconnectScheduled = false
        guard client.session != nil, client.terminal == nil, client.connection == 0, client.connectAttempt == 0 else {
            return
        }
        let attempt = nextConnectionSerial
        nextConnectionSerial += 1
        client.connectAttempt = attempt
        record(.connectAttempt, client: client)
        let index = Int32(client.index)
        if !relayUp {
            schedule(at: now + drawDelay(), .connectFailed(client: index, attempt: attempt))  // refused
        } else if isCut(client) {
            let timeout = settings.connectTimeoutMilliseconds * Self.nanosecondsPerMillisecond
            schedule(at: now + timeout, .connectFailed(client: index, attempt: attempt))
        } else {
            schedule(at: now + drawDelay() + drawDelay(), .connectEstablished(client: index, attempt: attempt))
        }
    }

    private func connectEstablished(_ client: VirtualClient, attempt: UInt64) {
        guard client.connectAttempt == attempt, let session = client.session else { return }
        guard relayUp, !isCut(client) else {
            connectFailed(client, attempt: attempt)
            return
        }
        client.connectAttempt = 0
        let connection = attempt << Self.clientBits | UInt64(client.index)
        client.connection = connection
        client.relayConnections.append(connection)
        client.liveConnection = connection
        counters.connections += 1
        record(.connectEstablished, client: client, connection: connection)
        session.handle(.transportUp, now: Instant(nanoseconds: now))
        drain(client)
    }

    private func connectFailed(_ client: VirtualClient, attempt: UInt64) {
        guard client.connectAttempt == attempt else { return }
        client.connectAttempt = 0
        client.reconnectFailures += 1
        counters.connectFailures += 1
        record(.connectFailed, client: client)
        scheduleReconnect(client)
    }

    /// The reconnect policy of a client shell: exponential backoff with jitter, capped.
    private func scheduleReconnect(_ client: VirtualClient) {
        guard client.session != nil, client.terminal == nil, !client.reconnectScheduled else { return }
        let exponent = min(client.reconnectFailures, 16)
        let ceiling = min(settings.reconnectMaxMilliseconds, settings.reconnectInitialMilliseconds << exponent)
        let backoff = reconnectRandom.inRange((ceiling / 2)...ceiling) * Self.nanosecondsPerMillisecond
        client.reconnectScheduled = true
        schedule(at: now + backoff, .connectAttempt(client: Int32(client.index)))
    }

    /// The client's side of its connection closes: the session hears `transportDown`.
    private func closeClientSide(_ client: VirtualClient) {
        let connection = client.connection
        guard connection != 0 else { return }
        client.connection = 0
        if client.liveConnection == connection { client.liveConnection = 0 }
        if let session = client.session, client.terminal == nil {
            session.handle(.transportDown, now: Instant(nanoseconds: now))
            drain(client)
        }
        scheduleReconnect(client)
    }

    private func clientLearnsClose(_ client: VirtualClient, _ connection: UInt64) {
        guard client.connection == connection else { return }
        record(.clientLearnsClose, client: client, connection: connection)
        closeClientSide(client)
    }

    private func isCut(_ client: VirtualClient) -> Bool {
        client.cutUntil > now
    }

    // MARK: The network

    private func drawDelay() -> UInt64 {
        let micros = networkRandom.inRange(
            (settings.delayMinMilliseconds * 1_000)...(settings.delayMaxMilliseconds * 1_000))
        return micros * 1_000
    }

    /// Put a frame on a link, through the fault model: drop, duplicate, delay (and so reorder).
    private func transmit(_ frame: [UInt8], toRelay: Bool, client: VirtualClient, connection: UInt64) {
        counters.framesSent += 1
        let faulty = !healed
        if faulty, networkRandom.chance(settings.drop) {
            counters.framesDropped += 1
            record(.frameDropped, client: client, connection: connection, value: UInt64(frame.count))
            return
        }
        var copies = 1
        if faulty, networkRandom.chance(settings.dup) {
            copies = 2
            counters.framesDuplicated += 1
            record(.frameDuplicated, client: client, connection: connection, value: UInt64(frame.count))
        }
        let index = Int32(client.index)
        for _ in 0..<copies {
            let at = now + drawDelay()
            if toRelay {
                schedule(at: at, .toRelay(client: index, connection: connection, frame: frame))
            } else {
                schedule(at: at, .toClient(client: index, connection: connection, frame: frame))
            }
        }
    }

    // MARK: The relay

    private func frameAtRelay(_ client: VirtualClient, _ connection: UInt64, _ frame: [UInt8]) {
        guard relayUp, client.liveConnection == connection, client.relayConnections.contains(connection), !isCut(client)
        else {
            counters.framesLost += 1
            record(.frameLost, client: client, connection: connection, value: UInt64(frame.count), note: "at relay")
            return
        }
        record(.frameAtRelay, client: client, connection: connection, value: UInt64(frame.count))
        trace.mixBytes(frame)
        if PlaintextScanner.frameLeaksPlaintext(frame) {
            fail(.relayBlind, "the relay received plaintext from client \(client.index) on connection \(connection)")
            return
        }
        var actions = rooms.receive(frame: frame, from: connection)
        if options.plantedBug == .relayWrongRoom { plantWrongRoomForward(&actions, from: client) }
        if options.mitm { interceptSignal(&actions, frame: frame, from: client) }
        performRelayActions(actions, frame: frame, from: client)
    }

    /// The planted relay bug: now and then, forward a SIGNAL to a connection in the next room too.
    private func plantWrongRoomForward(_ actions: inout [RelayRooms<UInt64>.Action], from client: VirtualClient) {
        guard settings.rooms > 1, actions.contains(where: { if case .forward = $0 { true } else { false } }),
            plantedRandom.chance(1.0 / 8)
        else { return }
        let otherRoom = (client.index / 2 + 1) % settings.rooms
        for candidate in [2 * otherRoom, 2 * otherRoom + 1] {
            if let connection = clients[candidate].relayConnections.last {
                actions.append(.forward(to: connection))
                return
            }
        }
    }

    private func performRelayActions(
        _ actions: [RelayRooms<UInt64>.Action], frame: [UInt8], from source: VirtualClient?
    ) {
        for action in actions {
            guard violation == nil else { return }
            switch action {
            case .send(let connection, let message):
                let target = clients[Int(connection & Self.clientMask)]
                precondition(
                    target.relayConnections.contains(connection), "the relay answered a connection it does not hold")
                if case .joined(let room, _) = message { joined(target, connection: connection, room: room) }
                // The relay in the middle plays each client's peer itself: the real peer's
                // departure is not the client's business any more.
                if options.mitm && message == .peerLeft { continue }
                let bytes = WireCodec.encode(message)
                record(.relaySend, client: target, connection: connection, value: UInt64(bytes.count))
                if PlaintextScanner.containsCanary(bytes) {
                    fail(.relayBlind, "the relay sent plaintext to client \(target.index)")
                    return
                }
                transmit(bytes, toRelay: false, client: target, connection: connection)
                if options.mitm, case .joined(_, let peers) = message {
                    // The client is in: its endpoint "finds" it and opens a handshake, and the client
                    // is told its peer is here (unless the room logic says so itself).
                    if peers < RoomCode.peersMax {
                        let found = WireCodec.encode(RelayMessage.peerFound)
                        record(.mitmSend, client: target, connection: connection, value: UInt64(found.count))
                        transmit(found, toRelay: false, client: target, connection: connection)
                    }
                    endpointFindsPeer(target)
                }
            case .forward(let connection):
                let target = clients[Int(connection & Self.clientMask)]
                record(.relayForward, client: source, value: connection)
                // The target must be in the sender's room: its peer, or (when the relay has not yet
                // seen the sender's previous connection close) the sender's own stale connection,
                // whose frames are lost because that client closed it.
                guard let source, target.index / 2 == source.index / 2, target.relayConnections.contains(connection)
                else {
                    let from = source.map { "client \($0.index) (room \($0.index / 2))" } ?? "nobody"
                    fail(
                        .onlyFromPeer,
                        "the relay forwarded a SIGNAL from \(from) to client \(target.index) "
                            + "(room \(target.index / 2)), outside the sender's room")
                    return
                }
                transmit(frame, toRelay: false, client: target, connection: connection)
            }
        }
    }

    /// The relay accepted `connection` into `room`: count it, and check the room's capacity.
    private func joined(_ client: VirtualClient, connection: UInt64, room: RoomCode) {
        let roomIndex = client.index / 2
        guard room == client.room else {
            fail(.onlyFromPeer, "the relay put client \(client.index) into room \(room), not \(client.room)")
            return
        }
        if !roomMembers[roomIndex].contains(connection) { roomMembers[roomIndex].append(connection) }
        let held = rooms.occupancy(of: room)
        if roomMembers[roomIndex].count > RoomCode.peersMax
            || held > RoomCode.peersMax
        {
            fail(.roomCapacity, "room \(room) holds \(max(held, roomMembers[roomIndex].count)) peers")
        }
    }

    private func relayLearnsClose(_ client: VirtualClient, _ connection: UInt64) {
        guard relayUp, let position = client.relayConnections.firstIndex(of: connection) else { return }
        record(.relayLearnsClose, client: client, connection: connection)
        client.relayConnections.remove(at: position)
        if client.liveConnection == connection { client.liveConnection = 0 }
        roomMembers[client.index / 2].removeAll { $0 == connection }
        performRelayActions(rooms.disconnect(connection), frame: [], from: nil)
        if client.relayConnections.isEmpty { endpointLosesPeer(client) }
    }

    // MARK: Faults

    private func reset(_ client: VirtualClient) {
        if let mean = settings.resetMeanIntervalMilliseconds {
            scheduleFault(.reset(client: Int32(client.index)), meanMilliseconds: mean, after: now)
        }
        let connection = client.liveConnection
        guard connection != 0 else { return }
        counters.resets += 1
        record(.reset, client: client, connection: connection)
        // The connection breaks now; each end notices when the reset reaches it.
        client.liveConnection = 0
        schedule(at: now + drawDelay(), .clientLearnsClose(client: Int32(client.index), connection: connection))
        schedule(at: now + drawDelay(), .relayLearnsClose(client: Int32(client.index), connection: connection))
    }

    private func partition(_ client: VirtualClient) {
        let length =
            faultRandom.inRange(200...max(200, settings.partitionMaxMilliseconds)) * Self.nanosecondsPerMillisecond
        counters.partitions += 1
        client.cutUntil = max(client.cutUntil, now + length)
        record(.partition, client: client, value: length / Self.nanosecondsPerMillisecond)
        if let mean = settings.partitionMeanIntervalMilliseconds {
            scheduleFault(.partition(client: Int32(client.index)), meanMilliseconds: mean, after: client.cutUntil)
        }
    }

    private func peerCrash(_ client: VirtualClient) {
        guard let session = client.session else { return }
        counters.peerRestarts += 1
        record(.peerCrash, client: client)
        collectStatistics(session)
        for index in ledger[client.index].indices
        where ledger[client.index][index].incarnation == client.incarnation
            && ledger[client.index][index].status == .pending
        {
            ledger[client.index][index].status = .lostWithSender
        }
        client.session = nil
        client.connectAttempt = 0
        let connection = client.connection
        client.connection = 0
        client.liveConnection = 0
        // The kernel closes the dead process's socket; the relay hears of it after a delay.
        if connection != 0 {
            schedule(at: now + drawDelay(), .relayLearnsClose(client: Int32(client.index), connection: connection))
        }
        let restartDelay = faultRandom.inRange(500...3_000) * Self.nanosecondsPerMillisecond
        client.restartAt = now + restartDelay
        schedule(at: client.restartAt, .peerRestart(client: Int32(client.index)))
    }

    private func peerRestart(_ client: VirtualClient) {
        guard client.session == nil else { return }
        client.incarnation += 1
        record(.peerRestart, client: client, value: UInt64(client.incarnation))
        startIncarnation(client)
        client.reconnectScheduled = false
        connectAttempt(client)
        if let mean = settings.peerRestartMeanIntervalMilliseconds {
            scheduleFault(.peerCrash(client: Int32(client.index)), meanMilliseconds: mean, after: now)
        }
    }

    private func relayCrash() {
        guard relayUp, !healed else { return }
        counters.relayCrashes += 1
        record(.relayCrash)
        relayUp = false
        for client in clients where !client.relayConnections.isEmpty {
            for connection in client.relayConnections {
                schedule(at: now + drawDelay(), .clientLearnsClose(client: Int32(client.index), connection: connection))
            }
            client.relayConnections.removeAll()
            client.liveConnection = 0
            endpointLosesPeer(client)
        }
        rooms = RelayRooms(limits: rooms.limits)
        for index in roomMembers.indices { roomMembers[index].removeAll() }
        let downtime = faultRandom.inRange(200...max(200, settings.relayDowntimeMaxMilliseconds))
        schedule(at: now + downtime * Self.nanosecondsPerMillisecond, .relayRestart)
    }

    private func relayRestart() {
        guard !relayUp else { return }
        record(.relayRestart)
        relayUp = true
    }

    // MARK: Liveness phase

    private func heal() {
        healed = true
        healedAt = now
        record(.heal)
        relayRestart()
        for client in clients { client.cutUntil = 0 }
        livenessDeadline = now + settings.livenessBoundMilliseconds * Self.nanosecondsPerMillisecond
        schedule(at: now, .convergenceCheck)
    }

    private func convergenceCheck() {
        record(.convergenceCheck)
        var unconverged: [String] = []
        for client in clients where !isConverged(client) {
            if unconverged.count < 8 { unconverged.append(describe(client)) } else { break }
        }
        if unconverged.isEmpty {
            convergedAt = now
            finished = true
            return
        }
        guard now < livenessDeadline else {
            fail(
                .liveness,
                "not converged \(settings.livenessBoundMilliseconds) ms after the heal: "
                    + unconverged.joined(separator: "; "))
            return
        }
        schedule(at: min(now + Self.convergenceCheckInterval, livenessDeadline), .convergenceCheck)
    }

    /// CONNECTED with nothing left to send; or a reported terminal failure; or alone with nothing
    /// left to send because the peer's session ended for good.
    private func isConverged(_ client: VirtualClient) -> Bool {
        guard let session = client.session else { return false }
        if client.terminal != nil { return true }
        if session.pendingCount > 0 { return false }
        if session.state == .connected { return true }
        // With a relay in the middle the client's peer is the relay's endpoint, which never ends
        // for good: waiting for it is not an excuse.
        return !options.mitm && clients[client.peerIndex].terminal != nil
    }

    private func describe(_ client: VirtualClient) -> String {
        guard let session = client.session else { return "client \(client.index): crashed" }
        return "client \(client.index) \(session.state) pending \(session.pendingCount)"
            + " conn \(client.connection != 0 ? "open" : "closed")"
    }

    // MARK: Timers and the workload

    private func timer(_ client: VirtualClient) -> Bool {
        guard let session = client.session, client.armedTimer == now else { return false }
        client.armedTimer = .max
        record(.timer, client: client)
        session.handleTimeout(now: Instant(nanoseconds: now))
        drain(client)
        return true
    }

    private func userSend(_ client: VirtualClient) {
        guard let session = client.session else {
            // The process is down; the user types again once it is back.
            schedule(at: client.restartAt + 1, .userSend(client: Int32(client.index)))
            return
        }
        let number = ledger[client.index].count
        let text = Canary.text(
            client: client.index, incarnation: Int(client.incarnation), number: number,
            fillerLength: Int(workloadRandom.below(48)), fillerSeed: workloadRandom.next())
        ledger[client.index].append(MessageRecord(incarnation: client.incarnation, status: .refused, typedAt: now))
        counters.typed += 1
        record(.userSend, client: client, value: UInt64(number))
        client.typingNumber = number
        switch session.send(text, now: Instant(nanoseconds: now)) {
        case .success(let id):
            queued(client, id)
        case .failure:
            record(.refused, client: client, value: UInt64(max(client.typingNumber, 0)))
            counters.refused += 1
        }
        drain(client)
        client.typingNumber = -1
        client.nextSend += 1
        if client.nextSend < client.sendTimes.count {
            schedule(at: max(now, client.sendTimes[client.nextSend]), .userSend(client: Int32(client.index)))
        }
    }

    // MARK: Session outputs and the checks on them

    private func frameAtClient(_ client: VirtualClient, _ connection: UInt64, _ frame: [UInt8]) {
        guard let session = client.session, client.connection == connection, client.liveConnection == connection,
            !isCut(client)
        else {
            counters.framesLost += 1
            record(.frameLost, client: client, connection: connection, value: UInt64(frame.count), note: "at client")
            return
        }
        record(.frameAtClient, client: client, connection: connection, value: UInt64(frame.count))
        trace.mixBytes(frame)
        session.handle(.frame(frame), now: Instant(nanoseconds: now))
        drain(client)
    }

    /// Take every output of the client's session, act on it and check it; then re-arm its timer.
    private func drain(_ client: VirtualClient) {
        guard let session = client.session else { return }
        for output in session.drainOutputs() {
            guard violation == nil else { return }
            switch output {
            case .transmit(let frame):
                guard client.connection != 0 else {
                    fail(.legalTransitions, "client \(client.index) transmitted with no connection open")
                    return
                }
                transmit(frame, toRelay: true, client: client, connection: client.connection)
            case .stateChanged(let from, let to):
                stateChanged(client, from: from, to: to)
            case .received(let message):
                received(client, message)
            case .delivered(let ids):
                delivered(client, ids)
            case .undeliverable(let ids, let reason):
                undeliverable(client, ids, reason)
            case .notice(let notice):
                noticed(client, notice)
            case .closeTransport:
                record(.closeTransport, client: client, connection: client.connection)
                let connection = client.connection
                client.connection = 0
                client.liveConnection = 0
                if connection != 0 {
                    schedule(
                        at: now + drawDelay(), .relayLearnsClose(client: Int32(client.index), connection: connection))
                }
            }
        }
        guard violation == nil, client.terminal == nil else { return }
        if let due = session.pollTimeout() {
            let at = max(due.nanoseconds, now)
            if at != client.armedTimer {
                client.armedTimer = at
                schedule(at: at, .timer(client: Int32(client.index)))
            }
        } else {
            client.armedTimer = .max
        }
    }

    private func stateChanged(_ client: VirtualClient, from: SessionState, to: SessionState) {
        record(.stateChanged, client: client, value: UInt64(from.index) << 8 | UInt64(to.index))
        guard from == client.observedState, transitions.isLegal(from: from, to: to) else {
            fail(
                .legalTransitions,
                "client \(client.index) reported \(from) -> \(to) while last seen in \(client.observedState)")
            return
        }
        client.observedState = to
        if to == .connected && options.mitm && settings.password {
            fail(
                .authentication,
                "client \(client.index) reached CONNECTED with a relay in the middle despite the password")
            return
        }
        switch to {
        case .userFound:
            client.userFoundAt = now
        case .connected:
            if let start = client.userFoundAt { handshakeLatencies.append(now - start) }
            client.userFoundAt = nil
        default:
            break
        }
    }

    private func queued(_ client: VirtualClient, _ id: MessageID) {
        let number = client.typingNumber
        guard number >= 0, id.value == UInt64(client.idToNumber.count + 1) else {
            fail(.lossReported, "client \(client.index) queued \(id) out of the blue")
            return
        }
        client.idToNumber.append(number)
        ledger[client.index][number].status = .pending
        counters.accepted += 1
        record(.queued, client: client, value: UInt64(number))
    }

    /// The ledger number of a message ID of the client's current incarnation.
    private func number(of id: MessageID, at client: VirtualClient) -> Int? {
        let position = Int(id.value) - 1
        guard position >= 0, position < client.idToNumber.count else { return nil }
        return client.idToNumber[position]
    }

    private func received(_ receiver: VirtualClient, _ message: IncomingMessage) {
        guard let identity = Canary.parse(message.text) else {
            fail(
                .onlyFromPeer,
                "client \(receiver.index) was shown a message nobody sent (\(message.text.utf8.count) bytes)")
            return
        }
        record(.received, client: receiver, value: UInt64(identity.number))
        let senderIndex = identity.client
        guard senderIndex == receiver.peerIndex, identity.number < ledger[senderIndex].count,
            ledger[senderIndex][identity.number].incarnation == Int32(identity.incarnation),
            ledger[senderIndex][identity.number].status != .refused
        else {
            fail(
                .onlyFromPeer,
                "client \(receiver.index) was shown message \(identity.number) of client \(senderIndex), "
                    + "which its peer never sent")
            return
        }
        let record = ledger[senderIndex][identity.number]
        guard record.receivedBy < 0 else {
            fail(
                .atMostOnce,
                "client \(receiver.index) was shown message \(identity.number) of client \(senderIndex) "
                    + "again (first shown to incarnation \(record.receivedBy))")
            return
        }
        let senderIncarnation = identity.incarnation
        while receiver.lastShown.count <= senderIncarnation { receiver.lastShown.append(-1) }
        let last = receiver.lastShown[senderIncarnation]
        guard identity.number > last else {
            fail(
                .inOrder,
                "client \(receiver.index) was shown message \(identity.number) of client \(senderIndex) "
                    + "after message \(last)")
            return
        }
        // Nothing skipped silently: each message between the last shown and this one was refused,
        // shown to an earlier incarnation of this client, or reported undeliverable to its sender.
        for skipped in (last + 1)..<identity.number {
            let gap = ledger[senderIndex][skipped]
            guard gap.incarnation == Int32(senderIncarnation) else { continue }
            if gap.status == .refused || gap.status == .undeliverable || gap.receivedBy >= 0 { continue }
            fail(
                .lossReported,
                "client \(receiver.index) was shown message \(identity.number) of client "
                    + "\(senderIndex) but never message \(skipped), which its sender was not told is undeliverable")
            return
        }
        receiver.lastShown[senderIncarnation] = identity.number
        ledger[senderIndex][identity.number].receivedBy = receiver.incarnation
        counters.shown += 1
        deliveryLatencies.append(now - record.typedAt)
    }

    private func delivered(_ client: VirtualClient, _ ids: [MessageID]) {
        for id in ids {
            guard let number = number(of: id, at: client) else {
                fail(.lossReported, "client \(client.index) was told \(id) was delivered, but never queued it")
                return
            }
            record(.delivered, client: client, value: UInt64(number))
            let entry = ledger[client.index][number]
            guard entry.status == .pending else {
                fail(
                    .lossReported,
                    "client \(client.index) was told message \(number) was delivered after it was "
                        + "already reported \(entry.status)")
                return
            }
            // With a relay in the middle, the ack comes from the relay's endpoint, which has the session
            // keys: without a password that is the point of the attack, so it is not checked.
            guard entry.receivedBy >= 0 || options.mitm else {
                fail(
                    .lossReported,
                    "client \(client.index) was told message \(number) was delivered, but its peer "
                        + "never showed it")
                return
            }
            ledger[client.index][number].status = .delivered
            counters.delivered += 1
        }
    }

    private func undeliverable(_ client: VirtualClient, _ ids: [MessageID], _ reason: UndeliverableReason) {
        for id in ids {
            guard let number = number(of: id, at: client), ledger[client.index][number].status == .pending else {
                fail(.lossReported, "client \(client.index) was told \(id) is undeliverable, but it was not pending")
                return
            }
            record(.undeliverable, client: client, value: UInt64(number))
            ledger[client.index][number].status = .undeliverable
            switch reason {
            case .peerChanged: counters.undeliverablePeerChanged += 1
            case .sessionEnded, .peerLeft: counters.undeliverableSessionEnded += 1
            }
        }
    }

    private func noticed(_ client: VirtualClient, _ notice: SessionNotice) {
        switch notice {
        case .ended(let reason):
            record(.ended, client: client)
            client.terminal = reason
            client.armedTimer = .max
        case .frameRejected(let rejection):
            if rejection.isSuspicious { counters.suspicious += 1 }
        case .relayError(let code, _):
            counters.relayErrors[code.rawValue, default: 0] += 1
        default:
            break
        }
    }

    // MARK: Reporting

    private func fail(_ invariant: Invariant, _ detail: String) {
        guard violation == nil else { return }
        violation = Violation(invariant: invariant, detail: detail, atNanoseconds: now, traceTail: trace.tailLines())
    }

    @inline(__always)
    private func record(
        _ kind: TraceKind, client: VirtualClient? = nil, connection: UInt64 = 0, value: UInt64 = 0,
        note: StaticString = ""
    ) {
        trace.record(
            kind, time: now, client: client.map { Int32($0.index) } ?? -1, connection: connection,
            value: value, note: note)
    }

    /// At convergence: every accepted message of a live process is delivered or reported, and
    /// authentication came out as the relay deserved.
    private func finalAccounting() {
        for client in clients {
            for (number, entry) in ledger[client.index].enumerated() where entry.status == .pending {
                fail(
                    .lossReported,
                    "message \(number) of client \(client.index) is neither delivered nor reported "
                        + "undeliverable after convergence")
                return
            }
        }
        checkAuthentication()
    }

    /// The safety numbers of every room at convergence, and each client's authentication outcome.
    private func tallyAuthentication() -> SimulationReport.Authentication {
        var matching = 0
        var mismatched = 0
        var unpaired = 0
        for room in 0..<settings.rooms {
            let numbers = [clients[2 * room], clients[2 * room + 1]].map { $0.session?.safetyNumber }
            if let first = numbers[0], let second = numbers[1] {
                if first == second { matching += 1 } else { mismatched += 1 }
            } else {
                unpaired += 1
            }
        }
        var failures: [String: Int] = [:]
        for client in clients {
            if case .authenticationFailed(let failure)? = client.terminal {
                failures[failure.causeName, default: 0] += 1
            }
        }
        return .init(
            password: settings.password, mitm: options.mitm, roomsSafetyNumbersMatching: matching,
            roomsSafetyNumbersDiffering: mismatched, roomsNotBothConnected: unpaired,
            sessionsFailedAuthentication: failures.values.reduce(0, +), failures: failures,
            recordsDecryptedByRelay: counters.relayDecrypted, relayGuesses: counters.relayGuesses,
            passwordRunsUnconfirmedMost: counters.passwordRunsUnconfirmedMost)
    }

    private func checkAuthentication() {
        let tally = tallyAuthentication()
        switch (options.mitm, settings.password) {
        case (false, _):
            let failed = clients.first { if case .authenticationFailed? = $0.terminal { true } else { false } }
            if let client = failed {
                fail(
                    .authentication,
                    "client \(client.index) failed authentication with an honest relay: \(client.terminal!)")
            } else if tally.roomsSafetyNumbersDiffering > 0 {
                fail(.authentication, "\(tally.roomsSafetyNumbersDiffering) room(s) show different safety numbers "
                    + "although the relay is honest")
            }
        case (true, true):
            // Every session ended: authentication failed (or, for a process restarted late, the
            // room logic refused it before it could try). CONNECTED was never reached (checked as
            // it happens) and the relay decrypted nothing.
            let unfinished = clients.first { client in
                switch client.terminal {
                case .authenticationFailed?, .relayRefused?: false
                default: true
                }
            }
            if let client = unfinished {
                fail(.authentication, "client \(client.index) did not fail authentication with a relay in the middle "
                    + "(\(client.session.map { "\($0.state)" } ?? "crashed"))")
            } else if tally.recordsDecryptedByRelay > 0 {
                fail(
                    .authentication,
                    "the relay decrypted \(tally.recordsDecryptedByRelay) record(s) despite passwords")
            }
        case (true, false):
            // Every room whose two sides are connected shows two different numbers, and every
            // client is connected (or was refused by the room logic after a late restart).
            let unconnected = clients.first { client in
                if case .relayRefused? = client.terminal { return false }
                return client.session?.state != .connected
            }
            if tally.roomsSafetyNumbersMatching > 0 || tally.roomsSafetyNumbersDiffering == 0 {
                fail(.authentication, "with a relay in the middle, \(tally.roomsSafetyNumbersMatching) room(s) show "
                    + "matching safety numbers and \(tally.roomsSafetyNumbersDiffering) different ones")
            } else if let client = unconnected {
                fail(.authentication, "client \(client.index) is not connected (to the relay's endpoint) at the end")
            }
        }
    }

    // MARK: The relay in the middle (--mitm)

    /// A fresh endpoint of the relay's toward `client`: a real `SessionManager`, with a guessed
    /// (always wrong) password in password mode, that believes it joined the client's room alone.
    private func makeEndpoint(for client: VirtualClient, generation: Int) -> MitmEndpoint {
        let entropy = SeededEntropy(
            seed: options.seed, stream: .entropy, index: 1 << 48 | UInt64(client.index) << 16 | UInt64(generation))
        // A guess that can never be right: generated codes have only letters in their words.
        let guess = settings.password ? try! Password("relay-guess-\(client.index)-\(generation)") : nil
        let session = SessionManager(
            configuration: SessionConfiguration(room: client.room), password: guess, entropy: entropy)
        guess?.wipe()
        let endpoint = MitmEndpoint(session: session, generation: generation)
        let at = Instant(nanoseconds: now)
        session.handle(.transportUp, now: at)
        session.handle(.frame(WireCodec.encode(RelayMessage.joined(room: client.room, peers: 1))), now: at)
        _ = session.drainOutputs()  // Its JOIN and state changes: nothing to deliver.
        return endpoint
    }

    /// A SIGNAL from `client` reaches the relay's endpoint instead of the peer (whether or not the
    /// real peer is in the room: the relay answers for it).
    private func interceptSignal(
        _ actions: inout [RelayRooms<UInt64>.Action], frame: [UInt8], from client: VirtualClient
    ) {
        let isSignalFromMember = actions.contains {
            switch $0 {
            case .forward: true
            case .send(_, .error(.noPeer, _)): true
            default: false
            }
        }
        guard isSignalFromMember else { return }
        actions.removeAll {
            switch $0 {
            case .forward, .send(_, .error(.noPeer, _)): true
            default: false
            }
        }
        guard case .signal(let signal)? = try? WireCodec.decodeClientMessage(frame),
            let endpoint = endpoints[client.index]
        else { return }
        record(.mitmIntercept, client: client, value: UInt64(frame.count))
        if signal.kind == .keyConfirm && settings.password { counters.relayGuesses += 1 }
        endpoint.session.handle(.frame(WireCodec.encode(RelayMessage.signal(signal))), now: Instant(nanoseconds: now))
        drainEndpoint(client)
    }

    /// `client` is in the room: its endpoint, playing its peer, opens a handshake as an honest peer
    /// would (its retransmitted opening also rescues a client whose PEER_FOUND was lost).
    private func endpointFindsPeer(_ client: VirtualClient) {
        guard let endpoint = endpoints[client.index] else { return }
        endpoint.session.handle(.frame(WireCodec.encode(RelayMessage.peerFound)), now: Instant(nanoseconds: now))
        drainEndpoint(client)
    }

    /// The client's last connection to the relay closed: its endpoint's "peer" left.
    private func endpointLosesPeer(_ client: VirtualClient) {
        guard options.mitm, let endpoint = endpoints[client.index] else { return }
        endpoint.session.handle(.frame(WireCodec.encode(RelayMessage.peerLeft)), now: Instant(nanoseconds: now))
        drainEndpoint(client)
    }

    private func endpointTimer(_ client: VirtualClient) -> Bool {
        guard let endpoint = endpoints[client.index], endpoint.armedTimer == now else { return false }
        endpoint.armedTimer = .max
        record(.mitmTimer, client: client)
        endpoint.session.handleTimeout(now: Instant(nanoseconds: now))
        drainEndpoint(client)
        return true
    }

    /// Act on the endpoint's outputs: its SIGNALs go to the client as if from the peer; a record
    /// it decrypts is counted (the relay read it); when it ends, a fresh one takes its place.
    private func drainEndpoint(_ client: VirtualClient) {
        guard let endpoint = endpoints[client.index] else { return }
        var ended = false
        for output in endpoint.session.drainOutputs() {
            guard violation == nil else { return }
            switch output {
            case .transmit(let frame):
                guard case .signal(let signal)? = try? WireCodec.decodeClientMessage(frame) else { continue }
                guard relayUp, let connection = client.relayConnections.last else {
                    counters.framesLost += 1
                    continue
                }
                let bytes = WireCodec.encode(RelayMessage.signal(signal))
                record(.mitmSend, client: client, connection: connection, value: UInt64(bytes.count))
                if PlaintextScanner.frameLeaksPlaintext(bytes) {
                    fail(.relayBlind, "the relay's endpoint sent plaintext to client \(client.index)")
                    return
                }
                transmit(bytes, toRelay: false, client: client, connection: connection)
            case .received:
                counters.relayDecrypted += 1
                record(.mitmDecrypted, client: client)
                if settings.password {
                    fail(
                        .authentication,
                        "the relay decrypted a record from client \(client.index) despite the password")
                    return
                }
            case .notice(.ended):
                ended = true
            default:
                break
            }
        }
        if ended {
            endpoints[client.index] = nil
            guard endpoint.generation + 1 < Self.endpointGenerationsMax else { return }
            record(.mitmRespawn, client: client, value: UInt64(endpoint.generation + 1))
            endpoints[client.index] = makeEndpoint(for: client, generation: endpoint.generation + 1)
            if !client.relayConnections.isEmpty { endpointFindsPeer(client) }
            return
        }
        if let due = endpoint.session.pollTimeout() {
            let at = max(due.nanoseconds, now)
            if at != endpoint.armedTimer {
                endpoint.armedTimer = at
                schedule(at: at, .mitmTimer(client: Int32(client.index)))
            }
        } else {
            endpoint.armedTimer = .max
        }
    }

    private func collectStatistics(_ session: SessionManager) {
        let statistics = session.statistics
        counters.handshakesCompleted += statistics.handshakesCompleted
        counters.retransmissions += statistics.retransmissions
        counters.duplicatesDropped += statistics.duplicatesDropped
        counters.framesRejected += statistics.framesRejected
        counters.passwordRunsUnconfirmedMost = max(
            counters.passwordRunsUnconfirmedMost, session.passwordRunsUnconfirmed)
    }

    private func report(events: UInt64, wall: Duration) -> SimulationReport {
        for client in clients { if let session = client.session { collectStatistics(session) } }
        var connected = 0
        var other = 0
        var failed: [String: Int] = [:]
        for client in clients {
            if let reason = client.terminal {
                failed[reason.causeName, default: 0] += 1
            } else if client.session?.state == .connected {
                connected += 1
            } else {
                other += 1
            }
        }
        var shownButUndeliverable = 0
        var lostWithSender = 0
        var pending = 0
        for entries in ledger {
            for entry in entries {
                if entry.status == .undeliverable && entry.receivedBy >= 0 { shownButUndeliverable += 1 }
                if entry.status == .lostWithSender { lostWithSender += 1 }
                if entry.status == .pending { pending += 1 }
            }
        }
        handshakeLatencies.sort()
        deliveryLatencies.sort()
        func milliseconds(_ value: UInt64?) -> Double { Double(value ?? 0) / Double(Self.nanosecondsPerMillisecond) }
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18
        var undeliverable: [String: Int] = [:]
        if counters.undeliverablePeerChanged > 0 { undeliverable["peer changed"] = counters.undeliverablePeerChanged }
        if counters.undeliverableSessionEnded > 0 {
            undeliverable["session ended"] = counters.undeliverableSessionEnded
        }
        let toMilliseconds = { (value: UInt64) in value / Self.nanosecondsPerMillisecond }
        return SimulationReport(
            settings: settings,
            reproduce: nil,
            violation: violation,
            traceHash: trace.hasher.hex,
            events: events,
            staleTimers: counters.staleTimers,
            traceRecords: trace.recordCount,
            virtualMilliseconds: toMilliseconds(now),
            wallSeconds: wallSeconds,
            eventsPerSecond: wallSeconds > 0 ? Double(events) / wallSeconds : 0,
            sessions: .init(total: clients.count, connected: connected, failed: failed, other: other),
            messages: .init(
                typed: counters.typed, refused: counters.refused, accepted: counters.accepted,
                delivered: counters.delivered, undeliverable: undeliverable, lostWithSender: lostWithSender,
                shown: counters.shown, shownButReportedUndeliverable: shownButUndeliverable, stillPending: pending),
            latency: .init(
                handshakeP50Milliseconds: milliseconds(percentile(handshakeLatencies, 50)),
                handshakeP99Milliseconds: milliseconds(percentile(handshakeLatencies, 99)),
                handshakes: handshakeLatencies.count,
                deliveryP50Milliseconds: milliseconds(percentile(deliveryLatencies, 50)),
                deliveryP99Milliseconds: milliseconds(percentile(deliveryLatencies, 99)),
                deliveries: deliveryLatencies.count),
            network: .init(
                framesSent: counters.framesSent, framesDropped: counters.framesDropped,
                framesDuplicated: counters.framesDuplicated, framesLost: counters.framesLost,
                connections: counters.connections, connectFailures: counters.connectFailures,
                resets: counters.resets, partitions: counters.partitions, relayCrashes: counters.relayCrashes,
                peerRestarts: counters.peerRestarts, relayErrors: counters.relayErrors),
            core: .init(
                handshakesCompleted: counters.handshakesCompleted, retransmissions: counters.retransmissions,
                duplicatesDropped: counters.duplicatesDropped, framesRejected: counters.framesRejected,
                suspiciousRejections: counters.suspicious),
            liveness: .init(
                healedAtMilliseconds: healedAt.map(toMilliseconds),
                boundMilliseconds: settings.livenessBoundMilliseconds,
                convergedAtMilliseconds: convergedAt.map(toMilliseconds),
                convergenceMilliseconds: convergedAt.flatMap { end in healedAt.map { toMilliseconds(end - $0) } }),
            authentication: tallyAuthentication())
    }
}

/// Everything that can happen, as queued.
enum Event {
    case connectAttempt(client: Int32)
    case connectEstablished(client: Int32, attempt: UInt64)
    case connectFailed(client: Int32, attempt: UInt64)
    case toRelay(client: Int32, connection: UInt64, frame: [UInt8])
    case toClient(client: Int32, connection: UInt64, frame: [UInt8])
    case relayLearnsClose(client: Int32, connection: UInt64)
    case clientLearnsClose(client: Int32, connection: UInt64)
    case timer(client: Int32)
    case mitmTimer(client: Int32)
    case userSend(client: Int32)
    case reset(client: Int32)
    case partition(client: Int32)
    case peerCrash(client: Int32)
    case peerRestart(client: Int32)
    case relayCrash
    case relayRestart
    case heal
    case convergenceCheck
}

/// An event and when it happens. Ties in time break by the order of scheduling, which is itself
/// deterministic, so the queue's order never depends on anything outside the run.
struct ScheduledEvent: Comparable {
    let time: UInt64
    let sequence: UInt64
    let event: Event

    static func < (lhs: ScheduledEvent, rhs: ScheduledEvent) -> Bool {
        lhs.time != rhs.time ? lhs.time < rhs.time : lhs.sequence < rhs.sequence
    }

    static func == (lhs: ScheduledEvent, rhs: ScheduledEvent) -> Bool {
        lhs.time == rhs.time && lhs.sequence == rhs.sequence
    }
}

/// One simulated user's client: a session (the real `SessionManager`) and the shell around it.
final class VirtualClient {
    let index: Int
    let room: RoomCode
    /// The other client of the room.
    var peerIndex: Int { index ^ 1 }

    /// The current process's session; nil between a crash and the restart.
    var session: SessionManager?
    /// Which process this is (0, then 1 after the first restart, ...).
    var incarnation: Int32 = 0
    var restartAt: UInt64 = 0
    var terminal: SessionEndReason?
    var observedState: SessionState = .initial
    var userFoundAt: UInt64?
    var armedTimer: UInt64 = .max

    // Connection state, as each side sees it (0: none).
    /// The connection the client has open.
    var connection: UInt64 = 0
    /// The connections the relay holds for this client, oldest first: after a reset the relay may
    /// still hold the old one when the new one arrives.
    var relayConnections: [UInt64] = []
    /// The connection that works end to end (not broken by a reset or a crash).
    var liveConnection: UInt64 = 0
    var connectAttempt: UInt64 = 0
    var reconnectFailures = 0
    var reconnectScheduled = false
    /// The link drops everything until then (a partition).
    var cutUntil: UInt64 = 0

    // The workload.
    var sendTimes: [UInt64] = []
    var nextSend = 0
    /// The ledger number of the message being typed right now (-1: none).
    var typingNumber = -1
    /// Ledger numbers of this incarnation's accepted messages, by `MessageID.value - 1`.
    var idToNumber: [Int] = []
    /// Per sender incarnation, the last ledger number this incarnation was shown (-1: none).
    var lastShown: [Int] = []

    init(index: Int, room: RoomCode) {
        self.index = index
        self.room = room
    }
}

/// Running totals for the report.
struct Counters {
    var staleTimers: UInt64 = 0
    var framesSent: UInt64 = 0
    var framesDropped: UInt64 = 0
    var framesDuplicated: UInt64 = 0
    var framesLost: UInt64 = 0
    var connections: UInt64 = 0
    var connectFailures: UInt64 = 0
    var resets: UInt64 = 0
    var partitions: UInt64 = 0
    var relayCrashes: UInt64 = 0
    var peerRestarts: UInt64 = 0
    var typed = 0
    var refused = 0
    var accepted = 0
    var delivered = 0
    var shown = 0
    var undeliverablePeerChanged = 0
    var undeliverableSessionEnded = 0
    var suspicious = 0
    var relayErrors: [String: Int] = [:]
    var handshakesCompleted = 0
    var retransmissions = 0
    var duplicatesDropped = 0
    var framesRejected = 0
    /// Records the relay's endpoints decrypted (`--mitm`).
    var relayDecrypted = 0
    /// Key confirmations (CPace tags) the relay's endpoints received: each let it test one guess.
    var relayGuesses = 0
    /// The most CPace runs any one client session left unconfirmed after giving out its tag.
    var passwordRunsUnconfirmedMost = 0
}

/// The malicious relay's endpoint toward one client: a real session, with its own timer.
final class MitmEndpoint {
    let session: SessionManager
    let generation: Int
    var armedTimer: UInt64 = .max

    init(session: SessionManager, generation: Int) {
        self.session = session
        self.generation = generation
    }
}

extension SessionEndReason {
    /// A stable cause name for the report.
    var causeName: String {
        switch self {
        case .userQuit: "quit"
        case .relayRefused(let code): "relay refused: \(code.rawValue)"
        case .authenticationFailed(let failure): "authentication failed: \(failure.causeName)"
        case .incompatiblePeer(let version): "incompatible peer: version \(version)"
        }
    }
}

extension AuthenticationFailure {
    /// A stable cause name for the report.
    var causeName: String {
        switch self {
        case .passwordMismatch: "password mismatch"
        case .tooManyAttempts: "too many attempts"
        case .peerHasNoPassword: "peer has no password"
        case .peerHasPassword: "peer has a password"
        case .confirmationMismatch: "confirmation mismatch"
        case .continuityNotProven: "continuity not proven"
        case .handshakeTimedOut: "handshake timed out"
        }
    }
}
