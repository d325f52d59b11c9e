import ChatTesting

/// The outcome of one run: what a person reads (`text`) and what a script reads (JSON, through
/// `Codable` with sorted keys). Nothing in it depends on dictionary order or on wall time except
/// the fields named `wall…` and `eventsPerSecond`.
public struct SimulationReport: Sendable, Codable {
    public var settings: ResolvedSettings
    /// The command that reproduces this run (filled in by the command line).
    public var reproduce: String?
    public var passed: Bool { violation == nil }
    public var violation: Violation?
    /// The fingerprint of the whole trace: same seed and build, same hash.
    public var traceHash: String
    public var events: UInt64
    /// Timer events that had been superseded by a later deadline (not counted in `events`).
    public var staleTimers: UInt64
    public var traceRecords: UInt64
    public var virtualMilliseconds: UInt64
    public var wallSeconds: Double
    public var eventsPerSecond: Double
    public var sessions: Sessions
    public var messages: Messages
    public var latency: Latency
    public var network: Network
    public var relay: Relay
    public var core: Core
    public var liveness: Liveness
    public var authentication: Authentication
    /// Users who left at random (`--leave-randomly`); nil without them.
    public var leaving: Leaving?
    /// Files in the workload (`--files`, `Files.swift`); nil without them.
    public var files: Files? = nil

    public struct Sessions: Sendable, Codable {
        public var total: Int
        public var connected: Int
        /// Sessions that ended for good, by cause.
        public var failed: [String: Int]
        /// Sessions neither connected nor failed when the run stopped (only after a violation).
        public var other: Int
    }

    public struct Messages: Sendable, Codable {
        public var typed: Int
        /// Refused by the session (queue full, session ended): never accepted.
        public var refused: Int
        public var accepted: Int
        /// The sender was told the peer confirmed them.
        public var delivered: Int
        /// The sender was told they could not be delivered, by reason.
        public var undeliverable: [String: Int]
        /// Lost with a crashed sender process (nobody left to tell).
        public var lostWithSender: Int
        /// Shown to a peer.
        public var shown: Int
        /// Shown to a peer, yet reported undeliverable (the confirmation was lost with the peer).
        public var shownButReportedUndeliverable: Int
        public var stillPending: Int
    }

    public struct Latency: Sendable, Codable {
        /// USER_FOUND to CONNECTED, virtual milliseconds.
        public var handshakeP50Milliseconds: Double
        public var handshakeP99Milliseconds: Double
        public var handshakes: Int
        /// Typed to shown, virtual milliseconds.
        public var deliveryP50Milliseconds: Double
        public var deliveryP99Milliseconds: Double
        public var deliveries: Int
    }

    public struct Network: Sendable, Codable {
        public var framesSent: UInt64
        public var framesDropped: UInt64
        public var framesDuplicated: UInt64
        /// Frames that arrived on a closed connection or a cut link.
        public var framesLost: UInt64
        public var connections: UInt64
        public var connectFailures: UInt64
        public var resets: UInt64
        public var partitions: UInt64
        public var relayCrashes: UInt64
        public var peerRestarts: UInt64
        /// ERROR frames the clients (and squatters) received, by code.
        public var relayErrors: [String: Int]
        /// JOINs squatters sent into full rooms (`--squatters`).
        public var squatterJoins: Int
        /// The relay's answers to them: ROOM_FULL or SEAT_RESERVED, or a seat that freed meanwhile.
        public var squatterJoinsRefused: Int
        public var squatterJoinsSeated: Int
        /// Times a client's link went over its outbound watermark, and the frames (never file
        /// chunks) its shell dropped meanwhile (`ClientWatermark`).
        public var linksOverMark: UInt64 = 0
        public var framesDroppedOverMark: UInt64 = 0
    }

    /// What the relay's policy did (summed over relay processes).
    public struct Relay: Sendable, Codable {
        public var framesForwarded = 0
        /// Binary SIGNALs received (`securechat.binary` connections), and how many of those went to
        /// a peer without binary in their text form.
        public var binarySignals = 0
        public var signalsConverted = 0
        public var pingsSent = 0
        /// Frames over a connection's rate limit, held until its bucket refilled.
        public var rateLimited = 0
        public var joinRateLimited = 0
        public var idleTimeouts = 0
        /// Connections refused over a connection cap.
        public var refused = 0
    }

    public struct Core: Sendable, Codable {
        public var handshakesCompleted: Int
        public var retransmissions: Int
        public var duplicatesDropped: Int
        public var framesRejected: Int
        /// Rejections ChatCore flags as suspicious (failed authentication and the like).
        public var suspiciousRejections: Int
    }

    /// How authentication came out, counted when the run stopped.
    public struct Authentication: Sendable, Codable {
        /// The rooms had passwords (CPace) or not (X25519 and safety numbers).
        public var password: Bool
        /// The relay sat in the middle of every room.
        public var mitm: Bool
        /// Rooms whose two clients were both CONNECTED, with the same or with different safety numbers.
        public var roomsSafetyNumbersMatching: Int
        public var roomsSafetyNumbersDiffering: Int
        /// Rooms where at least one client was not CONNECTED (failed, or the run stopped early).
        public var roomsNotBothConnected: Int
        /// Client sessions that ended with "authentication failed", and by cause.
        public var sessionsFailedAuthentication: Int
        public var failures: [String: Int]
        /// Chat records the relay's endpoints decrypted (`--mitm`).
        public var recordsDecryptedByRelay: Int
        /// CPace confirmation tags the relay's endpoints received (each tested one guessed password).
        public var relayGuesses: Int
        /// The most of them one client run gave, and one code over all its runs (`guess-bound`).
        public var relayGuessesPerRunMost: Int
        public var relayGuessesPerCodeMost: Int
        /// The most CPace runs one client session gave its tag in and saw unconfirmed (the guess
        /// budget it used; `SessionConfiguration.passwordRunsUnconfirmedMax` bounds it).
        public var passwordRunsUnconfirmedMost: Int
    }

    public struct Leaving: Sendable, Codable {
        /// Users whose input ended at a random moment of the fault phase.
        public var leavers: Int
        /// Their processes that exited 0 before the drain deadline (the goodbye finished), and
        /// those that ran into it.
        public var leftCleanly: Int
        public var leftAtDeadline: Int
        /// The clients' drain timeout, and how much of it counts as time to spare after the heal.
        public var drainTimeoutMilliseconds: UInt64
        public var spareMilliseconds: UInt64
    }

    public struct Liveness: Sendable, Codable {
        public var healedAtMilliseconds: UInt64?
        public var boundMilliseconds: UInt64
        public var convergedAtMilliseconds: UInt64?
        /// Convergence time after the heal.
        public var convergenceMilliseconds: UInt64?
    }
}

extension SimulationReport {
    /// A summary a person can read.
    public var text: String {
        var lines: [String] = []
        let s = settings
        func given(_ name: String) -> String { s.sources[name] == .given ? "" : " (seed)" }
        func percent(_ value: Double) -> String { formatted(value * 100, decimals: 1) + "%" }
        lines.append(
            "simulator: seed \(s.seed), \(s.peers) peers in \(s.rooms) rooms"
                + (s.plantedBug.map { ", PLANTED BUG \($0)" } ?? ""))
        var faults = [
            "drop \(percent(s.drop))\(given("drop"))", "dup \(percent(s.dup))\(given("dup"))",
            "delay \(s.delayMinMilliseconds)..\(s.delayMaxMilliseconds) ms\(given("delay"))",
        ]
        faults.append(s.resetMeanIntervalMilliseconds.map { "resets every ~\($0 / 1_000) s per client" } ?? "no resets")
        faults[faults.count - 1] += given("reset")
        faults.append(
            s.partitionMeanIntervalMilliseconds.map {
                "partitions every ~\($0 / 1_000) s per client (up to \(s.partitionMaxMilliseconds) ms)"
            } ?? "no partitions")
        faults[faults.count - 1] += given("partition")
        faults.append(
            s.relayCrashes > 0
                ? "\(s.relayCrashes) relay crash(es) (down up to \(s.relayDowntimeMaxMilliseconds) ms)"
                : "no relay crash")
        faults[faults.count - 1] += given("relay-crash")
        faults.append(
            s.peerRestartMeanIntervalMilliseconds.map { "peer restarts every ~\($0 / 1_000) s per client" }
                ?? "no peer restarts")
        faults[faults.count - 1] += given("peer-restart")
        lines.append("faults:   " + faults[0..<3].joined(separator: ", "))
        lines.append("          " + faults[3...].joined(separator: ", "))
        if let cluster = s.cluster { lines.append("cluster:  " + cluster.summary(given: given)) }
        lines.append(
            "workload: \(s.messagesPerPeer) messages per peer\(given("messages")) over a "
                + "\(s.faultPhaseMilliseconds / 1_000) s fault phase\(given("fault-phase"))")
        if let leaving {
            lines.append(
                "leaving:  \(leaving.leavers) users left at random: \(leaving.leftCleanly) process(es) cleanly, "
                    + "\(leaving.leftAtDeadline) at the drain deadline (drain \(leaving.drainTimeoutMilliseconds) ms, "
                    + "to spare after the heal: \(leaving.spareMilliseconds) ms)")
        }
        let converged =
            liveness.convergenceMilliseconds.map { "converged \($0) ms after the heal" } ?? "did not converge"
        lines.append(
            "liveness: healed at \(liveness.healedAtMilliseconds.map { "\($0) ms" } ?? "-"), bound "
                + "\(liveness.boundMilliseconds) ms, \(converged)")
        // Processes that exited, by their exit status's cause (after the goodbye phase, "left" is
        // the expected end).
        let failed =
            sessions.failed.isEmpty
            ? "0 exited"
            : sessions.failed.keys.sorted().map { "\(sessions.failed[$0]!) \($0)" }.joined(separator: ", ")
        lines.append(
            "sessions: \(sessions.connected) of \(sessions.total) connected at the end; exited: \(failed)"
                + (sessions.other > 0 ? ", \(sessions.other) neither" : ""))
        let undeliverableTotal = messages.undeliverable.values.reduce(0, +)
        let reasons = messages.undeliverable.keys.sorted().map { "\(messages.undeliverable[$0]!) \($0)" }
        lines.append(
            "messages: \(messages.typed) typed, \(messages.accepted) accepted, \(messages.delivered) delivered, "
                + "\(undeliverableTotal) reported undeliverable"
                + (reasons.isEmpty ? "" : " (\(reasons.joined(separator: ", ")))"))
        lines.append(
            "          \(messages.refused) refused, \(messages.lostWithSender) lost with a crashed sender, "
                + "\(messages.shown) shown (\(messages.shownButReportedUndeliverable) of them reported undeliverable), "
                + "\(messages.stillPending) pending")
        if let files {
            let failed = files.failed.keys.sorted().map { "\(files.failed[$0]!) \($0)" }
            lines.append(
                "files:    \(files.rooms) rooms (share \(formatted(s.fileRoomShare * 100, decimals: 0))% (seed)), "
                    + "\(files.offered) offered (\(files.hashFollowed) with the hash to follow), \(files.stored) stored and checked (\(files.bytesStored) bytes), "
                    + "\(files.confirmed) confirmed to the sender; ended failed: "
                    + (failed.isEmpty ? "none" : failed.joined(separator: ", "))
                    + ", \(files.lostWithProcess) lost with a crashed process")
            lines.append(
                "          \(files.goBacks) go-backs re-sent \(files.chunksResent) chunks (longest "
                    + "\(files.longestGoBackChunks), window \(FileWorkload.windowChunks)); after the heal "
                    + "\(s.fileLivenessExtraMilliseconds) ms more for transfers")
            lines.append(
                "          resume: \(files.resumeKills) senders killed mid-transfer, \(files.resumesOwed) offers "
                    + "found a kept .part of the file, \(files.resumed) resumed (\(files.bytesKept) bytes kept)")
        }
        lines.append(
            "latency:  handshake p50 \(formatted(latency.handshakeP50Milliseconds)) ms, "
                + "p99 \(formatted(latency.handshakeP99Milliseconds)) ms (\(latency.handshakes)); "
                + "delivery p50 \(formatted(latency.deliveryP50Milliseconds)) ms, "
                + "p99 \(formatted(latency.deliveryP99Milliseconds)) ms (\(latency.deliveries)) [virtual]")
        let errors = network.relayErrors.keys.sorted().map { "\($0) \(network.relayErrors[$0]!)" }
        lines.append(
            "network:  \(network.framesSent) frames sent, \(network.framesDropped) dropped, "
                + "\(network.framesDuplicated) duplicated, \(network.framesLost) lost on closed or cut links, "
                + "\(network.linksOverMark) times a client over its watermark (\(network.framesDroppedOverMark) frames dropped)")
        lines.append(
            "          \(network.connections) connections, \(network.connectFailures) failed connects, "
                + "\(network.resets) resets, \(network.partitions) partitions, \(network.relayCrashes) relay crashes, "
                + "\(network.peerRestarts) peer restarts, \(network.squatterJoins) squatter JOINs into full rooms "
                + "(\(network.squatterJoinsRefused) refused, \(network.squatterJoinsSeated) seated)"
                + (errors.isEmpty ? "" : "; relay errors: " + errors.joined(separator: ", ")))
        lines.append(
            "relay:    \(relay.framesForwarded) frames forwarded (\(relay.binarySignals) binary SIGNALs received, "
                + "\(relay.signalsConverted) converted to text), \(relay.rateLimited) held for the rate limit, "
                + "\(relay.joinRateLimited) joins over the join rate, \(relay.pingsSent) pings, "
                + "\(relay.idleTimeouts) idle timeouts, \(relay.refused) connections refused")
        lines.append(
            "core:     \(core.handshakesCompleted) handshakes, \(core.retransmissions) retransmissions, "
                + "\(core.duplicatesDropped) duplicates dropped, \(core.framesRejected) frames rejected "
                + "(\(core.suspiciousRejections) suspicious)")
        let relay = authentication.mitm
            ? "malicious relay in the middle (\(s.attack?.rawValue ?? "endpoints"))" : "honest relay"
        let mode = (authentication.password ? "passwords (CPace)" : "no passwords (X25519)") + given("password")
        let causes = authentication.failures.keys.sorted().map { "\(authentication.failures[$0]!) \($0)" }
        lines.append(
            "auth:     \(mode), \(relay): safety numbers match in \(authentication.roomsSafetyNumbersMatching) "
                + "room(s), differ in \(authentication.roomsSafetyNumbersDiffering), "
                + "\(authentication.roomsNotBothConnected) not both connected")
        lines.append(
            "          \(authentication.sessionsFailedAuthentication) session(s) failed authentication"
                + (causes.isEmpty ? "" : " (\(causes.joined(separator: ", ")))")
                + (authentication.password
                    ? "; most unconfirmed password runs in one session: \(authentication.passwordRunsUnconfirmedMost)"
                    : "")
                + (authentication.mitm
                    ? "; the relay decrypted \(authentication.recordsDecryptedByRelay) record(s) and tested "
                        + "\(authentication.relayGuesses) password guess(es) (at most "
                        + "\(authentication.relayGuessesPerRunMost) per run, \(authentication.relayGuessesPerCodeMost) "
                        + "per code)"
                    : ""))
        lines.append(
            "run:      \(events) events in \(virtualMilliseconds) virtual ms; "
                + "wall \(formatted(wallSeconds, decimals: 3)) s, "
                + "\(formatted(eventsPerSecond / 1_000_000, decimals: 2)) M events/s")
        if let violation {
            lines.append("")
            lines.append("INVARIANT VIOLATED: \(violation.invariant.rawValue) (\(violation.invariant.summary))")
            lines.append("  at \(TraceRecord.formatTime(violation.atNanoseconds)): \(violation.detail)")
            lines.append("  trace tail:")
            for line in violation.traceTail { lines.append("    " + line) }
            lines.append("  seed: \(s.seed)")
            if let reproduce { lines.append("  reproduce: \(reproduce)") }
        } else {
            let names = Invariant.allCases.map(\.rawValue).joined(separator: ", ")
            lines.append("invariants: all held, checked after every event (\(names))")
        }
        lines.append("trace hash: \(traceHash)")
        return lines.joined(separator: "\n")
    }
}

/// A number with a fixed count of decimals (no Foundation formatter, no locale).
func formatted(_ value: Double, decimals: Int = 1) -> String {
    guard value.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = UInt64(scaled / scale)
    let fraction = UInt64(scaled) - whole * UInt64(scale)
    var text = (value < 0 && scaled > 0 ? "-" : "") + String(whole)
    if decimals > 0 {
        let digits = String(fraction)
        text += "." + String(repeating: "0", count: decimals - digits.count) + digits
    }
    return text
}

/// The nearest-rank percentile of sorted values (nil when empty).
func percentile(_ sorted: [UInt64], _ percent: Int) -> UInt64? {
    guard !sorted.isEmpty else { return nil }
    let rank = (sorted.count * percent + 99) / 100
    return sorted[max(rank, 1) - 1]
}
