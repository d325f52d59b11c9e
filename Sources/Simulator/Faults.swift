import ChatCore
import ChatTesting

/// The fault schedule and the liveness phase.
///
/// In the fault phase each client's connection is reset, its link partitioned and its process
/// crashed at random intervals (each kind on or off per run), and the relay crashes a few times;
/// every random choice comes from the fault stream. Then the heal: no more drops, duplicates, cuts
/// or crashes, the relay is up, and every session must converge within the liveness bound.
extension Simulation {
    func scheduleFaults(for index: Int, after start: Instant) {
        if let mean = settings.resetMeanIntervalMilliseconds {
            scheduleFault(.reset, client: index, meanMilliseconds: mean, after: start)
        }
        if let mean = settings.partitionMeanIntervalMilliseconds {
            scheduleFault(.partition, client: index, meanMilliseconds: mean, after: start)
        }
        if let mean = settings.peerRestartMeanIntervalMilliseconds {
            scheduleFault(.processCrash, client: index, meanMilliseconds: mean, after: start)
        }
    }

    /// The next occurrence of a per-client fault: uniform in [0, 2 × mean] after `after`, and only
    /// inside the fault phase.
    private func scheduleFault(_ event: SimEvent, client: Int, meanMilliseconds: UInt64, after: Instant) {
        let interval = faultRandom.inRange(0...(2 * meanMilliseconds * 1_000_000))
        let time = after.advanced(by: .nanoseconds(Int64(interval)))
        if time < faultPhaseEnd { world.schedule(event.rawValue, client: Int32(client), at: time) }
    }

    func reset(_ index: Int) {
        if let mean = settings.resetMeanIntervalMilliseconds {
            scheduleFault(.reset, client: index, meanMilliseconds: mean, after: world.now)
        }
        world.reset(index)
    }

    func partition(_ index: Int) {
        let length = Duration.milliseconds(faultRandom.inRange(200...max(200, settings.partitionMaxMilliseconds)))
        world.cut(index, for: length)
        if let mean = settings.partitionMeanIntervalMilliseconds {
            scheduleFault(.partition, client: index, meanMilliseconds: mean, after: world.clients[index].cutUntil)
        }
    }

    /// The process dies; a new one (new instance, new keys) starts 0.5-3 s later in the same room.
    /// What the old one had not had confirmed is lost with it: nobody is left to tell.
    /// `restartAfter`: the workload's own kill (`resumeKill`) waits a fixed time, drawing nothing.
    func processCrash(_ index: Int, restartAfter: Duration? = nil) {
        guard let driver = world.clients[index].driver, world.clients[index].isRunning else { return }
        collectStatistics(driver.session)
        if adversary != nil { guesses.crashed(index, instance: driver.session.localInstance.bytes) }
        ledger.crashed(index, incarnation: world.clients[index].incarnation)
        fileProcessCrashed(index)
        world.crashProcess(index)
        let restartAt = world.now.advanced(by: restartAfter ?? .milliseconds(faultRandom.inRange(500...3_000)))
        users[index].restartAt = restartAt
        world.schedule(SimEvent.processRestart.rawValue, client: Int32(index), at: restartAt)
    }

    func processRestart(_ index: Int) {
        users[index] = User(
            sendTimes: users[index].sendTimes, nextSend: users[index].nextSend, typing: -1, numbers: [],
            observedState: .initial, userFoundAt: nil, restartAt: nil, leaves: users[index].leaves,
            inputEnded: users[index].inputEnded)
        world.startProcess(index)
        if users[index].inputEnded { endInput(index) }
        if let mean = settings.peerRestartMeanIntervalMilliseconds {
            scheduleFault(.processCrash, client: index, meanMilliseconds: mean, after: world.now)
        }
    }

    func relayCrash() {
        guard world.relayUp, healedAt == nil else { return }
        collectRelayCounters()
        world.crashRelay()
        for index in roomMembers.indices { roomMembers[index].removeAll() }
        adversary?.relayCrashed()
        let downtime = Duration.milliseconds(faultRandom.inRange(200...max(200, settings.relayDowntimeMaxMilliseconds)))
        world.schedule(SimEvent.relayRestart.rawValue, at: world.now.advanced(by: downtime))
    }

    func relayRestart() {
        world.restartRelay()
    }

    // MARK: Liveness phase

    func heal() {
        healedAt = world.now
        record(.heal)
        world.heal()
        livenessDeadline = world.now.advanced(
            by: .milliseconds(settings.livenessBoundMilliseconds + settings.fileLivenessExtraMilliseconds))
        world.schedule(SimEvent.convergenceCheck.rawValue, at: world.now)
    }

    func convergenceCheck() {
        record(.convergenceCheck)
        var unconverged: [String] = []
        for index in 0..<settings.peers where !isConverged(index) {
            if unconverged.count < 8 { unconverged.append(describe(index)) } else { break }
        }
        if unconverged.isEmpty {
            convergedAt = world.now
            checkAuthentication()
            if violation == nil { beginGoodbye() }
            return
        }
        let deadline = livenessDeadline ?? world.now
        guard world.now < deadline else {
            // Sessions that converged but for a transfer under way break the files' liveness.
            let onlyFiles = files != nil && (0..<settings.peers).allSatisfy { isConverged($0, ignoringFiles: true) }
            fail(
                onlyFiles ? .fileLiveness : .liveness,
                "not converged \(deadline.duration(since: healedAt ?? .zero).wholeMilliseconds) ms after the heal: "
                    + unconverged.joined(separator: "; "))
            return
        }
        world.schedule(
            SimEvent.convergenceCheck.rawValue, at: min(world.now.advanced(by: Self.convergenceCheckInterval), deadline))
    }

    /// CONNECTED with nothing left to send; or exited (a reported terminal failure); or alone
    /// because the peer's process exited for good (what it still has pending can never be delivered:
    /// the goodbye phase has it reported).
    func isConverged(_ index: Int, ignoringFiles: Bool = false) -> Bool {
        let client = world.clients[index]
        // A user about to run the code again is not done.
        if users[index].restartAt != nil { return false }
        if client.exitStatus != nil { return true }
        guard let session = client.driver?.session else { return false }
        // When the relay's endpoint plays the client's peer, that peer never ends for good:
        // waiting for it is not an excuse.
        let peer = world.clients[world.peer(of: index)]
        if !attackerPlaysPeer && peer.exitStatus != nil && users[world.peer(of: index)].restartAt == nil { return true }
        // Connected to the peer's current process, not to one that has since restarted: a fresh
        // instance's handshake runs beside the keys in use until this side confirms it too.
        if !attackerPlaysPeer && peer.isRunning && users[index].securedWith != peer.incarnation { return false }
        return session.pendingCount == 0 && session.state == .connected && (ignoringFiles || filesIdle(index))
    }

    // MARK: The goodbye phase

    /// After convergence every user's input ends, as in pipe mode: each process drains, says
    /// goodbye and exits. Every one must exit within the bound; two peers connected to each other
    /// must both exit 0 (everything delivered, nothing reported undeliverable by the goodbye).
    /// Skipped when the relay's endpoints play the peers.
    func beginGoodbye() {
        guard !attackerPlaysPeer else {
            finished = true
            return
        }
        goodbye = Goodbye(
            startedAt: world.now, deadline: world.now.advanced(by: .milliseconds(settings.goodbyeBoundMilliseconds)),
            pairedRooms: (0..<settings.rooms).filter { room in
                // A room with a random leaver is checked as that user leaves (its peer may rightly
                // have reported messages typed after the goodbye undeliverable).
                (0..<RoomCode.peersMax).allSatisfy { side in
                    let client = world.clients[room * RoomCode.peersMax + side]
                    return client.isRunning && client.driver?.session.state == .connected
                        && !users[room * RoomCode.peersMax + side].leaves
                }
            })
        record(.goodbye)
        for index in 0..<settings.peers where !users[index].inputEnded { endInput(index) }
        world.schedule(SimEvent.goodbyeCheck.rawValue, at: world.now)
    }

    func goodbyeCheck() {
        guard let goodbye else { return }
        let running = (0..<settings.peers).filter { world.clients[$0].isRunning }
        guard running.isEmpty else {
            guard world.now < goodbye.deadline else {
                let names = running.prefix(8).map { describe($0) }.joined(separator: "; ")
                return fail(.liveness, "\(running.count) process(es) still running "
                    + "\(settings.goodbyeBoundMilliseconds) ms after their input ended: \(names)")
            }
            let next = min(world.now.advanced(by: Self.convergenceCheckInterval), goodbye.deadline)
            return world.schedule(SimEvent.goodbyeCheck.rawValue, at: next)
        }
        for room in goodbye.pairedRooms {
            for side in 0..<RoomCode.peersMax {
                let index = room * RoomCode.peersMax + side
                let status = world.clients[index].exitStatus
                guard status == .success || status.map({ fileFailuresExplainExit(index, $0) }) == true else {
                    let exit = status.map { "\($0)" } ?? "no exit"
                    return fail(.cleanLeave, "client \(index) left a connected peer with \(exit) "
                        + "instead of exit 0: the goodbye lost what was in flight")
                }
            }
        }
        finished = true
    }

    func describe(_ index: Int) -> String {
        let client = world.clients[index]
        guard let driver = client.driver else { return "client \(index): crashed" }
        let transfers = driver.status.transfers.map { "\($0.direction) \($0.name) \($0.bytes)/\($0.sizeBytes)" }
        return "client \(index) \(driver.session.state) pending \(driver.session.pendingCount) "
            + "relay \(driver.status.relay)"
            + (transfers.isEmpty ? "" : " files [\(transfers.joined(separator: ", "))]")
    }
}
