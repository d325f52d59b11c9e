import ChatCore
import ChatTesting

/// The users: each starts securechat at a random moment early in the run, then types
/// `messagesPerPeer` messages at random times in the fault phase (pipe mode: every line a message).
extension Simulation {
    func scheduleWorkload(for index: Int, spread: Duration) {
        let start = Instant(nanoseconds: workloadRandom.inRange(0...spread.wholeNanoseconds))
        world.schedule(SimEvent.start.rawValue, client: Int32(index), at: start)
        // The user's typing: sorted uniform times over the fault phase.
        var times = (0..<settings.messagesPerPeer).map { _ in
            Instant(nanoseconds: workloadRandom.inRange(spread.wholeNanoseconds...faultPhaseEnd.nanoseconds))
        }
        times.sort()
        users[index].sendTimes = times
        if let first = times.first { world.schedule(SimEvent.userTypes.rawValue, client: Int32(index), at: first) }
    }

    /// With random leavers, half the users end their input at a random moment of the fault phase,
    /// drawn from their own stream (so every other draw is that of the same seed without leavers).
    func scheduleLeaving(for index: Int, spread: Duration) {
        guard settings.leaveRandomly, leaveRandom.chance(0.5) else { return }
        let at = Instant(nanoseconds: leaveRandom.inRange(spread.wholeNanoseconds...faultPhaseEnd.nanoseconds))
        world.schedule(SimEvent.userLeaves.rawValue, client: Int32(index), at: at)
    }

    func userLeaves(_ index: Int) {
        counters.leavers += 1
        users[index].leaves = true
        endInput(index)
    }

    /// The user's input ends (pipe mode): the process drains, says goodbye and exits by its drain
    /// deadline. A process that is down ends its input as soon as it is back.
    func endInput(_ index: Int) {
        users[index].inputEnded = true
        guard world.clients[index].isRunning else { return }
        users[index].drainDeadline = world.now.advanced(by: .milliseconds(settings.drainTimeoutMilliseconds))
        world.endInput(at: index)
    }

    func start(_ index: Int) {
        world.startProcess(index)
        users[index].observedState = .initial
    }

    /// The user types the next message: a canary text that names it. A user whose process is down
    /// types again once it is back.
    func userTypes(_ index: Int) {
        guard !users[index].inputEnded else { return }  // The user left: nothing more is typed.
        guard world.clients[index].isRunning else {
            let retry = users[index].restartAt.map { $0.advanced(by: .nanoseconds(1)) } ?? world.now
            if users[index].restartAt != nil {
                world.schedule(SimEvent.userTypes.rawValue, client: Int32(index), at: max(retry, world.now))
            }
            return
        }
        let client = world.clients[index]
        let number = ledger.typed(by: index, incarnation: client.incarnation, at: world.now)
        let text = Canary.text(
            client: index, incarnation: Int(client.incarnation), number: number,
            fillerLength: Int(workloadRandom.below(48)), fillerSeed: workloadRandom.next())
        counters.typed += 1
        record(.userTypes, client: index, value: UInt64(number))
        users[index].typing = number
        world.type(text, at: index)
        users[index].typing = -1
        users[index].nextSend += 1
        if users[index].nextSend < users[index].sendTimes.count {
            let next = max(world.now, users[index].sendTimes[users[index].nextSend])
            world.schedule(SimEvent.userTypes.rawValue, client: Int32(index), at: next)
        }
    }
}

/// The squatters (`--squatters`): strangers who know a room's room part (all the relay sees of a
/// code) and keep trying to take a seat in it. A squatter tries only while the relay holds both of
/// its room's seats (live or reserved), so that every attempt tests the two-peer cap and none
/// takes a seat an honest peer is about to need; a seat that frees while its JOIN is on the way is
/// taken and given back at once (a clean close frees it).
extension Simulation {
    /// The squatter's next attempt, 0.5 to 3 s from now, while the fault phase lasts.
    func scheduleSquat(_ index: Int) {
        let at = world.now.advanced(by: .milliseconds(Int64(workloadRandom.inRange(500...3_000))))
        guard at < faultPhaseEnd else { return }
        world.schedule(SimEvent.squat.rawValue, client: Int32(index), at: at)
    }

    func squat(_ index: Int) {
        let room = RoomCode.simulated(roomIndex(of: index))
        let full = world.isCluster ? world.redisSeats(in: room).count == RoomCode.peersMax
            : world.relayUp && !world.relayFrozen && world.relay.rooms.occupancy(of: room) == RoomCode.peersMax
        if full, world.squat(index)
        {
            counters.squats += 1
        }
        scheduleSquat(index)
    }
}

/// A relay in the middle: who the clients' peer really is, and the users' re-runs.
extension Simulation {
    /// The relay's endpoints play every client's peer (`--attack endpoints`).
    var attackerPlaysPeer: Bool { settings.attack == .endpoints }

    /// No session may ever reach CONNECTED: the relay plays the peer with a wrong password, or
    /// substitutes every key.
    var attackerBlocksConnection: Bool {
        (settings.attack == .endpoints && settings.password) || settings.attack == .substituteKeys
    }

    /// A relay ERROR ended `index`'s run. With a relay in the middle its user runs the same code
    /// again 0.5-3 s later, unless the client said the code is spent (the user heeds it): the
    /// `guess-bound` invariant counts the tags across those runs.
    func relayRefused(_ index: Int) {
        guard let adversary, !users[index].toldCodeSpent, users[index].restartAt == nil else { return }
        let at = world.now.advanced(by: .milliseconds(adversary.random.inRange(500...3_000)))
        users[index].restartAt = at
        world.schedule(SimEvent.rerun.rawValue, client: Int32(index), at: at)
    }

    func rerun(_ index: Int) {
        guard !world.clients[index].isRunning else { return }
        users[index] = User(sendTimes: users[index].sendTimes, nextSend: users[index].nextSend)
        record(.clientStart, client: index, value: 1)
        world.startProcess(index)
    }
}
