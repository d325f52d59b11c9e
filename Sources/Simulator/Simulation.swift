@_spi(Simulation) @_spi(Testing) import ChatCore
import ChatTesting
import ClientCore
import RelayCore

/// One deterministic run: many virtual clients and one virtual relay on a virtual clock, over a
/// lossy virtual network, from one seed.
///
/// The clients and the relay are the shipped decision-makers, `ClientDriver` (with its
/// `SessionManager`) and `RelayEngine`, wired by ChatTesting's `World`; only the clock, the network
/// and the entropy are simulated. This type is the scenario around them (FoundationDB's simulation,
/// TigerBeetle's VOPR): the users' typing (`Workload.swift`), a fault phase in which frames are
/// dropped, duplicated, delayed and reordered, connections reset, links partition, the relay crashes
/// and client processes crash (`Faults.swift`), then a liveness phase in which every fault heals and
/// every session must converge within a bound. The oracle (`Oracle.swift`) checks the invariants
/// after every event; the first violation stops the run. With `--mitm` the relay is malicious
/// (`Adversary.swift`).
public final class Simulation {
    public let settings: ResolvedSettings
    let options: SimulationOptions
    let world: World
    let trace: Trace

    // Phases.
    let faultPhaseEnd: Instant
    var livenessDeadline: Instant?
    var healedAt: Instant?
    var convergedAt: Instant?
    /// The goodbye phase, once every session converged (`Faults.swift`).
    var goodbye: Goodbye?
    /// The authentication tally taken at convergence, for the report.
    var authenticationAtConvergence: SimulationReport.Authentication?
    var finished = false

    // Random streams (see Xoshiro256.Stream).
    var faultRandom: Xoshiro256
    var workloadRandom: Xoshiro256
    var plantedRandom: Xoshiro256
    var leaveRandom: Xoshiro256

    // The scenario's view of each client.
    var users: [User]
    /// Each room's password (its code's words) when the run has passwords; empty otherwise.
    var roomPasswords: [Password] = []
    var adversary: Adversary?
    /// Files in the workload (`--files`, `Files.swift`).
    var files: FileWorkload?
    /// The password tags a relay in the middle received (`guess-bound`).
    var guesses: GuessCount

    // Checking.
    var ledger: Ledger
    /// What the relay must never see, per room: every message's canary and the room's password.
    var secrets: [SecretScanner] = []
    /// Sampled rooms' session keys (`Oracle.swift`): the keys their clients held at sampled moments.
    var keyScanners: [SecretScanner?] = []
    /// The room index each squatter slot (after the peers' slots) probes.
    var squatterRooms: [Int] = []
    var violation: Violation?
    var counters = Counters()
    var relayTotals = SimulationReport.Relay()
    /// The connections the relay answered JOINED on, per room: the checker's own count, kept from
    /// what the relay said rather than from the room logic's internals.
    var roomMembers: [[LinkID]]
    var handshakeLatencies: [UInt64] = []
    /// The cluster's checker (`Cluster.swift`; `--nodes`).
    var clusterCheck = ClusterCheck()
    var deliveryLatencies: [UInt64] = []

    /// A run that processes more events than this stops with a liveness violation (a livelock).
    public static let eventsMax: UInt64 = 2_000_000_000
    /// Virtual time between convergence checks in the liveness phase.
    static let convergenceCheckInterval: Duration = .milliseconds(100)

    /// Prepare a run. `traceFile`: also write every trace record there, one line each.
    public init(options: SimulationOptions, traceFile: String? = nil) throws(SimulationError) {
        try options.validate()
        self.options = options
        settings = ResolvedSettings(options: options)
        faultPhaseEnd = .milliseconds(settings.faultPhaseMilliseconds)
        faultRandom = Xoshiro256(seed: options.seed, stream: .faults)
        workloadRandom = Xoshiro256(seed: options.seed, stream: .workload)
        plantedRandom = Xoshiro256(seed: options.seed, stream: .planted)
        leaveRandom = Xoshiro256(seed: options.seed, stream: .leaving)
        ledger = Ledger(clients: settings.peers)
        guesses = GuessCount(clients: settings.peers)
        users = (0..<settings.peers).map { _ in User() }
        roomMembers = Array(repeating: [], count: settings.rooms)
        keyScanners = Array(repeating: nil, count: settings.rooms)
        do {
            trace = try Trace(tailCapacity: options.traceTailCount, filePath: traceFile)
        } catch {
            throw .traceFile(path: error.path, errno: error.errno)
        }
        if settings.password {
            let codes = SeededEntropy(seed: options.seed, stream: .codes)
            roomPasswords = (0..<settings.rooms).map { _ in ChatCode.generate(entropy: codes).password! }
        }
        world = World(configuration: Self.worldConfiguration(settings, passwords: roomPasswords), trace: trace)
        world.observer = self
        secrets = (0..<settings.rooms).map { room in
            var scanner = SecretScanner()
            scanner.add(Canary.markerBytes, name: "a message's plaintext")
            if !roomPasswords.isEmpty { scanner.add(roomPasswords[room].prsForTesting, name: "the room's password") }
            return scanner
        }
        if let attack = settings.attack { adversary = Adversary(simulation: self, attack: attack) }
        setUpFiles()
        for squatter in 0..<settings.squatters {
            let room = squatter % settings.rooms
            squatterRooms.append(room)
            world.addSquatter(room: RoomCode.simulated(room))
        }
    }

    /// The room of client slot `client`: two peers per room in order, then the squatters'.
    func roomIndex(of client: Int) -> Int {
        client < settings.peers ? client / RoomCode.peersMax : squatterRooms[client - settings.peers]
    }

    /// The peers' slots (the squatters' come after them and run no process).
    var peerClients: ArraySlice<WorldClient> { world.clients.prefix(settings.peers) }

    deinit {
        for password in roomPasswords { password.wipe() }
    }

    static func worldConfiguration(_ settings: ResolvedSettings, passwords: [Password]) -> WorldConfiguration {
        var faults = NetworkFaults(
            drop: settings.drop, duplicate: settings.dup,
            delayMicroseconds: (settings.delayMinMilliseconds * 1_000)...(settings.delayMaxMilliseconds * 1_000),
            random: Xoshiro256(seed: settings.seed, stream: .network))
        faults.inOrder = settings.files  // `FileWorkload`: the file receiver relies on TCP's order.
        var configuration = WorldConfiguration(
            clients: settings.peers, seed: settings.seed, faults: faults,
            password: { passwords.isEmpty ? nil : passwords[$0] })
        // Under one window of the world's 1 KiB chunks (8 of them are 8.4 KiB as binary frames, 11.5
        // KiB as text), unlike the shipped 2 MiB, which is over a window: so that transfers cross it
        // and the driver's gate runs under every fault.
        configuration.clientWatermark = ClientWatermark(low: 2 * 1024, high: 6 * 1024)
        if let cluster = settings.cluster {
            configuration.cluster = ClusterConfiguration(
                nodes: cluster.nodes,
                redisDelayMicroseconds: cluster.redisDelayMinMicroseconds...cluster.redisDelayMaxMicroseconds)
            configuration.cluster?.nodeFramesLost = cluster.nodeFramesLost
        }
        if settings.leaveRandomly {
            let drain = Duration.milliseconds(settings.drainTimeoutMilliseconds)
            configuration.driver = {
                DriverConfiguration(session: SessionConfiguration(room: $0), interactive: false, drainTimeout: drain)
            }
        }
        if let bug = settings.plantedBug.flatMap(PlantedBug.init(rawValue:)) { bug.plant(in: &configuration) }
        return configuration
    }

    // MARK: Running

    /// Run to the end: convergence after the heal, or the first violation. `progress` is called
    /// now and then with the fraction of the fault phase's virtual time elapsed (1 in the liveness
    /// phase).
    public func run(progress: ((Double) -> Void)? = nil) -> SimulationReport {
        if options.guardedMemory { return runAll(progress: progress) }
        return SecureBytes.withOrdinaryMemoryInSimulation { runAll(progress: progress) }
    }

    private func runAll(progress: ((Double) -> Void)?) -> SimulationReport {
        let wallStart = ContinuousClock.now
        setUp()
        var processed: UInt64 = 0
        let horizon = Double(faultPhaseEnd.nanoseconds)
        // Bounded by `eventsMax`.
        while violation == nil, !finished, let result = world.step() {
            switch result {
            case .handled: processed += 1
            case .stale: counters.staleTimers += 1
            case let .scenario(kind, client):
                processed += 1
                handle(SimEvent(rawValue: kind)!, client: Int(client))
            }
            if processed & 0xFFFF == 0, let progress {
                progress(min(1, Double(world.now.nanoseconds) / horizon))
            }
            if processed >= Self.eventsMax { fail(.liveness, "more than \(Self.eventsMax) events: a livelock") }
        }
        if violation == nil && !finished { fail(.liveness, "the event queue ran dry before every session converged") }
        if violation == nil { finalAccounting() }
        trace.flush()
        return report(events: processed, wall: ContinuousClock.now - wallStart)
    }

    private func setUp() {
        let spread = Duration.milliseconds(settings.startSpreadMilliseconds)
        for index in 0..<settings.peers {
            scheduleWorkload(for: index, spread: spread)
            scheduleLeaving(for: index, spread: spread)
            scheduleFaults(for: index, after: .zero.advanced(by: spread))
        }
        for squatter in 0..<settings.squatters { scheduleSquat(settings.peers + squatter) }
        for _ in 0..<settings.relayCrashes {
            let at = faultRandom.inRange(spread.wholeNanoseconds...(faultPhaseEnd.nanoseconds - 1))
            world.schedule(SimEvent.relayCrash.rawValue, at: Instant(nanoseconds: at))
        }
        world.schedule(SimEvent.heal.rawValue, at: faultPhaseEnd)
        adversary?.scheduleInjections()
        setUpCluster()
    }

    /// Handle one of the scenario's own events.
    private func handle(_ event: SimEvent, client: Int) {
        switch event {
        case .start: start(client)
        case .userTypes: userTypes(client)
        case .reset: reset(client)
        case .partition: partition(client)
        case .processCrash: processCrash(client)
        case .processRestart: processRestart(client)
        case .relayCrash: relayCrash()
        case .relayRestart: relayRestart()
        case .heal: heal()
        case .convergenceCheck: convergenceCheck()
        case .goodbyeCheck: goodbyeCheck()
        case .mitmTimer: adversary?.timer(client)
        case .squat: squat(client)
        case .userLeaves: userLeaves(client)
        case .mitmInject: adversary?.inject(client)
        case .rerun: rerun(client)
        case .resumeKill: resumeKill(client)
        case .nodeCrash, .nodeRestart, .redisRestart, .redisStart, .redisPartition, .deadNodeCheck:
            handleCluster(event, client)
        }
    }

    // MARK: Failing and tracing

    func fail(_ invariant: Invariant, _ detail: String) {
        guard violation == nil else { return }
        violation = Violation(
            invariant: invariant, detail: detail, atNanoseconds: world.now.nanoseconds, traceTail: trace.tailLines())
    }

    func fail(_ finding: Finding) {
        fail(finding.invariant, finding.detail)
    }

    @inline(__always)
    func record(_ kind: TraceKind, client: Int = -1, value: UInt64 = 0) {
        trace.record(kind, time: world.now.nanoseconds, client: Int32(client), value: value)
    }
}

/// The scenario's own events, queued in the world as `.scenario(kind:client:)`.
enum SimEvent: UInt8 {
    case start
    case userTypes
    case reset
    case partition
    case processCrash
    case processRestart
    case relayCrash
    case relayRestart
    case heal
    case convergenceCheck
    case goodbyeCheck
    case mitmTimer
    case squat
    case userLeaves
    /// The relay in the middle injects a forged opening (`MitmAttack.injects`).
    case mitmInject
    /// The user runs the same code again after the relay refused the last run (`--mitm`).
    case rerun
    // The cluster's faults and checks (`Cluster.swift`); `client` is the node.
    case nodeCrash
    case nodeRestart
    case redisRestart
    case redisStart
    case redisPartition
    case deadNodeCheck
    /// The file workload kills a sender mid-transfer to see the file resumed (`Files.swift`).
    case resumeKill
}

/// The goodbye phase: when it began, when every process must have exited, and the rooms whose
/// two sides were connected to each other when their input ended.
struct Goodbye {
    var startedAt: Instant
    var deadline: Instant
    var pairedRooms: [Int]
}

/// What the scenario keeps about one client slot: its user's typing and what the oracle needs.
struct User {
    /// When the user types, sorted, and how many were typed.
    var sendTimes: [Instant] = []
    var nextSend = 0
    /// The ledger number of the message being typed right now (-1: none).
    var typing = -1
    /// Ledger numbers of the current process's accepted messages, and their IDs (increasing).
    var numbers: [Int] = []
    var ids: [UInt64] = []
    /// The state the current process's last state change reported.
    var observedState: SessionState = .initial
    var userFoundAt: Instant?
    /// When the current process crashed (or was refused by the relay), the restart is due.
    var restartAt: Instant?
    /// The user leaves at a random moment (`--leave-randomly`).
    var leaves = false
    /// The user's input ended (a process started after that ends its input at once), and the
    /// current process's drain deadline.
    var inputEnded = false
    var drainDeadline: Instant?
    /// The peer's process incarnation the current process last secured a conversation with.
    var securedWith: Int32?
    /// The current process said that the code is spent: its user will not run it again.
    var toldCodeSpent = false
}

/// Running totals for the report.
struct Counters {
    var staleTimers: UInt64 = 0
    var typed = 0
    var refused = 0
    var accepted = 0
    var delivered = 0
    var shown = 0
    var undeliverable: [String: Int] = [:]
    var suspicious = 0
    var relayErrors: [String: Int] = [:]
    var handshakesCompleted = 0
    var retransmissions = 0
    var duplicatesDropped = 0
    var framesRejected = 0
    var passwordRunsUnconfirmedMost = 0
    /// Records the relay's endpoints decrypted (`--mitm`).
    var relayDecrypted = 0
    /// Key confirmations (CPace tags) the relay's endpoints received: each let it test one guess.
    var relayGuesses = 0
    /// JOINs squatters sent into full rooms.
    var squats = 0
    var squatsRefused = 0
    var squatsSeated = 0
    /// Users who left at random; of their processes, those that left cleanly (exit 0 before the
    /// drain deadline) and those that ran into the deadline.
    var leavers = 0
    var leftCleanly = 0
    var leftAtDeadline = 0
}
