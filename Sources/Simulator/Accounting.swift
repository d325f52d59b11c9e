import ChatCore
import ChatTesting
import ClientCore
import RelayCore

/// The checks at the end of a run, and the report.
extension Simulation {
    /// At convergence: every accepted message of a live process is delivered or reported, and
    /// authentication came out as the relay deserved.
    func finalAccounting() {
        if let finding = ledger.finalCheck() { return fail(finding) }
        finalFileCheck()
    }

    /// The safety numbers of every room at convergence, and each client's authentication outcome.
    func tallyAuthentication() -> SimulationReport.Authentication {
        var matching = 0
        var mismatched = 0
        var unpaired = 0
        for room in 0..<settings.rooms {
            let numbers = (0..<RoomCode.peersMax).map {
                world.clients[room * RoomCode.peersMax + $0].driver?.session.safetyNumber
            }
            if let first = numbers[0], let second = numbers[1] {
                if first == second { matching += 1 } else { mismatched += 1 }
            } else {
                unpaired += 1
            }
        }
        let failedClients = peerClients.filter { $0.exitStatus == .authenticationFailed }
        let spent = failedClients.filter(spentGuessBudget).count
        var failures: [String: Int] = [:]
        if failedClients.count > spent { failures["authentication failed"] = failedClients.count - spent }
        if spent > 0 { failures["guess budget spent"] = spent }
        return .init(
            password: settings.password, mitm: options.mitm, roomsSafetyNumbersMatching: matching,
            roomsSafetyNumbersDiffering: mismatched, roomsNotBothConnected: unpaired,
            sessionsFailedAuthentication: failedClients.count, failures: failures,
            recordsDecryptedByRelay: counters.relayDecrypted, relayGuesses: counters.relayGuesses,
            relayGuessesPerRunMost: guesses.perRunMost, relayGuessesPerCodeMost: guesses.perCodeMost,
            passwordRunsUnconfirmedMost: counters.passwordRunsUnconfirmedMost)
    }

    /// At convergence (before the goodbye ends the sessions): the safety numbers and failures.
    func checkAuthentication() {
        for client in peerClients { if let session = client.driver?.session { collectStatistics(session) } }
        let tally = tallyAuthentication()
        authenticationAtConvergence = tally
        switch (settings.attack, settings.password) {
        case (nil, _), (.forgedRestart?, _), (.reflectConfirm?, _), (.freshInstance?, _):
            // The one failure an honest relay can cause: password handshakes cut by the faults
            // (crashes, resets) before their confirmation, until the budget of unconfirmed tags was
            // spent. docs/SECURITY.md states that trade; any other cause is a bug. A relay that only
            // injects into CONNECTED pairs or reflects confirmations must not cause one either:
            // nothing unauthenticated ends a session that has keys, and a reflection is dropped.
            // A forged opening that lands on a session without keys in use (its peer just left, a
            // reconnect under way) may end it, loudly: that is the documented outcome of an opening
            // that cannot be authenticated; those failures are counted, not excused silently.
            let mayFail = settings.attack == .forgedRestart || settings.attack == .freshInstance
            let failed = peerClients.first {
                $0.exitStatus == .authenticationFailed && !spentGuessBudget($0) && !mayFail
            }
            let relay = settings.attack.map { "a relay in the middle (\($0.rawValue))" } ?? "an honest relay"
            if let client = failed {
                fail(.authentication, "client \(client.index) failed authentication with \(relay)")
            } else if tally.roomsSafetyNumbersDiffering > 0 {
                fail(.authentication, "\(tally.roomsSafetyNumbersDiffering) room(s) show different safety numbers "
                    + "with \(relay), which holds no keys")
            }
        case (.endpoints?, true), (.substituteKeys?, _):
            // Every process exited: authentication failed (or, for a process restarted late, the
            // relay refused it before it could try). CONNECTED was never reached (checked as it
            // happens) and the relay decrypted nothing.
            // Substituting keys, the relay holds no endpoint of its own: a process restarted after
            // its peer had failed is left alone in the room (never CONNECTED: checked as it happens).
            let unfinished = peerClients.first {
                $0.exitStatus != .authenticationFailed && $0.exitStatus != .relayRefused
                    && !(settings.attack == .substituteKeys && world.clients[world.peer(of: $0.index)].exitStatus != nil)
            }
            if let client = unfinished {
                fail(.authentication, "client \(client.index) did not fail authentication with a relay in the middle "
                    + "(\(client.driver.map { "\($0.session.state)" } ?? "crashed"))")
            } else if tally.recordsDecryptedByRelay > 0 {
                fail(.authentication, "the relay decrypted \(tally.recordsDecryptedByRelay) record(s) despite passwords")
            }
        case (.endpoints?, false):
            // Every room whose two sides are connected shows two different numbers, and every
            // client is connected (or was refused by the relay after a late restart).
            let unconnected = peerClients.first { client in
                client.exitStatus != .relayRefused && client.driver?.session.state != .connected
            }
            if tally.roomsSafetyNumbersMatching > 0 || tally.roomsSafetyNumbersDiffering == 0 {
                fail(.authentication, "with a relay in the middle, \(tally.roomsSafetyNumbersMatching) room(s) show "
                    + "matching safety numbers and \(tally.roomsSafetyNumbersDiffering) different ones")
            } else if let client = unconnected {
                fail(.authentication, "client \(client.index) is not connected (to the relay's endpoint) at the end")
            }
        }
    }

    /// The session ended because its unconfirmed password tags reached the budget.
    func spentGuessBudget(_ client: WorldClient) -> Bool {
        guard let session = client.driver?.session else { return false }
        return session.passwordRunsUnconfirmed >= session.configuration.passwordRunsUnconfirmedMax
    }

    func collectStatistics(_ session: SessionManager) {
        let statistics = session.statistics
        counters.handshakesCompleted += statistics.handshakesCompleted
        counters.retransmissions += statistics.retransmissions
        counters.duplicatesDropped += statistics.duplicatesDropped
        counters.framesRejected += statistics.framesRejected
        counters.passwordRunsUnconfirmedMost = max(counters.passwordRunsUnconfirmedMost, session.passwordRunsUnconfirmed)
    }

    /// The relay process's counts, before a crash loses them (and at the end).
    func collectRelayCounters() {
        let relay = world.relay.counters
        relayTotals.framesForwarded += relay.framesForwarded
        relayTotals.binarySignals += relay.binarySignalsReceived
        relayTotals.signalsConverted += relay.signalsConverted
        relayTotals.pingsSent += relay.pingsSent
        relayTotals.rateLimited += relay.rejections(.rateLimited)
        relayTotals.joinRateLimited += relay.rejections(.joinRateLimited)
        relayTotals.idleTimeouts += relay.rejections(.idleTimeout)
        relayTotals.refused += relay.rejections(.connectionsMax) + relay.rejections(.connectionsPerAddressMax)
    }

    func report(events: UInt64, wall: Duration) -> SimulationReport {
        var connected = 0
        var other = 0
        var failed: [String: Int] = [:]
        for client in peerClients {
            if let status = client.exitStatus {
                failed[status.causeName, default: 0] += 1
            } else if client.driver?.session.state == .connected {
                connected += 1
            } else {
                other += 1
            }
        }
        if world.isCluster { collectNodeCounters() } else { collectRelayCounters() }
        let (pending, lostWithSender, shownButUndeliverable) = ledger.tally()
        handshakeLatencies.sort()
        deliveryLatencies.sort()
        func milliseconds(_ value: UInt64?) -> Double { Double(value ?? 0) / 1_000_000 }
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18
        let network = world.counters
        return SimulationReport(
            settings: settings, reproduce: nil, violation: violation, traceHash: trace.hasher.hex, events: events,
            staleTimers: counters.staleTimers, traceRecords: trace.recordCount,
            virtualMilliseconds: world.now.milliseconds, wallSeconds: wallSeconds,
            eventsPerSecond: wallSeconds > 0 ? Double(events) / wallSeconds : 0,
            sessions: .init(total: peerClients.count, connected: connected, failed: failed, other: other),
            messages: .init(
                typed: counters.typed, refused: counters.refused, accepted: counters.accepted,
                delivered: counters.delivered, undeliverable: counters.undeliverable, lostWithSender: lostWithSender,
                shown: counters.shown, shownButReportedUndeliverable: shownButUndeliverable, stillPending: pending),
            latency: .init(
                handshakeP50Milliseconds: milliseconds(percentile(handshakeLatencies, 50)),
                handshakeP99Milliseconds: milliseconds(percentile(handshakeLatencies, 99)),
                handshakes: handshakeLatencies.count,
                deliveryP50Milliseconds: milliseconds(percentile(deliveryLatencies, 50)),
                deliveryP99Milliseconds: milliseconds(percentile(deliveryLatencies, 99)),
                deliveries: deliveryLatencies.count),
            network: .init(
                framesSent: network.framesSent, framesDropped: network.framesDropped,
                framesDuplicated: network.framesDuplicated, framesLost: network.framesLost,
                connections: network.connections, connectFailures: network.connectFailures, resets: network.resets,
                partitions: network.partitions, relayCrashes: network.relayCrashes,
                peerRestarts: network.processCrashes, relayErrors: counters.relayErrors,
                squatterJoins: counters.squats, squatterJoinsRefused: counters.squatsRefused,
                squatterJoinsSeated: counters.squatsSeated, linksOverMark: network.linksOverMark,
                framesDroppedOverMark: network.framesDroppedOverMark),
            relay: relayTotals,
            core: .init(
                handshakesCompleted: counters.handshakesCompleted, retransmissions: counters.retransmissions,
                duplicatesDropped: counters.duplicatesDropped, framesRejected: counters.framesRejected,
                suspiciousRejections: counters.suspicious),
            liveness: .init(
                healedAtMilliseconds: healedAt?.milliseconds, boundMilliseconds: settings.livenessBoundMilliseconds,
                convergedAtMilliseconds: convergedAt?.milliseconds,
                convergenceMilliseconds: convergedAt.flatMap { end in
                    healedAt.map { end.duration(since: $0).wholeMilliseconds }
                }),
            authentication: authenticationAtConvergence ?? tallyAuthentication(),
            leaving: settings.leaveRandomly
                ? .init(
                    leavers: counters.leavers, leftCleanly: counters.leftCleanly,
                    leftAtDeadline: counters.leftAtDeadline,
                    drainTimeoutMilliseconds: settings.drainTimeoutMilliseconds,
                    spareMilliseconds: settings.leaveSpareMilliseconds)
                : nil,
            files: filesReport())
    }
}

extension ClientExitStatus {
    /// A stable cause name for the report.
    var causeName: String {
        switch self {
        case .success: "left"
        case .usage: "usage"
        case .relayRefused: "relay refused"
        case .connectionFailed: "no relay"
        case .undelivered: "left with messages undelivered"
        case .internalFailure: "internal failure"
        case .authenticationFailed: "authentication failed"
        case .incompatiblePeer: "incompatible peer"
        case .filesFailed: "files failed"
        case let .signal(number): "signal \(number)"
        }
    }
}
