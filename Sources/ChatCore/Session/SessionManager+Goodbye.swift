// The coordinator's side of the goodbye (ReliableChannel+Goodbye.swift has the protocol).

extension SessionManager {
    /// `.leave`: say goodbye while CONNECTED and end once it is done. Without keys, end now,
    /// unless there is a conversation whose peer may still have records for us in flight (a link
    /// dropped; the peer did not say goodbye and leave): then the goodbye waits for the keys to come
    /// back (`ReliableChannel.open` sends the BYE), and the caller's deadline bounds the wait.
    func leave(now: Instant) {
        guard lifecycle.state != .destroyed else { return }
        guard lifecycle.state == .connected else {
            if handshake.confirmedPeer != nil && !channel.farewell.peerGone {
                channel.startLeaving(now: now, into: &outputs)
            } else {
                end(.userQuit)
            }
            return
        }
        channel.startLeaving(now: now, into: &outputs)
        finishLeavingIfDone(now: now)
    }

    /// `.quit`: one BYE so that a connected peer learns it at once, then the end.
    func quit() {
        guard lifecycle.state != .destroyed else { return }
        if lifecycle.state == .connected { channel.sayGoodbyeOnce(into: &outputs) }
        end(.userQuit)
    }

    func receiveGoodbye(_ signal: Signal, now: Instant) {
        switch channel.receiveGoodbye(signal, now: now, into: &outputs) {
        case .closed:
            reject(.state(.init(state: lifecycle.state, event: .receiveMessage)))
        case let .rejected(rejection):
            reject(rejection)
        case let .accepted(peerStartedLeaving):
            if peerStartedLeaving { outputs.notice(.peerLeaving) }
        }
        finishLeavingIfDone(now: now)
    }

    func goodbyeTimeout(now: Instant) {
        channel.goodbyeTimeout(now: now, into: &outputs)
    }

    /// Leaving, and nothing is left in either direction: a last BYE (a peer that leaves too learns
    /// that we have everything it sent), and the session ends.
    func finishLeavingIfDone(now: Instant) {
        guard lifecycle.state == .connected && channel.goodbyeComplete else { return }
        channel.sayGoodbyeOnce(into: &outputs)
        end(.userQuit)
    }
}
