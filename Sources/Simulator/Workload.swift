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

    func start(_ index: Int) {
        world.startProcess(index)
        users[index].observedState = .initial
    }

    /// The user types the next message: a canary text that names it. A user whose process is down
    /// types again once it is back.
    func userTypes(_ index: Int) {
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
