@_spi(Simulation) import ChatCore
import Simulator
import Testing
import TestSupport

/// The simulator's engine, in process. Small runs (tens of peers) keep these to seconds in a debug
/// build; scripts/sim-sweep.sh runs the 20 seeds x 1000 peers sweep with a release build.
@Suite("Simulator: determinism, fault sweep, planted bugs", .cpuBound)
struct SimulationTests {
    /// Every fault kind on, small and quick.
    static func allFaults(
        seed: UInt64, peers: Int = 40, plantedBug: PlantedBug? = nil, password: Bool? = nil, mitm: Bool = false
    ) -> SimulationOptions {
        SimulationOptions(
            peers: peers, seed: seed, drop: 0.05, dup: 0.05, delayMilliseconds: 1...120, reset: true,
            partition: true, relayCrash: true, peerRestart: true, messagesPerPeer: 12, faultPhaseSeconds: 10,
            plantedBug: plantedBug, password: password, mitm: mitm)
    }

    static func run(_ options: SimulationOptions) throws -> SimulationReport {
        try Simulation(options: options).run()
    }

    @Test("The same seed twice gives the same trace hash; different seeds give different hashes")
    func determinism() throws {
        let first = try Self.run(Self.allFaults(seed: 11))
        let second = try Self.run(Self.allFaults(seed: 11))
        let other = try Self.run(Self.allFaults(seed: 12))
        #expect(first.passed && second.passed && other.passed)
        #expect(first.traceHash == second.traceHash)
        #expect(first.events == second.events)
        #expect(first.traceRecords == second.traceRecords)
        #expect(first.traceHash != other.traceHash)
    }

    @Test("The allocator behind SecureBytes does not change the run")
    func allocatorIndependence() throws {
        var guarded = Self.allFaults(seed: 5, peers: 10)
        guarded.guardedMemory = true
        let withGuards = try Self.run(guarded)
        let withoutGuards = try Self.run(Self.allFaults(seed: 5, peers: 10))
        #expect(withGuards.traceHash == withoutGuards.traceHash)
    }

    @Test("A sweep of seeds with every fault kind passes every invariant", arguments: 1...8)
    func sweep(seed: UInt64) throws {
        let report = try Self.run(Self.allFaults(seed: seed))
        #expect(report.violation == nil, "\(report.violation.map { "\($0.invariant.rawValue): \($0.detail)" } ?? "")")
        // The faults really happened, and the run still converged with every message accounted for.
        #expect(report.network.framesDropped > 0 && report.network.framesDuplicated > 0)
        #expect(report.network.resets + report.network.partitions + report.network.relayCrashes > 0)
        #expect(report.liveness.convergenceMilliseconds != nil)
        #expect(report.messages.stillPending == 0)
        #expect(
            report.messages.accepted == report.messages.delivered
                + report.messages.undeliverable.values.reduce(0, +) + report.messages.lostWithSender)
        #expect(report.sessions.connected + report.sessions.failed.values.reduce(0, +) == report.sessions.total)
    }

    @Test("Users leaving at random mid-faults: every goodbye leaves nothing unread (clean-leave)", arguments: 1...4)
    func randomLeavers(seed: UInt64) throws {
        var options = Self.allFaults(seed: seed)
        options.leaveRandomly = true
        let report = try Self.run(options)
        #expect(report.violation == nil, "\(report.violation.map { "\($0.invariant.rawValue): \($0.detail)" } ?? "")")
        let leaving = try #require(report.leaving)
        // Leavers there were, and most of them finished their goodbye before the deadline.
        #expect(leaving.leavers > 0 && leaving.leftCleanly * 2 > leaving.leavers)
        #expect(report.messages.stillPending == 0)
    }

    @Test("Files beside the chat through every fault kind: stored intact, none restarted, all ended", arguments: 1...4)
    func files(seed: UInt64) throws {
        var options = Self.allFaults(seed: seed)
        options.files = true
        let report = try Self.run(options)
        #expect(report.violation == nil, "\(report.violation.map { "\($0.invariant.rawValue): \($0.detail)" } ?? "")")
        let files = try #require(report.files)
        // Files moved and were checked, and some transfers went back after an interruption.
        #expect(files.offered > 0 && files.stored > 0 && files.confirmed > 0)
        #expect(files.longestGoBackChunks <= FileTransferConfiguration().windowChunks)
        // The clients' links went over their watermark: the driver's gate on chunks ran.
        #expect(report.network.linksOverMark > 0 && report.network.framesDroppedOverMark > 0)
        #expect(report.messages.stillPending == 0)
        // The same seed with files replays exactly.
        #expect(try Self.run(options).traceHash == report.traceHash)
    }

    @Test("Settings not given are drawn from the seed; given ones are kept", arguments: [3, 4] as [UInt64])
    func swarm(seed: UInt64) throws {
        let drawn = ResolvedSettings.resolve(SimulationOptions(peers: 10, seed: seed))
        var given = SimulationOptions(peers: 10, seed: seed)
        given.drop = 0.125
        let withDrop = ResolvedSettings.resolve(given)
        #expect(withDrop.drop == 0.125 && withDrop.sources["drop"] == .given)
        #expect(drawn.sources["drop"] == .seed)
        // Giving one setting does not disturb the others drawn from the same seed.
        #expect(withDrop.dup == drawn.dup && withDrop.delayMaxMilliseconds == drawn.delayMaxMilliseconds)
        #expect(withDrop.messagesPerPeer == drawn.messagesPerPeer)
    }

    @Test("Bad options are refused with a typed error before anything runs")
    func badOptions() {
        #expect(throws: SimulationError.self) { try Simulation(options: SimulationOptions(peers: 3, seed: 1)) }
        #expect(throws: SimulationError.self) {
            try Simulation(options: SimulationOptions(peers: 2, seed: 1, drop: 1.5))
        }
        #expect(throws: SimulationError.self) {
            try Simulation(options: SimulationOptions(peers: 2, seed: 1, messagesPerPeer: -1))
        }
    }
}

@Suite("Simulator: the checker catches planted bugs", .cpuBound)
struct PlantedBugTests {
    @Test("Every invariant has a planted bug that breaks it (a checker that cannot fire proves nothing)")
    func everyInvariantHasAPlantedBug() {
        let covered = Set(PlantedBug.allCases.map(\.expectedInvariant))
        for invariant in Invariant.allCases {
            #expect(covered.contains(invariant), "no planted bug breaks \(invariant.rawValue)")
        }
    }

    @Test("Each planted bug is caught and named", arguments: PlantedBug.allCases)
    func plantedBugIsCaught(bug: PlantedBug) throws {
        if bug == .clusterMateNeverTold {
            // It needs a node taken for dead while alive and then one PEER_FOUND lost: rare in a
            // small run. One known seed of the cluster's usual run (SIMULATOR.md, sim-sweep.sh).
            let report = try SimulationTests.run(ClusterSimulationTests.mateNeverToldOptions)
            let caught = report.violation?.detail ?? "no violation"
            #expect(report.violation?.invariant == bug.expectedInvariant, "\(caught)")
            return
        }
        for seed: UInt64 in 1...3 {
            var options = SimulationTests.allFaults(seed: seed, plantedBug: bug)
            if bug.needsRelayInTheMiddle {
                options.mitm = true
                options.password = true
            }
            if bug.needsCluster { options = ClusterSimulationTests.options(seed: seed, plantedBug: bug) }
            if bug.needsSquatters { options.squatters = options.peers / 2 }
            let report = try SimulationTests.run(options)
            #expect(
                report.violation?.invariant == bug.expectedInvariant,
                "seed \(seed): \(report.violation.map { "\($0.invariant.rawValue): \($0.detail)" } ?? "no violation")")
            #expect(report.violation?.traceTail.isEmpty == false)
        }
    }

    @Test("The same runs without the bug pass")
    func cleanRunsPass() throws {
        for seed: UInt64 in 1...3 {
            let report = try SimulationTests.run(SimulationTests.allFaults(seed: seed))
            #expect(report.passed)
        }
    }

    /// The workload that `third-peer-joins` needs, without the bug: every room has a squatter
    /// that keeps trying while the room is full, and the relay refuses every try.
    @Test("Squatters JOINing full rooms are all refused, and every invariant holds")
    func squattersAreRefused() throws {
        for seed: UInt64 in 1...3 {
            var options = SimulationTests.allFaults(seed: seed)
            options.squatters = options.peers / 2
            let report = try SimulationTests.run(options)
            #expect(report.passed, "seed \(seed): \(AuthenticationSimulationTests.describe(report))")
            let network = report.network
            #expect(network.squatterJoins > 0 && network.squatterJoinsRefused > 0, "seed \(seed): no squatter refused")
        }
    }
}

@Suite("Simulator: authentication against an honest and a malicious relay", .cpuBound)
struct AuthenticationSimulationTests {
    static func describe(_ report: SimulationReport) -> String {
        report.violation.map { "\($0.invariant.rawValue): \($0.detail)" } ?? "ok"
    }

    @Test("Honest relay, with and without passwords: every room's safety numbers match, no session fails",
          arguments: [true, false])
    func honestRelay(password: Bool) throws {
        for seed: UInt64 in 21...23 {
            let report = try SimulationTests.run(SimulationTests.allFaults(seed: seed, password: password))
            #expect(report.passed, "seed \(seed): \(Self.describe(report))")
            let auth = report.authentication
            #expect(auth.password == password && !auth.mitm)
            #expect(auth.roomsSafetyNumbersMatching == report.settings.rooms, "seed \(seed): every room matches")
            #expect(auth.roomsSafetyNumbersDiffering == 0 && auth.sessionsFailedAuthentication == 0)
            #expect(report.messages.shown > 0 && report.messages.delivered > 0)
        }
    }

    @Test("A relay in the middle, with passwords: every session fails authentication; the relay decrypts nothing")
    func maliciousRelayWithPasswords() throws {
        for seed: UInt64 in 21...23 {
            let report = try SimulationTests.run(SimulationTests.allFaults(seed: seed, password: true, mitm: true))
            #expect(report.passed, "seed \(seed): \(Self.describe(report))")
            let auth = report.authentication
            #expect(auth.sessionsFailedAuthentication == report.sessions.total, "seed \(seed): every session failed")
            #expect(report.sessions.connected == 0)
            #expect(auth.recordsDecryptedByRelay == 0)
            #expect(auth.relayGuesses > 0, "the relay did try its guesses")
            #expect(report.messages.shown == 0 && report.messages.delivered == 0)
            // Every message typed was reported undeliverable when its session ended: none lost silently.
            #expect(report.messages.accepted == report.messages.undeliverable.values.reduce(0, +)
                + report.messages.lostWithSender)
        }
    }

    @Test("A relay in the middle, without passwords: every room's two sides show different safety numbers")
    func maliciousRelayWithoutPasswords() throws {
        for seed: UInt64 in 21...23 {
            let report = try SimulationTests.run(SimulationTests.allFaults(seed: seed, password: false, mitm: true))
            #expect(report.passed, "seed \(seed): \(Self.describe(report))")
            let auth = report.authentication
            #expect(auth.roomsSafetyNumbersDiffering == report.settings.rooms, "seed \(seed): every room differs")
            #expect(auth.roomsSafetyNumbersMatching == 0)
            // Without a password the relay reads the chat: exactly what /verify is there to reveal.
            #expect(auth.recordsDecryptedByRelay > 0)
            #expect(report.sessions.connected == report.sessions.total)
        }
    }

    @Test("The dumb relays in the middle (issue 12), both modes: loud failure or the real peer, never the relay",
          arguments: MitmAttack.allCases.filter { $0 != .endpoints })
    func dumbAttackers(attack: MitmAttack) throws {
        for password in [true, false] {
            var options = SimulationTests.allFaults(seed: 21, password: password, mitm: true)
            options.attack = attack
            let report = try SimulationTests.run(options)
            let mode = password ? "password" : "no password"
            #expect(report.passed, "\(attack.rawValue), \(mode): \(Self.describe(report))")
            let auth = report.authentication
            #expect(auth.recordsDecryptedByRelay == 0 && auth.roomsSafetyNumbersDiffering == 0)
            #expect(auth.relayGuessesPerRunMost <= 2 && auth.relayGuessesPerCodeMost <= 4 || !password)
            if attack == .substituteKeys {
                #expect(report.sessions.connected == 0 && auth.roomsSafetyNumbersMatching == 0)
                #expect(auth.sessionsFailedAuthentication > 0)
            } else {
                #expect(auth.roomsSafetyNumbersMatching > 0 && report.messages.shown > 0, "\(attack.rawValue), \(mode)")
            }
            if attack == .freshInstance && password { #expect(auth.relayGuesses > 0, "the relay collected tags") }
        }
    }

    @Test("A password run replays to the same trace hash; passwords change the run")
    func determinismWithPasswords() throws {
        let first = try SimulationTests.run(SimulationTests.allFaults(seed: 31, password: true))
        let second = try SimulationTests.run(SimulationTests.allFaults(seed: 31, password: true))
        let plain = try SimulationTests.run(SimulationTests.allFaults(seed: 31, password: false))
        #expect(first.passed && second.passed && plain.passed)
        #expect(first.traceHash == second.traceHash)
        #expect(first.traceHash != plain.traceHash)
        let mitm = try SimulationTests.run(SimulationTests.allFaults(seed: 31, password: true, mitm: true))
        let mitmAgain = try SimulationTests.run(SimulationTests.allFaults(seed: 31, password: true, mitm: true))
        #expect(mitm.traceHash == mitmAgain.traceHash)
    }
}
