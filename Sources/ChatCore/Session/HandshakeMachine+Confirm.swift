// How the handshake machine pairs our opening with the peer's and judges the peer's confirmation.

extension HandshakeMachine {
    enum PairingResult {
        case paired(Paired)
        /// Refused (the frame is dropped). `runFinished`: our CPace run is over, so a fresh
        /// opening is needed rather than staying stuck.
        case rejected(FrameRejection, runFinished: Bool)
        /// This opening cannot be authenticated (the caller ends the session, or refuses the
        /// re-key while CONNECTED on proven keys).
        case failed(AuthenticationFailure)
        /// No opening waits for a peer (nothing to do).
        case notOpened
    }

    struct Paired {
        let confirmFrame: [UInt8]
        /// A confirmation of this very pairing that arrived before the peer's opening: judge it now.
        let earlyConfirmation: KeyConfirmation?
        /// With a password: this pairing gave out a tag and it is not the session's first (the peer
        /// began again, or someone is trying): the count of unconfirmed tags now, for the notice.
        let passwordAttempt: Int?
    }

    /// Pair our opening with the peer's, derive what the peer must confirm, and make our
    /// confirmation. Keyed with a secret both sides retained from an earlier handshake when the
    /// two hellos name one (no password guess, and continuity proven); else with the password,
    /// or (without one) by nothing but the safety number. Nothing is encrypted under the new keys
    /// until the peer's confirmation verifies.
    mutating func pair(with peer: HandshakeHello) -> PairingResult {
        guard case let .opened(opening, waiting)? = attempt else { return .notOpened }
        guard peer.key != opening.hello.key else {
            // Our own key or share under someone else's hello: a reflection.
            return .rejected(.crypto(.reflectedPublicKey), runFinished: false)
        }
        let retained = continuity.common(local: opening.hello, peer: peer)
        if retained == nil, confirmedPeer?.instance == peer.instance {
            // The peer instance we confirmed is back and can key with none of the secrets we keep
            // for it: not that peer (a forged restart). The password is not offered instead: it
            // authenticates only the first handshake with an instance (each use is a guess).
            return .failed(.continuityNotProven)
        }
        let safetyNumber = retained?.safetyNumber ?? SafetyNumber(
            room: configuration.room, local: opening.hello.safetyNumberParty, peer: peer.safetyNumberParty)
        var passwordAttempt: Int?
        let derived: Derivation
        if retained == nil, case let .cpace(party) = opening.secret {
            // A password tag: each lets whoever answered test one guess (the guess budget).
            guard passwordRunsUnconfirmed < configuration.passwordRunsUnconfirmedMax else {
                return .failed(.tooManyAttempts(passwordRunsUnconfirmed))
            }
            guard let pending = try? party.receive(peerShare: peer.key, peerAssociatedData: peer.payload) else {
                // The share was screened (valid, not ours), so this is not expected; the run is
                // over either way: begin a fresh one rather than stay stuck.
                return .rejected(.handshake(.invalidShare), runFinished: true)
            }
            passwordRunsUnconfirmed += 1
            passwordTagsGiven += 1
            if passwordTagsGiven > 1 { passwordAttempt = passwordRunsUnconfirmed }
            // Kept in case the peer confirms this run and its tag to us is lost: our next hello
            // then names a secret it holds (its id tests the same single guess as our tag).
            let tentative = pending.withUnconfirmedISK { isk in
                let master = SessionKeyDerivation.masterKey(handshakeSecret: isk, transcriptHash: pending.sidOutput)
                defer { master.wipe() }
                return RetainedSecret(master: master, peer: peer.instance, safetyNumber: safetyNumber, confirmed: false)
            }
            if let tentative { continuity.keepTentative(tentative, sparing: supersededSecretIDs) }
            derived = Derivation(
                runID: Array(pending.sidOutput.prefix(KeyConfirmation.runIDByteCount)), proof: pending.localTag,
                peerProof: .tag(pending))
        } else {
            switch Self.deriveKeys(opening.secret, local: opening.hello, peer: peer, retained: retained,
                                   safetyNumber: safetyNumber, room: configuration.room) {
            case let .derived(value): derived = value
            case let .refused(rejection): return .rejected(rejection, runFinished: !opening.secret.canAnswer)
            }
        }
        if case let .sealed(_, _, next) = derived.peerProof {
            continuity.keepTentative(next, sparing: supersededSecretIDs)
        }
        let confirmation = KeyConfirmation(
            runID: derived.runID, receiver: peer.reference, sender: opening.hello.reference, proof: derived.proof)
        let pairing = Pairing(
            peer: peer, runID: derived.runID, confirmFrame: confirmation.frame, safetyNumber: safetyNumber,
            proof: derived.peerProof, continued: retained != nil)
        rememberAnswered(peer.reference)
        setAttempt(.paired(opening, pairing))
        let early = waiting.earlyConfirmation.flatMap { $0.sender == peer.reference ? $0 : nil }
        return .paired(Paired(confirmFrame: confirmation.frame, earlyConfirmation: early,
                              passwordAttempt: passwordAttempt))
    }

    /// A confirmed handshake: how the conversation continues, its keys and its safety number.
    struct Completion {
        let continuation: ConversationContinuation
        let ratchet: MessageRatchet
        let safetyNumber: SafetyNumber
        /// Keyed with a retained secret: the same peer, proven.
        let continued: Bool
    }

    enum ConfirmationResult {
        /// The pairing is proven and is the session's now (the opening's secret is wiped).
        case confirmed(Completion)
        /// A repeat of the confirmation of the keys in use.
        case duplicate
        /// No handshake is under way.
        case unexpected
        /// It overtook the peer's opening: held until that comes.
        case held
        /// It shows that the peer answered our opening with one we set aside: pair with that
        /// (`pair(with:)`), then judge the confirmation again.
        case pairSetAside(HandshakeHello)
        /// It shows that the peer answered our opening with an opening newer than the one we
        /// paired it with: each side's key is spent on a different pairing, so ours starts again
        /// (`reopen`), setting that opening aside (its key is spent on our old one).
        case restart(setAside: HelloReference)
        /// Dropped: malformed, a delayed copy for another pairing, a reflection, or (from a peer
        /// holding the keys) a resume point our conversation never reached.
        case rejected(HandshakeError)
        /// It names our pairing and does not prove it: the keys or hellos were substituted, the
        /// password differs, or it names an opening we never made.
        case failed(AuthenticationFailure)
    }

    /// The peer's KEY_CONFIRM. `nextSendSequence`: the conversation's next number to send (the
    /// peer cannot expect a message we never numbered).
    mutating func receiveConfirmation(_ signal: Signal, nextSendSequence: UInt64) -> ConfirmationResult {
        let confirmation: KeyConfirmation
        do {
            confirmation = try KeyConfirmation(payload: signal.payload)
        } catch {
            return .rejected(error)
        }
        // Our own confirmation sent back: it would fail as a wrong proof, and blaming the
        // password for a relay's reflection would be wrong.
        if confirmation.sender.instance == localInstance { return .rejected(.reflectedConfirmation) }
        // For another process (our predecessor in this room), delivered to us.
        guard confirmation.receiver.instance == localInstance else { return .rejected(.staleConfirmation) }
        switch state {
        case .idle:
            return .unexpected
        case let .handshaking(attempt):
            return judge(confirmation, attempt: attempt, nextSendSequence: nextSendSequence)
        case let .connected(confirmed, rekey):
            if confirmation.receiver.epoch == confirmed.localEpoch, confirmation.sender == confirmed.peer.reference {
                return .duplicate
            }
            guard let rekey else {
                return judgeSuperseded(confirmation, nextSendSequence: nextSendSequence) ?? .rejected(.staleConfirmation)
            }
            return judge(confirmation, attempt: rekey, nextSendSequence: nextSendSequence)
        }
    }

    private mutating func judge(
        _ confirmation: KeyConfirmation, attempt: Attempt, nextSendSequence: UInt64
    ) -> ConfirmationResult {
        if let result = judgeSuperseded(confirmation, nextSendSequence: nextSendSequence) { return result }
        let openingEpoch = attempt.opening.hello.epoch
        // For an opening of ours that was replaced: a delayed copy.
        if confirmation.receiver.epoch < openingEpoch { return .rejected(.staleConfirmation) }
        // Our current opening is the newest we ever made: a later one was never ours.
        if confirmation.receiver.epoch > openingEpoch { return .failed(.confirmationMismatch) }
        switch attempt {
        case .opened(let opening, var waiting):
            if let hello = waiting.setAside.last(where: { $0.reference == confirmation.sender }) {
                return .pairSetAside(hello)
            }
            waiting.earlyConfirmation = confirmation
            setAttempt(.opened(opening, waiting))
            return .held
        case .paired(let opening, var pairing):
            guard confirmation.sender == pairing.peer.reference else {
                // The peer used its newer opening on ours, while ours went to an older one of its:
                // neither will ever confirm the other, and no new hello would say so. Start again.
                if Self.isNewer(confirmation.sender, than: pairing.peer.reference) {
                    return .restart(setAside: confirmation.sender)
                }
                return .rejected(.staleConfirmation)  // For an opening the peer replaced: a copy.
            }
            // The same two openings and another transcript: keys or hellos substituted in flight.
            guard confirmation.runID == pairing.runID else { return .failed(.confirmationMismatch) }
            let retained: RetainedSecret
            let ratchet: MessageRatchet
            switch pairing.proof.check(confirmation.proof, peer: pairing.peer.instance, safetyNumber: pairing.safetyNumber) {
            case .passwordMismatch:
                // Same run, wrong tag: the peer's password differs from ours, or a relay in the
                // middle guessed and missed. The code is spent; nothing was ever encrypted.
                return .failed(.passwordMismatch)
            case .rejected:
                // The same transcript and a proof that does not open: forged by someone without
                // the keys (or, continued, without the retained secret).
                return .failed(.confirmationMismatch)
            case let .verified(proof, verifiedRatchet, verifiedSecret):
                if case .tag = pairing.proof { passwordRunsUnconfirmed -= 1 }
                (ratchet, retained) = (verifiedRatchet, verifiedSecret)
                pairing.proof = proof
                setAttempt(.paired(opening, pairing))
            }
            let continuation = continuation(local: opening.hello, peer: pairing.peer)
            guard continuation.expectedNext <= nextSendSequence else { return .rejected(.inconsistentResume) }
            complete(opening: opening, pairing: pairing, retained: retained)
            return .confirmed(Completion(
                continuation: continuation, ratchet: ratchet, safetyNumber: pairing.safetyNumber,
                continued: pairing.continued))
        }
    }

    /// How the conversation continues with `peer`: our sending side follows what the peer
    /// announced (if it remembers our conversation, it expects our numbering to continue at
    /// `nextExpected`; if not, from 1), and the peer's side follows what we announced.
    func continuation(local: HandshakeHello, peer: HandshakeHello) -> ConversationContinuation {
        let previous = confirmedPeer?.instance
        let resumed = peer.knownPeer == localInstance && previous == peer.instance
        return ConversationContinuation(
            peerChanged: previous != nil && previous != peer.instance,
            sending: resumed
                ? .resume(nextExpected: peer.nextExpected)
                : .renumber(from: peer.knownPeer == localInstance ? peer.nextExpected : 1),
            restartsReceiving: local.knownPeer != peer.instance,
            receivingFrom: local.knownPeer == peer.instance ? local.nextExpected : 1)
    }

    /// A different instance (the peer restarted), or the same one later.
    static func isNewer(_ reference: HelloReference, than other: HelloReference) -> Bool {
        reference.instance != other.instance || reference.epoch > other.epoch
    }
}

// The superseded pairing (issue 12, found by the simulator's forged-restart and fresh-instance
// attackers): a restart used to wipe a pairing whose confirmation had gone out, so an opening
// nobody authenticated left the peer on that pairing's keys and us on the old ones.
extension HandshakeMachine {
    /// Replace the handshake under way: a paired one is kept as `superseded` (our confirmation of
    /// it is out), anything else is wiped.
    mutating func supersedeAttempt() {
        guard let attempt else { return }
        // Only a re-key beside the keys in use: a pairing of a handshake without keys (the first,
        // or after a reconnect) announced no conversation or an older one, and confirming it after
        // another would restart the numbering (records shown twice; found on seed 8).
        guard case .connected = state, case let .paired(opening, pairing) = attempt else { return attempt.wipe() }
        opening.secret.wipe()  // Its key answered the peer's: used up.
        if superseded.count == Self.supersededMax { wipeSuperseded(superseded.removeFirst()) }
        superseded.append(Superseded(opening: opening, pairing: pairing))
    }

    mutating func dropSuperseded() {
        for old in superseded { wipeSuperseded(old) }
        superseded.removeAll()
    }

    /// The tentative secrets superseded pairings hold (kept alive for them).
    var supersededSecretIDs: [[UInt8]] { superseded.compactMap { $0.tentative?.id } }

    /// Wipe a superseded pairing, and its tentative secret unless the continuity list still has it.
    private func wipeSuperseded(_ old: Superseded) {
        old.wipe()
        if let secret = old.tentative, !continuity.ids.contains(secret.id) { secret.secret.wipe() }
    }

    /// The peer's confirmation of the superseded pairing: when it proves it, that pairing is
    /// confirmed (the peer is on its keys), and the handshake under way, if any, goes on beside
    /// it. Nil when `confirmation` is not for that pairing; anything that does not prove it is
    /// dropped, never a failure (we moved on from it).
    mutating func judgeSuperseded(_ confirmation: KeyConfirmation, nextSendSequence: UInt64) -> ConfirmationResult? {
        guard let index = superseded.firstIndex(where: {
            confirmation.receiver == $0.opening.hello.reference && confirmation.sender == $0.pairing.peer.reference
        }) else { return nil }
        let old = superseded[index]
        // Never back to a pairing older than the one in use.
        guard case let .connected(confirmed, _) = state, old.opening.hello.epoch > confirmed.localEpoch else {
            return .rejected(.staleConfirmation)
        }
        guard confirmation.runID == old.pairing.runID,
              case let .verified(_, ratchet, retained) = old.pairing.proof.check(
                  confirmation.proof, peer: old.pairing.peer.instance, safetyNumber: old.pairing.safetyNumber)
        else { return .rejected(.staleConfirmation) }
        let continuation = continuation(local: old.opening.hello, peer: old.pairing.peer)
        guard continuation.expectedNext <= nextSendSequence else { return .rejected(.inconsistentResume) }
        if case .tag = old.pairing.proof { passwordRunsUnconfirmed -= 1 }
        superseded.remove(at: index)
        let ongoing = attempt
        let ongoingDeadline = deadline
        var ongoingSecret: RetainedSecret?
        if case let .paired(_, pairing)? = ongoing, case let .sealed(_, _, next) = pairing.proof { ongoingSecret = next }
        complete(opening: old.opening, pairing: old.pairing, retained: retained, keeping: ongoingSecret)
        if let ongoing {
            setAttempt(ongoing)
            deadline = ongoingDeadline
        }
        return .confirmed(Completion(
            continuation: continuation, ratchet: ratchet, safetyNumber: old.pairing.safetyNumber,
            continued: old.pairing.continued))
    }
}
