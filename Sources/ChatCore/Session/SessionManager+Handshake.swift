// The coordinator's side of the handshake: it routes openings and confirmations to the
// `HandshakeMachine`, sends what the machine hands back, and drives the lifecycle around it.

extension SessionManager {
    /// A peer is in the room: open a handshake.
    func peerArrived(now: Instant) {
        guard apply(.peerFound) else { return }
        startHandshake(now: now)
    }

    /// Open a fresh handshake (from USER_FOUND).
    private func startHandshake(now: Instant) {
        precondition(lifecycle.state == .userFound)
        dropHandshake()
        let frame = handshake.open(now: now, nextReceiveSequence: channel.nextReceiveSequence, entropy: entropy)
        guard apply(.keysGenerated) else { return }
        transmit(frame)
    }

    /// A fresh opening in place of the one under way (the peer began again, or our CPace run
    /// aborted); while CONNECTED it runs beside the keys in use, which stay until it is confirmed.
    /// `declining`: the peer opening this one must not pair with (the restart rule).
    private func reopen(now: Instant, declining: HandshakeHello?) {
        guard lifecycle.state == .keySetup || lifecycle.state == .connected else { return }
        transmit(handshake.open(now: now, nextReceiveSequence: channel.nextReceiveSequence, entropy: entropy))
        if let declining { handshake.setAside(declining) }
    }

    /// Forget the handshake and the keys (the conversation's queue and numbering stay).
    func dropHandshake() {
        handshake.drop()
        channel.close()
    }

    /// The handshake cannot be authenticated. Without keys in use the session ends, loudly: it
    /// was a mistyped code or someone in the middle, and either way no key may be accepted.
    /// CONNECTED on keys already proven, only the re-key is refused (and said): nothing
    /// unauthenticated may end or degrade a working session.
    private func authenticationFailed(_ failure: AuthenticationFailure) {
        if lifecycle.state == .connected {
            handshake.dropAttempt()
            outputs.notice(.handshakeRefused(failure))
        } else {
            end(.authenticationFailed(failure))
        }
    }

    func receiveHello(_ signal: Signal, now: Instant) {
        let hello: HandshakeHello
        switch handshake.screen(signal) {
        case let .accepted(value):
            hello = value
        case let .rejected(rejection):
            reject(rejection)
            return
        case let .refused(.mode(failure)):
            authenticationFailed(failure)
            return
        case let .refused(.version(version)):
            // Another protocol version can never agree on keys with us: say so rather than stall.
            if lifecycle.state == .connected {
                reject(.handshake(.unsupportedVersion(version)))
            } else {
                end(.incompatiblePeer(version: version))
            }
            return
        }
        switch handshake.answer(hello) {
        case .noHandshake:
            guard awaitsPeer else {
                reject(.state(.init(state: lifecycle.state, event: .peerFound)))
                return
            }
            // The peer's hello arrived before (or without) PEER_FOUND: a peer is evidently here.
            outputs.notice(.peerFound)
            peerArrived(now: now)
            pair(with: hello, now: now)
        case .pair:
            pair(with: hello, now: now)
        case let .repeatOfPairing(confirmFrame):
            outputs.statistics.duplicatesDropped += 1
            transmit(confirmFrame)
        case .stale:
            reject(.handshake(.staleHello))
        case .setAside:
            handshake.setAside(hello)
            reject(.handshake(.staleHello))
        case let .restart(pairNow):
            reopen(now: now, declining: pairNow ? nil : hello)
            if pairNow { pair(with: hello, now: now) }
        }
    }

    /// Pair our opening with the peer's and send our confirmation.
    private func pair(with hello: HandshakeHello, now: Instant) {
        switch handshake.pair(with: hello) {
        case .notOpened:
            break
        case let .rejected(rejection, runFinished):
            reject(rejection)
            if runFinished { reopen(now: now, declining: nil) }
        case let .failed(failure):
            authenticationFailed(failure)
        case let .paired(paired):
            if let attempt = paired.passwordAttempt {
                outputs.notice(.reauthenticating(attempt: attempt, of: configuration.passwordRunsUnconfirmedMax))
            }
            transmit(paired.confirmFrame)
            if let early = paired.earlyConfirmation {
                receiveKeyConfirm(Signal(kind: .keyConfirm, payload: early.payload), now: now)
            }
        }
    }

    func receiveKeyConfirm(_ signal: Signal, now: Instant) {
        switch handshake.receiveConfirmation(signal, nextSendSequence: channel.nextSendSequence) {
        case .unexpected:
            reject(.state(.init(state: lifecycle.state, event: .keyConfirmed)))
        case .duplicate:
            // A repeat of a confirmation already accepted: the peer has not yet heard from us
            // under the keys (ReliableChannel.Open.confirmation).
            outputs.statistics.duplicatesDropped += 1
            channel.reacknowledge(into: &outputs)
        case .held:
            break  // It overtook the peer's hello: kept until that comes.
        case let .pairSetAside(hello):
            pair(with: hello, now: now)
            // Now paired (or refused): judge the confirmation against the pairing, once.
            if case .paired? = handshake.attempt { receiveKeyConfirm(signal, now: now) }
        case let .restart(reference):
            reject(.handshake(.staleConfirmation))
            handshake.rememberAnswered(reference)
            reopen(now: now, declining: nil)
        case let .rejected(error):
            reject(.handshake(error))
        case let .failed(failure):
            authenticationFailed(failure)
        case let .confirmed(completion):
            finishHandshake(completion, now: now)
        }
    }

    /// The peer holds our keys: settle the conversation, hand the keys to the channel (in place
    /// of the old ones, for a re-key while CONNECTED), and go CONNECTED.
    private func finishHandshake(_ completion: HandshakeMachine.Completion, now: Instant) {
        let rekeyed = lifecycle.state == .connected
        if rekeyed { channel.close() }
        channel.continueConversation(completion.continuation, into: &outputs)
        room.handshakeCompleted()
        if !rekeyed {
            guard apply(.keyConfirmed) else { return }
        }
        outputs.statistics.handshakesCompleted += 1
        if completion.continuation.peerChanged { outputs.notice(.peerRestarted) }
        outputs.notice(.secured(
            resumed: completion.continuation.resumes, authentication: authentication,
            safetyNumber: completion.safetyNumber))
        channel.open(ratchet: completion.ratchet, confirmation: handshake.confirmFrame, now: now, into: &outputs)
    }
}
