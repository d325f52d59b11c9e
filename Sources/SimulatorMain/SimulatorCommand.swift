import ArgumentParser
import ChatCore
import Foundation
import Simulator

/// `simulator`: thousands of virtual clients and the virtual relay, from one seed.
@main
struct SimulatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulator",
        abstract: "Deterministic simulation of many securechat clients and the relay, with injected faults.",
        discussion: """
            Runs --peers virtual clients (two per room) and one virtual relay on a virtual clock. The \
            clients are ChatCore's real SessionManager and the relay is ChatCore's real room logic; only \
            the clock, the network and the entropy are simulated, all from one seed.

            A run has a fault phase (frames dropped, duplicated, delayed and so reordered; connections \
            reset; links partitioned; the relay crashed and restarted; client processes restarted), then a \
            liveness phase: every fault heals and every session must reach CONNECTED with all its messages \
            delivered, or a reported terminal failure, within the bound printed in the summary.

            Invariants checked after every event: legal state transitions; nothing shown that the peer did \
            not send; each message shown at most once and in order; every undeliverable message reported to \
            its sender; the relay never sees plaintext (every message carries a planted canary, and every \
            byte the relay handles is scanned for it, raw and inside base64 fields); no room above two peers. \
            The first violation stops the run with exit status 1 and prints the invariant, the tail of the \
            trace, the seed and the command that reproduces it.

            Settings not given are drawn from the seed (swarm testing): --drop, --dup, --delay, \
            --messages, --fault-phase, whether the rooms have passwords (--password: ROOM-word-word codes \
            and CPace; --no-password: X25519 and safety numbers), and whether each of --reset, \
            --partition, --relay-crash and --peer-restart is on (use --no-reset etc. to switch one off). \
            The same seed and build print the same trace hash.

            --mitm makes the relay malicious: it sits in the middle of every room with endpoints of its \
            own (real sessions, with a guessed password when the rooms have one) and substitutes their \
            keys for the peers'. The authentication invariant then requires that with passwords every \
            session fails authentication and the relay decrypts nothing, and that without passwords the \
            two sides of every room show different safety numbers; with an honest relay it requires \
            that no session fails authentication and every room's safety numbers match. The summary's \
            "auth" lines count them.

            --leave-randomly makes half the users leave (end of input) at random moments of the fault \
            phase; clean-leave then requires that a client which exits 0 before its drain deadline left \
            nothing of its peer's unread, and that no leaver runs into its deadline with time to spare.

            --attack NAME picks the relay in the middle (default endpoints, the above): \
            substitute-keys replaces the key of every PAKE / KEY_EXCHANGE opening it forwards with \
            another valid one (every session must fail authentication, none may connect); \
            forged-restart sends CONNECTED pairs forged restart hellos (the peer's public instance ID, \
            a higher epoch); reflect-confirm sends every KEY_CONFIRM back to its sender; \
            fresh-instance sends CONNECTED pairs openings from new instances, and with passwords ends \
            some runs with an ERROR (its users run the code again unless told it is spent). Those three \
            forward the honest traffic: the peers must stay connected to each other, with matching \
            safety numbers, and converge. The guess-bound invariant counts the password tags the relay \
            receives for openings it made or altered: at most 2 per side and run, 4 per code (plus 2 for \
            each run re-run after a crash that had given one), as docs/SECURITY.md states.

            --files puts files in the workload: a share of the rooms (drawn from the seed) send files of \
            0 B to 256 KiB one or both ways beside the chat, in 1 KiB chunks, through every fault; each \
            connection then delivers in order, as TCP does. file-integrity (a stored file equals the file \
            sent), file-writes (no offset written twice or beyond the offered size), file-progress (never \
            backwards), file-no-restart (a go-back re-sends at most a window, never from zero) and \
            file-liveness (every transfer ends, stored and confirmed or failed with a reason the faults \
            explain) hold them to docs/PROTOCOL.md.

            --nodes N (N > 1) runs the cluster relay: N nodes, each the real relay engine in cluster \
            mode, sharing a virtual Redis that runs the JOIN and leave scripts atomically, with node \
            heartbeats (TTL) and pub/sub per node; clients connect to a random node each time. Its \
            faults: --node-crash (kill -9 and restart), --redis-restart (every room and node key lost), \
            --redis-partition (a node cut off from Redis); each drawn from the seed unless given; \
            --node-frames-lost also loses what a node writes to a client (at --drop, in order). Its \
            invariants: room-capacity in Redis and across the nodes, only-from-peer for SIGNALs between \
            nodes, liveness after the heal, and dead-node-bound (a dead node's seats past their deadline, \
            its heartbeat key gone and its partners told within the bound of docs/RELAY.md).

            --plant-bug NAME (shown by --help-hidden) switches on a deliberately broken behaviour \
            (one per invariant) to prove the checker names the invariant it breaks.

            Examples:
              simulator --peers 1000 --drop 0.05
              simulator --seed 42 --reset --partition --relay-crash --peer-restart
              simulator --seeds 1..20 --peers 1000 --json
              simulator --nodes 3 --peers 1000 --drop 0.05 --node-crash --redis-restart
            """
    )

    @Option(help: "Virtual clients, two per room (an even number).")
    var peers: Int = 1000

    @Option(help: "The seed of the run (decimal or 0x-hex). Default: a random seed, printed.")
    var seed: String?

    @Option(help: ArgumentHelp("Run every seed of an inclusive range, one after another (a sweep).", valueName: "A..B"))
    var seeds: String?

    @Option(help: "Probability that a frame is lost, per frame and direction, in the fault phase.")
    var drop: Double?

    @Option(help: "Probability that a frame is delivered twice, in the fault phase.")
    var dup: Double?

    @Option(
        help: ArgumentHelp(
            "One-way delay of every frame, uniform in MIN..MAX virtual milliseconds (random delay also reorders).",
            valueName: "MIN..MAX"))
    var delay: String?

    @Flag(inversion: .prefixedNo, help: "Connection resets: both ends see the connection close; the client reconnects.")
    var reset: Bool?

    @Flag(inversion: .prefixedNo, help: "Partitions: a client's link is cut for a while, then heals.")
    var partition: Bool?

    @Flag(inversion: .prefixedNo, help: "The relay crashes (all connections reset, all rooms lost) and restarts.")
    var relayCrash: Bool?

    @Flag(inversion: .prefixedNo, help: "Client processes crash; a new process (new keys) rejoins the room.")
    var peerRestart: Bool?

    @Flag(inversion: .prefixedNo, help: "Rooms have passwords (CPace) or not (X25519 and safety numbers).")
    var password: Bool?

    @Flag(help: "A malicious relay: it sits in the middle of every room, substituting its own keys.")
    var mitm = false

    @Option(
        help: ArgumentHelp(
            "Strangers who know a room's code and keep trying to JOIN it while it is full (room k gets squatter k).",
            valueName: "N"))
    var squatters = 0

    @Flag(
        help: """
            Users leave at random: half of them end their input (pipe mode) at a random moment of the \
            fault phase; the clients' drain timeout lets each goodbye finish after the heal (clean-leave).
            """)
    var leaveRandomly = false

    @Option(
        help: ArgumentHelp(
            "With --mitm, the attack: endpoints (default), substitute-keys, forged-restart, reflect-confirm or "
                + "fresh-instance.", valueName: "NAME"))
    var attack: String?

    @Flag(
        help: """
            Files in the workload: a share of the rooms (drawn from the seed) send small files one or both ways \
            beside the chat; the file invariants hold them to the protocol.
            """)
    var files = false

    @Option(help: "Relay nodes sharing a virtual Redis (the cluster relay, `relay --redis`); 1: the single relay.")
    var nodes = 1

    @Flag(inversion: .prefixedNo, help: "With --nodes: nodes crash (kill -9) and restart as new incarnations.")
    var nodeCrash: Bool?

    @Flag(inversion: .prefixedNo, help: "With --nodes: Redis restarts, losing every room and node key.")
    var redisRestart: Bool?

    @Flag(inversion: .prefixedNo, help: "With --nodes: a node and Redis are cut off from each other for a while.")
    var redisPartition: Bool?

    @Flag(help: "With --nodes: what a node writes to a client may be lost at --drop (never doubled or reordered).")
    var nodeFramesLost = false

    @Option(help: "Messages each peer types during the fault phase.")
    var messages: Int?

    @Option(help: ArgumentHelp("Length of the fault phase in virtual seconds.", valueName: "seconds"))
    var faultPhase: UInt64?

    @Flag(help: "Print the report as one JSON object (a sweep: one object with every run).")
    var json = false

    @Option(
        help: ArgumentHelp(
            "Write every trace record to FILE, one line each (frame sizes and message numbers, never content).",
            valueName: "FILE"))
    var trace: String?

    @Option(help: ArgumentHelp("Trace lines shown with a violation.", valueName: "lines"))
    var traceTail = 40

    @Flag(help: "Keep secrets in libsodium guarded memory as the real client does (much slower).")
    var guardedMemory = false

    @Option(
        help: ArgumentHelp(
            "Switch on a deliberately broken behaviour to prove the checker catches it: "
                + PlantedBug.allCases.map { "\($0.rawValue) (breaks \($0.expectedInvariant.rawValue))" }
                    .joined(separator: ", ") + ". For the simulator's self-tests.",
            visibility: .hidden))
    var plantBug: String?

    mutating func validate() throws {
        if seed != nil && seeds != nil { throw ValidationError("give --seed or --seeds, not both") }
        if let seed, Self.parseSeed(seed) == nil {
            throw ValidationError("--seed must be a decimal or 0x-hex 64-bit number")
        }
        if let seeds {
            guard let range = Self.parseRange(seeds, parse: Self.parseSeed) else {
                throw ValidationError("--seeds must look like A..B with A <= B")
            }
            guard range.upperBound - range.lowerBound < 1_000_000 else {
                throw ValidationError("--seeds: a sweep runs at most 1,000,000 seeds")
            }
            if trace != nil { throw ValidationError("--trace records one run; give --seed, not --seeds") }
        }
        if let delay, Self.parseRange(delay, parse: { UInt64($0) }) == nil {
            throw ValidationError("--delay must look like MIN..MAX in virtual milliseconds, with MIN <= MAX")
        }
        if let attack, MitmAttack(rawValue: attack) == nil {
            throw ValidationError(
                "--attack must be one of: \(MitmAttack.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let plantBug, PlantedBug(rawValue: plantBug) == nil {
            throw ValidationError(
                "--plant-bug must be one of: \(PlantedBug.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        do {
            try options(seed: 0).validate()
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        let seedList: ClosedRange<UInt64>
        if let seeds {
            seedList = Self.parseRange(seeds, parse: Self.parseSeed)!
        } else {
            let single = seed.flatMap(Self.parseSeed) ?? SystemEntropy().nextUInt64()
            seedList = single...single
        }
        let sweep = seeds != nil
        let progress = Progress(enabled: isatty(STDERR_FILENO) == 1)
        var reports: [SimulationReport] = []
        var failed: SimulationReport?
        for runSeed in seedList {
            let simulation: Simulation
            do {
                simulation = try Simulation(options: options(seed: runSeed), traceFile: trace)
            } catch {
                throw ValidationError(error.description)
            }
            var report = simulation.run(progress: sweep ? nil : { progress.show(fraction: $0) })
            progress.clear()
            report.reproduce = reproduceCommand(seed: runSeed)
            if sweep && !json {
                let outcome = report.passed ? "ok" : "FAILED \(report.violation!.invariant.rawValue)"
                let wall = String(format: "%.3f", report.wallSeconds)
                print("seed \(runSeed): \(outcome) hash \(report.traceHash) events \(report.events) wall \(wall) s")
            }
            reports.append(report)
            if !report.passed {
                failed = report
                break
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data: Data
            if sweep {
                data = try encoder.encode(SweepReport(passed: failed == nil, runs: reports))
            } else {
                data = try encoder.encode(reports[0])
            }
            print(String(decoding: data, as: UTF8.self))
        } else if sweep {
            let events = reports.reduce(0) { $0 + $1.events }
            let wall = reports.reduce(0) { $0 + $1.wallSeconds }
            if let failed { print("\n" + failed.text) }
            print(
                "sweep: \(reports.count) seeds run, \(failed == nil ? "all passed" : "stopped at the first failure"); "
                    + "\(events) events in \(String(format: "%.2f", wall)) s")
        } else {
            print(reports[0].text)
        }
        if failed != nil { throw ExitCode(1) }
    }

    private func options(seed: UInt64) -> SimulationOptions {
        var options = SimulationOptions(
            peers: peers, seed: seed, drop: drop, dup: dup,
            delayMilliseconds: delay.flatMap { Self.parseRange($0, parse: { UInt64($0) }) },
            reset: reset, partition: partition, relayCrash: relayCrash, peerRestart: peerRestart,
            messagesPerPeer: messages, faultPhaseSeconds: faultPhase,
            plantedBug: plantBug.flatMap(PlantedBug.init(rawValue:)), password: password, mitm: mitm,
            traceTailCount: traceTail, guardedMemory: guardedMemory, squatters: squatters,
            leaveRandomly: leaveRandomly, attack: attack.flatMap(MitmAttack.init(rawValue:)), files: files)
        if nodes != 1 || nodeCrash != nil || redisRestart != nil || redisPartition != nil || nodeFramesLost {
            options.cluster = ClusterOptions(
                nodes: nodes, nodeCrash: nodeCrash, redisRestart: redisRestart, redisPartition: redisPartition,
                nodeFramesLost: nodeFramesLost)
        }
        return options
    }

    /// The command that reproduces the run with `seed`: the seed plus every setting that was given.
    private func reproduceCommand(seed: UInt64) -> String {
        var words = ["simulator", "--seed", String(seed), "--peers", String(peers)]
        if nodes != 1 { words += ["--nodes", String(nodes)] }
        if let drop { words += ["--drop", String(drop)] }
        if let dup { words += ["--dup", String(dup)] }
        if let delay { words += ["--delay", delay] }
        for (name, value) in [
            ("reset", reset), ("partition", partition), ("relay-crash", relayCrash),
            ("peer-restart", peerRestart), ("password", password), ("node-crash", nodeCrash),
            ("redis-restart", redisRestart), ("redis-partition", redisPartition),
        ] {
            if let value { words.append(value ? "--\(name)" : "--no-\(name)") }
        }
        if let messages { words += ["--messages", String(messages)] }
        if let faultPhase { words += ["--fault-phase", String(faultPhase)] }
        if mitm { words.append("--mitm") }
        if squatters > 0 { words += ["--squatters", String(squatters)] }
        if leaveRandomly { words.append("--leave-randomly") }
        if files { words.append("--files") }
        if nodeFramesLost { words.append("--node-frames-lost") }
        if let attack { words += ["--attack", attack] }
        if let plantBug { words += ["--plant-bug", plantBug] }
        if guardedMemory { words.append("--guarded-memory") }
        return words.joined(separator: " ")
    }

    static func parseSeed(_ text: String) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
        return UInt64(text)
    }

    static func parseRange(_ text: String, parse: (String) -> UInt64?) -> ClosedRange<UInt64>? {
        let parts = text.components(separatedBy: "..")
        guard parts.count == 2, let low = parse(parts[0]), let high = parse(parts[1]), low <= high else { return nil }
        return low...high
    }
}

/// A sweep's JSON: every run, and whether all passed.
struct SweepReport: Codable {
    var passed: Bool
    var runs: [SimulationReport]
}

/// A progress bar on stderr, only when stderr is a terminal, redrawn at most ten times a second.
/// It reads the wall clock for display only; nothing in the run depends on it.
final class Progress {
    private let enabled: Bool
    private var lastDrawn = ContinuousClock.now
    private var drawn = false

    init(enabled: Bool) {
        self.enabled = enabled
    }

    func show(fraction: Double) {
        guard enabled else { return }
        let now = ContinuousClock.now
        guard now - lastDrawn >= .milliseconds(100) else { return }
        lastDrawn = now
        let width = 40
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let phase = fraction < 1 ? "\(Int(fraction * 100))% of the fault phase" : "liveness phase"
        FileHandle.standardError.write(Data("\r[\(bar)] \(phase)\u{1B}[K".utf8))
        drawn = true
    }

    func clear() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        drawn = false
    }
}
