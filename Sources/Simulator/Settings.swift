@_spi(Simulation) import ChatCore
@_spi(Simulation) import ChatTesting
import ClientCore
import RelayCore

/// What the caller fixes; every `nil` is drawn from the seed (TigerBeetle VOPR's swarm testing:
/// each seed explores its own mix of faults, so a sweep covers combinations nobody thought of).
public struct SimulationOptions: Sendable, Hashable {
    /// Virtual clients; two per room, so an even number of at least 2.
    public var peers: Int
    public var seed: UInt64
    /// Probability that a frame is lost, per frame and direction.
    public var drop: Double?
    /// Probability that a frame is delivered twice.
    public var dup: Double?
    /// One-way delay of every frame, uniform in this range of virtual milliseconds; a random delay
    /// also reorders frames.
    public var delayMilliseconds: ClosedRange<UInt64>?
    /// Connection resets (both ends see the connection close; the client reconnects).
    public var reset: Bool?
    /// Partitions: a client's link is cut for a while, then heals.
    public var partition: Bool?
    /// The relay crashes (every connection resets, all room state is lost) and restarts.
    public var relayCrash: Bool?
    /// A client process crashes and a new one (new instance, new keys) takes its place in the room.
    public var peerRestart: Bool?
    /// Messages each peer sends during the fault phase.
    public var messagesPerPeer: Int?
    /// Length of the fault phase in virtual seconds; then every fault heals (the liveness phase).
    public var faultPhaseSeconds: UInt64?
    /// A deliberately broken behaviour, to prove the checker catches it.
    public var plantedBug: PlantedBug?
    /// The rooms have passwords (`ROOM-word-word` codes: CPace handshakes) or not (X25519 and
    /// safety numbers).
    public var password: Bool?
    /// The relay is malicious: it sits in the middle of every room with endpoints of its own
    /// (with a guessed password in password mode), substituting its keys for the peers'.
    public var mitm: Bool
    /// Strangers who know a room's room part and keep trying to JOIN it while it is full (the
    /// two-peer cap's workload). Each probes one room (squatter k the room k modulo the rooms).
    public var squatters: Int
    /// Which relay in the middle (`--attack`); nil: the planted bug's, or `endpoints`.
    public var attack: MitmAttack?
    /// Trace records kept for a failure report.
    public var traceTailCount: Int
    /// Back the clients' `SecureBytes` with libsodium's guarded allocator, as the binaries do
    /// (slower: an mmap, mprotects and an mlock per allocation), rather than ordinary memory.
    public var guardedMemory: Bool
    /// Users leave at random times (`--leave-randomly`): each client's input ends, with probability
    /// one half, at a random moment of the fault phase, while messages are in flight both ways.
    public var leaveRandomly: Bool
    /// Files in the workload (`--files`): a share of the rooms (drawn from the seed) send small
    /// files one or both ways, beside the chat (`Files.swift`).
    public var files: Bool
    /// The cluster (`--nodes N`, N > 1): N relay nodes sharing a virtual Redis, and its faults
    /// (`Cluster.swift`); nil: the single relay.
    public var cluster: ClusterOptions?

    public init(
        peers: Int = 1000, seed: UInt64, drop: Double? = nil, dup: Double? = nil,
        delayMilliseconds: ClosedRange<UInt64>? = nil, reset: Bool? = nil, partition: Bool? = nil,
        relayCrash: Bool? = nil, peerRestart: Bool? = nil, messagesPerPeer: Int? = nil,
        faultPhaseSeconds: UInt64? = nil, plantedBug: PlantedBug? = nil, password: Bool? = nil, mitm: Bool = false,
        traceTailCount: Int = 40, guardedMemory: Bool = false, squatters: Int = 0, leaveRandomly: Bool = false,
        attack: MitmAttack? = nil, files: Bool = false
    ) {
        self.attack = attack
        self.files = files
        self.guardedMemory = guardedMemory
        self.squatters = squatters
        self.leaveRandomly = leaveRandomly
        self.peers = peers
        self.seed = seed
        self.drop = drop
        self.dup = dup
        self.delayMilliseconds = delayMilliseconds
        self.reset = reset
        self.partition = partition
        self.relayCrash = relayCrash
        self.peerRestart = peerRestart
        self.messagesPerPeer = messagesPerPeer
        self.faultPhaseSeconds = faultPhaseSeconds
        self.plantedBug = plantedBug
        self.password = password
        self.mitm = mitm
        self.traceTailCount = traceTailCount
    }

    /// Limits a caller can be told about before anything runs.
    public static let peersMax = 1_000_000
    public static let messagesPerPeerMax = 10_000
    public static let faultPhaseSecondsMax: UInt64 = 3_600
    public static let delayMillisecondsMax: UInt64 = 60_000

    /// Check the options; a typed error says which one is wrong.
    public func validate() throws(SimulationError) {
        guard peers >= 2, peers % 2 == 0, peers <= Self.peersMax else {
            throw .invalidOption("--peers must be an even number from 2 to \(Self.peersMax) (two per room)")
        }
        for (name, value) in [("--drop", drop), ("--dup", dup)] {
            if let value, !(value >= 0 && value < 1) {
                throw .invalidOption("\(name) must be a probability in [0, 1)")
            }
        }
        if let delay = delayMilliseconds, delay.upperBound > Self.delayMillisecondsMax {
            throw .invalidOption("--delay must stay within 0..\(Self.delayMillisecondsMax) ms")
        }
        if let messages = messagesPerPeer, !(0...Self.messagesPerPeerMax).contains(messages) {
            throw .invalidOption("--messages must be from 0 to \(Self.messagesPerPeerMax)")
        }
        if let seconds = faultPhaseSeconds, !(1...Self.faultPhaseSecondsMax).contains(seconds) {
            throw .invalidOption("--fault-phase must be from 1 to \(Self.faultPhaseSecondsMax) seconds")
        }
        guard squatters >= 0 && squatters <= peers / 2 else {
            throw .invalidOption("--squatters must be from 0 to the number of rooms (\(peers / 2))")
        }
        if let plantedBug, plantedBug.needsSquatters, squatters == 0 {
            throw .invalidOption("--plant-bug \(plantedBug.rawValue) lets a squatter in: add --squatters N")
        }
        if let plantedBug, plantedBug.needsRelayInTheMiddle, !mitm {
            throw .invalidOption("--plant-bug \(plantedBug.rawValue) breaks what a relay in the middle tests: add --mitm")
        }
        if (leaveRandomly || plantedBug?.needsRandomLeaving == true) && mitm {
            throw .invalidOption("--leave-randomly checks the goodbye between the two peers: not with --mitm")
        }
        if let attack, !mitm { throw .invalidOption("--attack \(attack.rawValue) needs --mitm") }
        try validateCluster()
        guard traceTailCount >= 1 && traceTailCount <= 100_000 else {
            throw .invalidOption("the trace tail must hold 1 to 100000 records")
        }
    }
}

/// A deliberately broken behaviour the simulator can switch on (`--plant-bug NAME`), to prove the
/// checker catches it: each names the invariant it must break. None is a branch in a shipped hot
/// path where it can be avoided: the relay and display bugs are planted in the world's shells or in
/// a relay configuration validation would refuse; the session bug is ChatCore's `PlantedBugs`
/// (reachable only through the `Simulation` SPI).
public enum PlantedBug: String, CaseIterable, Sendable, Hashable {
    /// The relay's shell writes some forwarded SIGNALs to a connection of the next room.
    case relayWrongRoom = "relay-wrong-room"
    /// Clients skip the record counter check and keep opened records' keys (ChatCore
    /// `PlantedBugs.skipCounterCheck`): a replay is shown again.
    case skipCounterCheck = "skip-counter-check"
    /// The client's display drops every fourth message its session delivered and acknowledged.
    case dropAcknowledged = "drop-acked-message"
    /// The client's display shows two consecutive messages in swapped order now and then.
    case swapMessages = "swap-messages"
    /// The client's status display reports CONNECTED → SEARCHING, skipping DISCONNECTED.
    case misreportTransition = "misreport-transition"
    /// The client's shell also sends each typed line in the clear, base64-encoded in a SIGNAL.
    case leakTypedText = "leak-typed-text"
    /// The relay's message bucket never refills (`messagesPerSecond` 0, which validation refuses,
    /// with a burst of 16): a client past its burst is held for ever.
    case bucketNeverRefills = "bucket-never-refills"
    /// The clients leave the password out of CPace (ChatCore `PlantedBugs.passwordLeftOutOfHandshake`);
    /// the relay in the middle, knowing it, agrees on keys with both sides.
    case passwordLeftOut = "password-left-out"
    /// The client's shell also sends one of the session's current record keys in the clear.
    case leakSessionKey = "leak-session-key"
    /// The relay's shell answers a squatter's refused JOIN with JOINED: a third peer in the room.
    case thirdPeerJoins = "third-peer-joins"
    /// The clients' shells walk away (Ctrl-C) as soon as their own messages are confirmed after the
    /// input ended, ignoring the peer's records in flight (WorldPlantedBugs.leaveWhenOwnConfirmed).
    /// Runs with random leavers (`--leave-randomly` is implied).
    case leaveEarly = "leave-early"
    /// The clients ignore the guess budget (`passwordRunsUnconfirmedMax` 64 instead of 2: a client
    /// that gives a fresh tag to every opening); a relay injecting fresh-instance openings collects
    /// tag after tag.
    case guessBudgetIgnored = "guess-budget-ignored"
    /// The receiving disk renames the `.part` before its last byte landed (an unflushed tail):
    /// the stored file lacks it. Implies `--files`, as the other file bugs do.
    case fileCommitTruncates = "file-commit-truncates"
    /// The receiving disk writes every chunk twice at the same offset (a naive retry).
    case fileWriteTwice = "file-write-twice"
    /// The client's progress display keeps the bytes in 16 bits (past 64 KiB it wraps).
    case fileProgress16Bits = "file-progress-16-bits"
    /// The clients acknowledge a file only at its end and send it without a window: after an
    /// interruption the sender goes back to chunk 0.
    case fileRestartFromZero = "file-restart-from-zero"
    /// The clients' shells never send file acknowledgements: every sender stalls at its first
    /// window, going back to chunk 0 for ever.
    case fileAcksLost = "file-acks-lost"
    /// The receiving disk misreads a kept `.part`'s size as 0 when opening it to resume: the
    /// receiver proposes nothing and writes the file again from its first byte.
    case fileResumeFromZero = "file-resume-from-zero"
    /// The cluster's Redis admits a third seat (its JOIN script's cap is off by one).
    case clusterCapOffByOne = "cluster-cap-off-by-one"
    /// A node's shell hands a SIGNAL from another node to the next connection, past the engine.
    case clusterSignalMisrouted = "cluster-signal-misrouted"
    /// Nodes give their heartbeat keys and seats' deadlines ten times the TTL: a dead node is alive
    /// to Redis for 40 s.
    case clusterLongHeartbeatTTL = "cluster-long-heartbeat-ttl"
    /// A node whose link to Redis broke never tells its engine that Redis is back.
    case clusterUnavailableForever = "cluster-unavailable-forever"
    /// A node that had told its client the remote mate left (the mate's node was taken for dead)
    /// and sees the mate back says nothing to the mate's node: only one side is told PEER_FOUND.
    /// Implies `--node-frames-lost` (over TCP, that one PEER_FOUND always arrives).
    case clusterMateNeverTold = "cluster-mate-never-told"

    /// The invariant this bug breaks: the checker must name it.
    public var expectedInvariant: Invariant {
        switch self {
        case .relayWrongRoom: .onlyFromPeer
        case .skipCounterCheck: .atMostOnce
        case .dropAcknowledged: .lossReported
        case .bucketNeverRefills: .liveness
        case .swapMessages: .inOrder
        case .misreportTransition: .legalTransitions
        case .leakTypedText: .relayBlind
        case .leakSessionKey: .relayBlind
        case .thirdPeerJoins: .roomCapacity
        case .passwordLeftOut: .authentication
        case .leaveEarly: .cleanLeave
        case .guessBudgetIgnored: .guessBound
        case .fileCommitTruncates: .fileIntegrity
        case .fileWriteTwice: .fileWrites
        case .fileProgress16Bits: .fileProgress
        case .fileRestartFromZero: .fileNoRestart
        case .fileAcksLost: .fileLiveness
        case .fileResumeFromZero: .fileResume
        case .clusterCapOffByOne: .roomCapacity
        case .clusterSignalMisrouted: .onlyFromPeer
        case .clusterLongHeartbeatTTL: .deadNodeBound
        case .clusterUnavailableForever: .liveness
        case .clusterMateNeverTold: .liveness
        }
    }

    /// The bug only shows against a relay in the middle (`--mitm`), with passwords.
    public var needsRelayInTheMiddle: Bool { self == .passwordLeftOut || self == .guessBudgetIgnored }
    /// Only a squatter's JOIN can show this bug.
    public var needsSquatters: Bool { self == .thirdPeerJoins || self == .clusterCapOffByOne }

    /// The bug only shows when users leave while messages are in flight: it implies `--leave-randomly`.
    public var needsRandomLeaving: Bool { self == .leaveEarly }

    /// The bug is in file transfers: it implies `--files`.
    public var needsFiles: Bool {
        switch self {
        case .fileCommitTruncates, .fileWriteTwice, .fileProgress16Bits, .fileRestartFromZero, .fileAcksLost,
             .fileResumeFromZero: true
        default: false
        }
    }

    /// The relay in the middle that shows the bug (when `--attack` does not say).
    public var attack: MitmAttack? { self == .guessBudgetIgnored ? .freshInstance : nil }

    /// Plant the bug in the world a run builds.
    func plant(in configuration: inout WorldConfiguration) {
        switch self {
        case .relayWrongRoom: configuration.plantedBugs.insert(.forwardIntoNextRoom)
        case .skipCounterCheck: configuration.sessionPlantedBugs.insert(.skipCounterCheck)
        case .dropAcknowledged: configuration.plantedBugs.insert(.hideEveryFourthMessage)
        case .swapMessages: configuration.plantedBugs.insert(.swapMessages)
        case .misreportTransition: configuration.plantedBugs.insert(.misreportTransition)
        case .leakTypedText: configuration.plantedBugs.insert(.leakTypedText)
        case .leakSessionKey: configuration.plantedBugs.insert(.leakSessionKey)
        case .thirdPeerJoins: configuration.plantedBugs.insert(.thirdPeerJoins)
        case .passwordLeftOut: configuration.sessionPlantedBugs.insert(.passwordLeftOutOfHandshake)
        case .leaveEarly: configuration.plantedBugs.insert(.leaveWhenOwnConfirmed)
        case .fileProgress16Bits: configuration.plantedBugs.insert(.progressIn16Bits)
        case .fileAcksLost: configuration.plantedBugs.insert(.dropFileAcks)
        case .fileCommitTruncates, .fileWriteTwice, .fileRestartFromZero, .fileResumeFromZero:
            break  // In the file rooms' disks and transfer settings (`FileWorkload`).
        case .guessBudgetIgnored:
            configuration.driver = { room in
                var driver = DriverConfiguration(session: SessionConfiguration(room: room), interactive: false)
                driver.session.passwordRunsUnconfirmedMax = 64
                return driver
            }
        case .clusterCapOffByOne: configuration.cluster?.plantedBugs.insert(.joinCapOffByOne)
        case .clusterSignalMisrouted: configuration.cluster?.plantedBugs.insert(.signalToNextConnection)
        case .clusterLongHeartbeatTTL: configuration.cluster?.plantedBugs.insert(.heartbeatTTLTenfold)
        case .clusterUnavailableForever: configuration.cluster?.plantedBugs.insert(.availabilityNeverBack)
        case .clusterMateNeverTold: configuration.cluster?.plantedBugs.insert(.mateNeverToldOfBreak)
        case .bucketNeverRefills:
            configuration.uncheckedRelayLimits = true
            configuration.relayLimits.messagesPerSecond = 0
            configuration.relayLimits.messageBurst = 16
            configuration.relayLimits.removePairedAllowance()
        }
    }
}

/// Where a setting came from.
public enum SettingSource: String, Sendable, Codable {
    case given
    case seed
}

/// Every setting of a run, resolved: the options plus what the seed drew.
public struct ResolvedSettings: Sendable, Hashable, Codable {
    public var peers: Int
    public var rooms: Int
    public var seed: UInt64
    public var drop: Double
    public var dup: Double
    public var delayMinMilliseconds: UInt64
    public var delayMaxMilliseconds: UInt64
    /// Mean virtual time between resets of one client's connection; nil: no resets.
    public var resetMeanIntervalMilliseconds: UInt64?
    /// Mean virtual time between partitions of one client's link; nil: no partitions.
    public var partitionMeanIntervalMilliseconds: UInt64?
    public var partitionMaxMilliseconds: UInt64
    /// How many times the relay crashes in the fault phase (0: never).
    public var relayCrashes: Int
    public var relayDowntimeMaxMilliseconds: UInt64
    /// Mean virtual time between crashes of one client process; nil: no peer restarts.
    public var peerRestartMeanIntervalMilliseconds: UInt64?
    public var messagesPerPeer: Int
    public var faultPhaseMilliseconds: UInt64
    /// Clients start (first connection attempt) spread over this much virtual time.
    public var startSpreadMilliseconds: UInt64
    /// After the heal, every session must converge within this much virtual time.
    public var livenessBoundMilliseconds: UInt64
    /// After every input ended: how long until every process must have exited (the drain timeout
    /// for a client whose peer is gone for good, then the goodbye's own wait, and round trips).
    public var goodbyeBoundMilliseconds: UInt64
    public var plantedBug: String?
    /// The rooms have passwords (CPace) or not (X25519 and safety numbers).
    public var password: Bool
    /// The relay is a man in the middle (`--mitm`).
    public var mitm: Bool
    /// Squatters probing full rooms (`--squatters`).
    public var squatters: Int
    /// Users leave at random times in the fault phase (`--leave-randomly`, or implied by a planted bug).
    public var leaveRandomly: Bool
    /// The clients' `--drain-timeout`: the shipped 30 s; with random leavers, the fault phase plus
    /// `leaveSpareMilliseconds`, so that every leaver's deadline comes that long after the heal.
    public var drainTimeoutMilliseconds: UInt64
    /// How much drain time is "to spare": once every fault has healed, a goodbye between two running
    /// processes finishes within this (the liveness bound, one BYE retransmission at its cap, and
    /// round trips). A leaver whose deadline came this long after the heal must not run into it.
    public var leaveSpareMilliseconds: UInt64
    /// Which attack it runs (`--attack`), with `--mitm`.
    public var attack: MitmAttack?
    /// Files in the workload (`--files`, or implied by a planted file bug), and the share of the
    /// rooms that send them (drawn from the seed).
    public var files: Bool
    public var fileRoomShare: Double
    /// How much longer than `livenessBoundMilliseconds` the transfers may take to end after the
    /// heal (`FileWorkload.livenessExtra`); 0 without files.
    public var fileLivenessExtraMilliseconds: UInt64
    /// Which settings were given and which drawn from the seed.
    public var sources: [String: SettingSource]
    /// The cluster's settings (`--nodes` above 1); nil: the single relay.
    public var cluster: ClusterSettings?

    // The shipped client's timers (ClientCore's and ChatCore's defaults, as `securechat` runs).
    public var reconnectMaxMilliseconds: UInt64
    public var connectTimeoutMilliseconds: UInt64
    public var retransmitMaxMilliseconds: UInt64
}

extension ResolvedSettings {
    /// The settings a run with `options` uses (what the seed draws, overridden by what is given).
    public static func resolve(_ options: SimulationOptions) -> ResolvedSettings {
        ResolvedSettings(options: options)
    }

    /// Resolve `options`: draw every setting from the seed's settings stream, in a fixed order
    /// whatever was given, then apply what was given. So `--seed 7 --drop 0.1` differs from
    /// `--seed 7` in the drop rate only.
    init(options: SimulationOptions) {
        var random = Xoshiro256(seed: options.seed, stream: .settings)
        var sources: [String: SettingSource] = [:]
        func source(_ name: String, _ given: Bool) { sources[name] = given ? .given : .seed }

        let drawnDrop: Double = random.chance(0.5) ? 0 : random.pick([0.01, 0.02, 0.05, 0.1, 0.2])
        let drawnDup: Double = random.chance(0.5) ? 0 : random.pick([0.01, 0.02, 0.05, 0.1])
        let drawnDelayMin: UInt64 = random.pick([0, 1, 5, 20])
        let drawnDelayWidth: UInt64 = random.pick([10, 50, 100, 250])
        let drawnReset = random.chance(0.5)
        let drawnResetInterval: UInt64 = random.pick([10_000, 20_000, 40_000])
        let drawnPartition = random.chance(0.5)
        let drawnPartitionInterval: UInt64 = random.pick([15_000, 30_000, 60_000])
        let drawnPartitionMax: UInt64 = random.pick([1_000, 3_000, 8_000])
        let drawnCrash = random.chance(0.35)
        let drawnCrashCount = Int(random.inRange(1...3))
        let drawnDowntimeMax: UInt64 = random.pick([500, 2_000, 5_000])
        let drawnRestart = random.chance(0.35)
        let drawnRestartInterval: UInt64 = random.pick([30_000, 60_000, 120_000])
        let drawnMessages: Int = random.pick([5, 10, 20, 40])
        let drawnFaultPhase: UInt64 = random.pick([10_000, 20_000, 30_000])
        // Drawn last, so that the draws above mean the same as before it existed.
        let drawnPassword = random.chance(0.5)
        let drawnFileShare: Double = random.pick([0.25, 0.5, 1.0])

        peers = options.peers
        rooms = options.peers / 2
        seed = options.seed
        drop = options.drop ?? drawnDrop
        source("drop", options.drop != nil)
        dup = options.dup ?? drawnDup
        source("dup", options.dup != nil)
        delayMinMilliseconds = options.delayMilliseconds?.lowerBound ?? drawnDelayMin
        delayMaxMilliseconds = options.delayMilliseconds?.upperBound ?? (drawnDelayMin + drawnDelayWidth)
        source("delay", options.delayMilliseconds != nil)
        resetMeanIntervalMilliseconds = (options.reset ?? drawnReset) ? drawnResetInterval : nil
        source("reset", options.reset != nil)
        partitionMeanIntervalMilliseconds = (options.partition ?? drawnPartition) ? drawnPartitionInterval : nil
        partitionMaxMilliseconds = drawnPartitionMax
        source("partition", options.partition != nil)
        relayCrashes = (options.relayCrash ?? drawnCrash) ? drawnCrashCount : 0
        relayDowntimeMaxMilliseconds = drawnDowntimeMax
        source("relay-crash", options.relayCrash != nil)
        peerRestartMeanIntervalMilliseconds = (options.peerRestart ?? drawnRestart) ? drawnRestartInterval : nil
        source("peer-restart", options.peerRestart != nil)
        messagesPerPeer = options.messagesPerPeer ?? drawnMessages
        source("messages", options.messagesPerPeer != nil)
        faultPhaseMilliseconds = options.faultPhaseSeconds.map { $0 * 1_000 } ?? drawnFaultPhase
        source("fault-phase", options.faultPhaseSeconds != nil)
        startSpreadMilliseconds = min(2_000, faultPhaseMilliseconds / 4)
        plantedBug = options.plantedBug?.rawValue
        password = options.password ?? drawnPassword
        source("password", options.password != nil)
        mitm = options.mitm
        squatters = options.squatters
        attack = options.mitm ? (options.attack ?? options.plantedBug?.attack ?? .endpoints) : nil
        files = options.files || options.plantedBug?.needsFiles == true
        fileRoomShare = drawnFileShare
        self.sources = sources

        let driver = DriverConfiguration(session: SessionConfiguration(room: RoomCode.simulated(0)), interactive: false)
        reconnectMaxMilliseconds = driver.reconnectMaximumDelay.wholeMilliseconds
        connectTimeoutMilliseconds = driver.connectTimeout.wholeMilliseconds
        retransmitMaxMilliseconds = driver.session.retransmitMax.wholeMilliseconds
        livenessBoundMilliseconds = Self.livenessBound(
            reconnectMax: reconnectMaxMilliseconds, connectTimeout: connectTimeoutMilliseconds,
            retransmitMax: retransmitMaxMilliseconds, delayMax: delayMaxMilliseconds,
            messagesPerPeer: messagesPerPeer, inFlightMax: driver.session.inFlightMax)
        leaveRandomly = options.leaveRandomly || options.plantedBug?.needsRandomLeaving == true
        fileLivenessExtraMilliseconds =
            files ? FileWorkload.livenessExtra(delayMaxMilliseconds: delayMaxMilliseconds) : 0
        let roundTrip = 2 * max(delayMaxMilliseconds, 1)
        leaveSpareMilliseconds = livenessBoundMilliseconds + fileLivenessExtraMilliseconds + retransmitMaxMilliseconds
            + 8 * roundTrip
        drainTimeoutMilliseconds = leaveRandomly
            ? faultPhaseMilliseconds + leaveSpareMilliseconds : driver.drainTimeout.wholeMilliseconds
        goodbyeBoundMilliseconds = drainTimeoutMilliseconds + driver.goodbyeTimeout.wholeMilliseconds
            + 16 * 2 * max(delayMaxMilliseconds, 1)
        resolveCluster(options)
    }

    /// The liveness bound: once every fault has healed, how long convergence may take at most.
    ///
    /// After the heal no frame is lost, so each stage waits at most for one timer that may have
    /// backed off to its cap, plus round trips:
    /// - a client between connection attempts: one reconnect backoff (capped) plus a connect that
    ///   may still be timing out from the partition that just healed;
    /// - its JOIN: one JOIN retransmission interval (capped at `retransmitMax`) if the relay still
    ///   held the old connection and answered ROOM_FULL;
    /// - the handshake: one handshake retransmission (capped) if the last copies were lost;
    /// - the messages: one message retransmission (capped), then every queued message in windows of
    ///   `inFlightMax` per round trip.
    /// Round trips are bounded by two maximum delays; 16 of them cover the exchanges above with
    /// room for a re-key when a peer's reconnect crosses our handshake.
    /// - the relay's rate limit: frames over a client's burst wait for its bucket to refill, so the
    ///   message and acknowledgement frames of every window pass at `messagesPerSecond` at worst.
    static func livenessBound(
        reconnectMax: UInt64, connectTimeout: UInt64, retransmitMax: UInt64, delayMax: UInt64,
        messagesPerPeer: Int, inFlightMax: Int
    ) -> UInt64 {
        let roundTrip = 2 * max(delayMax, 1)
        let windows = UInt64((messagesPerPeer + inFlightMax - 1) / inFlightMax)
        let rateLimited = UInt64(2 * messagesPerPeer * 1_000 / RelayLimits.defaults.messagesPerSecond)
        return reconnectMax + connectTimeout + 3 * retransmitMax + (16 + 2 * windows) * roundTrip + rateLimited
    }
}

/// Why a run could not start. (A run that starts ends in a report, with or without a violation.)
public enum SimulationError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidOption(String)
    case traceFile(path: String, errno: Int32)

    public var description: String {
        switch self {
        case .invalidOption(let text): text
        case .traceFile(let path, let code): "cannot write the trace file \(path) (errno \(code))"
        }
    }
}
