// How the handshake machine takes a peer's opening: screening (what no state could take) and
// answering (how it meets the handshake under way).

extension HandshakeMachine {
    /// The first look at a peer's opening, the same in every state.
    enum Screening {
        case accepted(HandshakeHello)
        /// Dropped; the session carries on.
        case rejected(FrameRejection)
        /// No handshake with this opening can ever succeed: the other mode (a password on one side
        /// only, or a relay that swapped the handshake), or another protocol version. Whether it
        /// ends the session is the caller's call (not while CONNECTED on proven keys).
        case refused(Refusal)
    }

    /// Why an opening can never lead to keys.
    enum Refusal: Hashable {
        case mode(AuthenticationFailure)
        case version(UInt8)
    }

    /// Decode the peer's opening and refuse what no state could take. This is the one place that
    /// validates a hello's fields (sizes, version, the retained-id count; the resume point is
    /// bounded against the conversation when the pairing is confirmed).
    func screen(_ signal: Signal) -> Screening {
        let hello: HandshakeHello
        do {
            hello = try HandshakeHello(signal: signal)
        } catch let .unsupportedVersion(version) {
            return .refused(.version(version))
        } catch {
            return .rejected(.handshake(error))
        }
        guard hello.instance != localInstance else {
            // Our own hello sent back (by a relay): taking it for a new peer would start a
            // handshake with ourselves.
            return .rejected(.crypto(.reflectedPublicKey))
        }
        guard hello.kind == helloKind else {
            return .refused(.mode(password == nil ? .peerHasPassword : .peerHasNoPassword))
        }
        if hello.kind == .pake, !CPace.isValidShare(hello.key) {
            // Refused before it reaches a CPace run, which would otherwise have to abort.
            return .rejected(.handshake(.invalidShare))
        }
        guard !retiredPeers.contains(hello.instance) else { return .rejected(.handshake(.retiredInstance)) }
        if let confirmedPeer, hello.instance == confirmedPeer.instance, hello.epoch < confirmedPeer.epoch {
            // Older than the handshake we last completed with this peer: a delayed copy. Epochs
            // are compared only with a confirmed one: an unconfirmed hello's epoch proves nothing.
            return .rejected(.handshake(.staleHello))
        }
        return .accepted(hello)
    }

    /// How a screened opening meets the handshake under way.
    enum Answer {
        /// No handshake and no keys: whether one starts is the lifecycle's call (then `pair`).
        case noHandshake
        /// Our opening is unanswered: pair it with this one (`pair(with:)`).
        case pair
        /// A repeat of the opening we paired with or confirmed (the peer has not seen our
        /// confirmation): answer with it, and only it (answering a hello with a hello could
        /// ping-pong forever).
        case repeatOfPairing(confirmFrame: [UInt8])
        case stale
        /// The peer began again (a reconnect, a new process, or a relay's forgery): open afresh
        /// (our opening answers one peer opening at most) and, when `pairNow`, pair the new opening
        /// with this one. Otherwise set it aside and wait for the peer to answer ours (see `answer`).
        case restart(pairNow: Bool)
        /// Our opening is unanswered, but the peer may have spent this opening's key on an earlier
        /// one of ours: set it aside (`setAside`) until the peer's confirmation shows otherwise.
        case setAside
    }

    /// Meet a screened opening with the handshake under way.
    ///
    /// The restart rule breaks the chase of two sides that each answer the other's new opening
    /// with a new one of their own (found by FuzzSession before v3, which answered with the share
    /// already announced instead; that reused a CPace scalar): only the side with the lower
    /// instance ID pairs its fresh opening with the peer's new one at once. The other opens fresh
    /// and waits for an opening that answers it, declining the one that made it restart unless the
    /// peer's confirmation shows that it answered ours after all (`receiveConfirmation`).
    func answer(_ hello: HandshakeHello) -> Answer {
        switch state {
        case .idle:
            // The confirmed peer's opening again after it left (a copy the network duplicated or
            // a relay replays): taken for a fresh one, it would fail as a forged restart.
            return isStale(hello) ? .stale : .noHandshake
        case let .handshaking(attempt):
            return answer(hello, during: attempt)
        case let .connected(confirmed, rekey):
            if hello == confirmed.peer { return .repeatOfPairing(confirmFrame: confirmed.confirmFrame) }
            if let rekey { return answer(hello, during: rekey) }
            if isStale(hello) || answered.contains(hello.reference) { return .stale }
            // A re-key beside the keys in use: the peer lost its keys (it reconnected without
            // our hearing PEER_LEFT), or someone is trying; only a confirmation will tell.
            return .restart(pairNow: true)
        }
    }

    private func answer(_ hello: HandshakeHello, during attempt: Attempt) -> Answer {
        switch attempt {
        case let .opened(_, waiting):
            if isStale(hello) || waiting.setAside.contains(where: { isOlder(hello, than: $0) }) { return .stale }
            guard answered.contains(hello.reference) else { return .pair }
            // Seen before: its key may be spent on an earlier opening of ours. A confirmation
            // that overtook it says it answered this one.
            return waiting.earlyConfirmation?.sender == hello.reference ? .pair : .setAside
        case let .paired(_, pairing):
            if hello == pairing.peer { return .repeatOfPairing(confirmFrame: pairing.confirmFrame) }
            if hello.reference == pairing.peer.reference || isStale(hello) || answered.contains(hello.reference)
                || isOlder(hello, than: pairing.peer) {
                return .stale
            }
            return .restart(pairNow: localInstance < hello.instance)
        }
    }

    /// No newer than the handshake last confirmed with its instance.
    private func isStale(_ hello: HandshakeHello) -> Bool {
        guard let confirmedPeer, confirmedPeer.instance == hello.instance else { return false }
        return hello.epoch <= confirmedPeer.epoch
    }

    /// `hello` comes from the same instance as `newer` with a lower epoch: a delayed copy of an
    /// opening the peer has replaced. Not applied to the confirmed peer's instance: there a
    /// forged hello with a huge epoch would make the real peer's next ones look stale, and a
    /// continued handshake costs no password guess, so answering one more is cheap.
    private func isOlder(_ hello: HandshakeHello, than newer: HandshakeHello) -> Bool {
        hello.instance == newer.instance && hello.epoch < newer.epoch && hello.instance != confirmedPeer?.instance
    }
}
