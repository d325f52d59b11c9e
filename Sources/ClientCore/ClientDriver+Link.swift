import ChatCore

/// The relay link: opening, keepalive, loss, backoff, give-up.
extension ClientDriver {
    /// What follows a failed or lost link.
    enum Retry {
        /// Another attempt after `delay` (attempt number `attempt` since the relay last accepted us).
        case after(Duration, attempt: Int)
        /// The relay has not accepted this client for `giveUpAfter`: stop.
        case giveUp
    }

    func start(now: Instant) {
        guard case .idle = link else { return }
        if let invitation = configuration.invitation {
            show(.roomCreated(room: configuration.session.room, invitation: invitation))
        }
        notify(.connecting(configuration.route))
        connect(Outage(since: now, afterLoss: false), now: now)
    }

    func connect(_ outage: Outage, now: Instant) {
        let id = ConnectionID(nextConnection)
        nextConnection += 1
        link = .connecting(id, deadline: now.advanced(by: configuration.connectTimeout), outage)
        act(.connect(id))
    }

    func linkOpened(_ id: ConnectionID, now: Instant) {
        guard case let .connecting(current, _, outage) = link, current == id else { return }
        link = .up(id, listening(now), .awaited(since: outage.since))
        notify(outage.afterLoss ? .reconnected : .relayConnected(configuration.route))
        feed(.transportUp, now: now)
    }

    /// A frame of any kind arrived on `id`. True when `id` is the open link, whose keepalive then
    /// starts over; false for a stale or closed one (its frame is ignored).
    func heard(_ id: ConnectionID, now: Instant) -> Bool {
        guard case let .up(current, _, admission) = link, current == id else { return false }
        link = .up(id, listening(now), admission)
        return true
    }

    private func listening(_ now: Instant) -> Keepalive {
        .listening(pingAt: now.advanced(by: configuration.keepalive))
    }

    /// The relay accepted this client: the link works, so the backoff and the give-up clock restart.
    func admitted() {
        backoff.reset()
        if case let .up(id, keepalive, _) = link { link = .up(id, keepalive, .joined) }
    }

    /// The link's timer: abandon a slow attempt, ping a quiet relay, drop a silent one, retry.
    func linkTimeout(now: Instant) {
        switch link {
        case let .connecting(id, deadline, _) where deadline <= now:
            act(.close(id))
            let reason = ClientNotice.connectTimedOut(configuration.connectTimeout)
            linkEnded(id, reason: reason, permanent: false, now: now)
        case let .up(id, .listening(pingAt), admission) where pingAt <= now:
            link = .up(id, .pinged(deadAt: now.advanced(by: configuration.keepalive)), admission)
            act(.ping(id))
        case let .up(id, .pinged(deadAt), _) where deadAt <= now:
            act(.close(id))
            linkEnded(id, reason: ClientNotice.silentRelayReason(configuration.keepalive), permanent: false, now: now)
        case let .waiting(retryAt, outage) where retryAt <= now:
            connect(outage, now: now)
        case .idle, .connecting, .up, .waiting, .closed:
            break
        }
    }

    /// Connection `id` closed or failed to open (ignored unless it is the current one).
    func linkEnded(_ id: ConnectionID, reason: String, permanent: Bool, now: Instant) {
        switch link {
        case let .up(current, _, admission) where current == id:
            let since = if case let .awaited(since) = admission { since } else { now }
            let retry = planRetry(Outage(since: since, afterLoss: true), now: now)
            peer = .unknown
            notify(.relayLost(reason))
            feed(.transportDown, now: now)
            announce(retry, now: now)
        case let .connecting(current, _, outage) where current == id:
            guard !permanent else {
                link = .closed
                notify(.relayUnusable(reason))
                quit(.permanentFailure, now: now)
                return
            }
            let retry = planRetry(outage, now: now)
            notify(.relayUnreachable(reason))
            announce(retry, now: now)
        case .idle, .connecting, .up, .waiting, .closed:
            return  // A stale connection, or one already given up.
        }
    }

    /// Decide what follows a lost or failed link, and move the link there. The last attempt is
    /// made by the give-up deadline, so giving up is not delayed by a long backoff.
    private func planRetry(_ outage: Outage, now: Instant) -> Retry {
        let giveUpAt = outage.since.advanced(by: configuration.giveUpAfter)
        guard now < giveUpAt else {
            link = .closed
            return .giveUp
        }
        let attempt = backoff.attempt + 1
        let retryAt = min(now.advanced(by: backoff.nextDelay(entropy: entropy)), giveUpAt)
        link = .waiting(retryAt: retryAt, outage)
        return .after(retryAt.duration(since: now), attempt: attempt)
    }

    private func announce(_ retry: Retry, now: Instant) {
        switch retry {
        case let .after(delay, attempt):
            notify(.retrying(in: delay, attempt: attempt))
        case .giveUp:
            notify(.gaveUp(after: configuration.giveUpAfter))
            quit(.gaveUp, now: now)
        }
    }

    /// The session is over: close whatever connection is open or opening, for good.
    func closeLink() {
        switch link {
        case let .up(id, _, _), let .connecting(id, _, _): act(.close(id))
        case .idle, .waiting, .closed: break
        }
        link = .closed
    }
}
