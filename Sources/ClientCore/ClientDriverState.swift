import ChatCore

extension ClientDriver {
    /// The relay link. Each case carries what is valid in it, so nothing is re-proved elsewhere.
    enum Link: Hashable {
        /// Before `.start`.
        case idle
        /// An attempt to open connection `id` is under way; it is abandoned at `deadline`.
        case connecting(ConnectionID, deadline: Instant, Outage)
        /// Connection `id` is open.
        case up(ConnectionID, Keepalive, Admission)
        /// No connection; the next attempt is at `retryAt`.
        case waiting(retryAt: Instant, Outage)
        /// For good: the session ended, or the driver gave up.
        case closed

        /// The link's own timer, if any.
        var deadline: Instant? {
            switch self {
            case let .connecting(_, deadline, _): deadline
            case let .up(_, .listening(pingAt), _): pingAt
            case let .up(_, .pinged(deadAt), _): deadAt
            case let .waiting(retryAt, _): retryAt
            case .idle, .closed: nil
            }
        }

        /// For the status line.
        var relayState: RelayLinkState {
            switch self {
            case .idle: .connecting
            case let .connecting(_, _, outage): outage.afterLoss ? .retrying : .connecting
            case .up: .up
            case .waiting: .retrying
            case .closed: .closed
            }
        }
    }

    /// This client has no relay that accepts it: since when, and whether a link was up before.
    struct Outage: Hashable {
        /// The give-up clock: since the start, or since the loss of the link on which the relay
        /// last accepted this client.
        var since: Instant
        /// A link was up before: the next one is a reconnection (a notice says so, with re-keying).
        var afterLoss: Bool
    }

    /// Whether the relay has accepted this client into the room on the open link.
    enum Admission: Hashable {
        /// Not yet: the give-up clock runs on from `since`.
        case awaited(since: Instant)
        /// The relay answered JOINED: the backoff and the give-up clock restarted.
        case joined
    }

    /// The open link's liveness. A relay (or a path) can vanish without a FIN, and then nothing
    /// would tell the client, which would show "relay up" while its messages sat unacknowledged
    /// until TCP gave up (about 15 minutes). So the driver pings a quiet relay and drops a silent one.
    enum Keepalive: Hashable {
        /// Frames arrive; ping at `pingAt` unless one comes first.
        case listening(pingAt: Instant)
        /// A ping went out; the link is dead at `deadAt` unless a frame (of any kind) comes first.
        case pinged(deadAt: Instant)
    }

    /// The run, from taking input to exiting.
    enum Phase: Hashable {
        /// Taking input. `quitAsked`: `/quit` found unconfirmed messages and waits for a second one.
        case running(quitAsked: Bool)
        /// Pipe mode after end of input: leave once nothing is pending, or at `deadline`.
        case draining(deadline: Instant)
        /// Saying goodbye (the session's `.leave`): it ends once the peer has had its say, or the
        /// driver ends it at `deadline`.
        case leaving(deadline: Instant)
        /// This client asked the session to end, for `cause`; the session's `ended` notice follows
        /// within the same input.
        case ending(EndCause)
        /// The session is over and the exit status decided; the exit action goes out last in this input.
        case ended(ClientExitStatus)
        /// The shell was told to exit: every later input is ignored.
        case exited(ClientExitStatus)
    }

}

extension ClientDriver.Phase {
    /// When the driver stops waiting (draining, or saying goodbye).
    var deadline: Instant? {
        switch self {
        case let .draining(deadline), let .leaving(deadline): deadline
        case .running, .ending, .ended, .exited: nil
        }
    }
}

extension ClientDriver {
    /// Why this client ended the session.
    enum EndCause: Hashable {
        case userQuit
        case signal(Int32)
        case gaveUp
        case permanentFailure
        case drainTimedOut
    }
}
