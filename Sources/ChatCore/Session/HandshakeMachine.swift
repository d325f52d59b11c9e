/// The handshake with the peer: our opening (an X25519 key pair, or a CPace run with the
/// password), its pairing with the peer's opening, the key confirmations, and what the session
/// remembers across handshakes (our epoch, the last confirmed peer, the retired peer instances,
/// the password guess budget).
///
/// Protocol (docs/PROTOCOL.md, "Session layer"): each side opens with a hello (SIGNAL kind PAKE
/// with a password, KEY_EXCHANGE without), answers the peer's opening with a KEY_CONFIRM (the CPace
/// tag, or the transcript hash sealed under the new keys), and is confirmed only when the peer's
/// confirmation verifies. The machine holds the secrets of the handshake under way and nothing
/// else; once confirmed, the keys go to the `ReliableChannel` and the opening's secret is wiped.
///
/// It decides; the coordinator (`SessionManager`) sends the frames it hands back and drives the
/// lifecycle. Where a later protocol adds rules, they belong here: which confirmations are ours
/// (`receiveConfirmation`), what a confirmed peer leaves behind (`ConfirmedPeer`), when an
/// instance is retired (`answer`, `complete`), and the bounds on what a hello may claim (`screen`).
struct HandshakeMachine {
    enum State {
        /// No handshake: no peer yet, or the last one ended (disconnect, peer left, re-key).
        case idle
        /// Our opening is out (retransmitted until answered); the peer's has not come. A
        /// confirmation that overtook it (networks reorder) waits here, the newest one.
        case opened(Opening, earlyConfirmation: [UInt8]?)
        /// Our opening is paired with the peer's and our confirmation is out; the peer's is due.
        case paired(Opening, Pairing)
        /// The peer's confirmation verified: the session is CONNECTED on this pairing's keys.
        case confirmed(Confirmed)
    }

    /// Bytes of the run identifier that leads a KEY_CONFIRM.
    static let runIDByteCount = 16
    /// Peer instances that were replaced are remembered (their late handshakes are ignored). Bounded.
    static let retiredPeersMax = 8

    /// This client's identity for the life of the process (not a key; public).
    let localInstance: InstanceID
    private(set) var state: State = .idle
    /// Grows with every opening.
    private(set) var localEpoch: UInt64 = 0
    private(set) var confirmedPeer: ConfirmedPeer?
    private var retiredPeers: [InstanceID] = []
    /// With a password: CPace pairings for which we gave out our confirmation tag and the peer
    /// has not confirmed, over the session's life. Each may have been a relay's password guess;
    /// `SessionConfiguration.passwordRunsUnconfirmedMax` bounds them (the guess budget).
    private(set) var passwordRunsUnconfirmed = 0
    /// The session's own copy of the password (wiped when the session ends), or nil.
    private let password: Password?
    private let configuration: SessionConfiguration

    init(configuration: SessionConfiguration, password: Password?, localInstance: InstanceID) {
        self.configuration = configuration
        self.password = password
        self.localInstance = localInstance
    }

    /// The kind of SIGNAL that opens our handshakes.
    private var helloKind: SignalKind { password == nil ? .keyExchange : .pake }

    var isIdle: Bool {
        if case .idle = state { true } else { false }
    }

    /// When our opening (and confirmation) are next retransmitted, while unconfirmed.
    var retransmitAt: Instant? {
        switch state {
        case let .opened(opening, _), let .paired(opening, _): opening.retransmission.at
        case .idle, .confirmed: nil
        }
    }

    /// The confirmed handshake's safety number.
    var safetyNumber: SafetyNumber? {
        if case let .confirmed(confirmed) = state { confirmed.safetyNumber } else { nil }
    }

    /// The keys of the pairing under way, once they exist (tests only).
    var pairingRatchet: MessageRatchet? {
        if case let .paired(_, pairing) = state { pairing.proof.ratchet } else { nil }
    }

    // MARK: Opening

    /// A fresh X25519 key pair (no password) or a fresh CPace run (password), announced in a
    /// hello that also says which conversation we remember and where it stands: the returned
    /// frame. `nextReceiveSequence`: the conversation's next expected record from the peer.
    mutating func open(now: Instant, nextReceiveSequence: UInt64, entropy: any EntropySource) -> [UInt8] {
        drop()
        localEpoch += 1
        let knownPeer = confirmedPeer?.instance ?? .none
        let nextExpected = confirmedPeer == nil ? 1 : nextReceiveSequence
        let secret: LocalSecret
        let key: [UInt8]
        if let password {
            let associatedData = HandshakeHello.payload(
                instance: localInstance, epoch: localEpoch, knownPeer: knownPeer, nextExpected: nextExpected)
            let party: CPaceParty
            do {
                party = try CPaceParty(
                    password: password, channelIdentifier: CPaceParty.channelIdentifier(room: configuration.room),
                    associatedData: associatedData, setting: .symmetric, answersMax: Opening.peerKeysUsedMax,
                    entropy: entropy)
            } catch {
                preconditionFailure("a \(associatedData.count)-byte hello is within CPace's AD bound: \(error)")
            }
            secret = .cpace(party)
            key = party.share
        } else {
            let keys = KeyManager()
            key = keys.generateKeyPair(entropy: entropy).bytes
            secret = .x25519(keys)
        }
        let hello = HandshakeHello(
            kind: helloKind, key: key, instance: localInstance, epoch: localEpoch, knownPeer: knownPeer,
            nextExpected: nextExpected)
        let frame = WireCodec.encode(ClientMessage.signal(hello.signal))
        let interval = configuration.handshakeRetransmitInitial
        state = .opened(
            Opening(hello: hello, helloFrame: frame, secret: secret,
                    retransmission: Retransmission(at: now.advanced(by: interval), interval: interval)),
            earlyConfirmation: nil)
        return frame
    }

    /// What the retransmission timer sends: our opening, our confirmation once paired.
    struct RetransmittedFrames {
        let hello: [UInt8]
        let confirmation: [UInt8]?
        /// 2, 3, ...
        let attempt: Int
    }

    /// The retransmission timer: when due, the frames to send again (the interval doubles, up
    /// to the cap).
    mutating func retransmitIfDue(now: Instant) -> RetransmittedFrames? {
        let cap = configuration.retransmitMax
        switch state {
        case .opened(var opening, let early):
            guard opening.retransmission.fire(now: now, cap: cap) else { return nil }
            state = .opened(opening, earlyConfirmation: early)
            return RetransmittedFrames(
                hello: opening.helloFrame, confirmation: nil, attempt: opening.retransmission.attempts)
        case .paired(var opening, let pairing):
            guard opening.retransmission.fire(now: now, cap: cap) else { return nil }
            state = .paired(opening, pairing)
            return RetransmittedFrames(
                hello: opening.helloFrame, confirmation: pairing.confirmFrame, attempt: opening.retransmission.attempts)
        case .idle, .confirmed:
            return nil
        }
    }

    /// Forget the handshake and wipe its secrets (the conversation's memory stays).
    mutating func drop() {
        wipeHandshakeSecrets()
        state = .idle
    }

    /// The session ended: wipe everything, the password too.
    mutating func end() {
        drop()
        password?.wipe()
    }

    /// Wipe every secret (the session is going away).
    func wipe() {
        wipeHandshakeSecrets()
        password?.wipe()
    }

    private func wipeHandshakeSecrets() {
        switch state {
        case let .opened(opening, _):
            opening.secret.wipe()
        case let .paired(opening, pairing):
            opening.secret.wipe()
            pairing.proof.wipe()
        case .idle, .confirmed:
            break  // Confirmed: the secret is gone and the keys are the channel's.
        }
    }

    /// Ignore `instance`'s handshakes from now on (it was replaced).
    private mutating func retire(_ instance: InstanceID) {
        guard !retiredPeers.contains(instance) else { return }
        if retiredPeers.count == Self.retiredPeersMax { retiredPeers.removeFirst() }
        retiredPeers.append(instance)
    }
}

// MARK: - The peer's opening

extension HandshakeMachine {
    /// The first look at a peer's opening, the same in every state.
    enum Screening {
        case accepted(HandshakeHello)
        /// Dropped; the session carries on.
        case rejected(FrameRejection)
        /// One side has a password and the other has none (or a relay swapped the handshake): no
        /// key both sides trust can come of it, so no chat may start.
        case modeMismatch(AuthenticationFailure)
    }

    /// Decode the peer's opening and refuse what no state could take.
    func screen(_ signal: Signal) -> Screening {
        let hello: HandshakeHello
        do {
            hello = try HandshakeHello(signal: signal)
        } catch {
            return .rejected(.handshake(error))
        }
        guard hello.instance != localInstance else {
            // Our own hello sent back (by a relay): taking it for a new peer would retire the
            // real one, and every later hello of the real peer would be refused.
            return .rejected(.crypto(.reflectedPublicKey))
        }
        guard hello.kind == helloKind else {
            return .modeMismatch(password == nil ? .peerHasPassword : .peerHasNoPassword)
        }
        if hello.kind == .pake, !CPace.isValidShare(hello.key) {
            // Refused before it reaches our CPace run, which would otherwise have to abort.
            return .rejected(.handshake(.invalidShare))
        }
        guard !retiredPeers.contains(hello.instance) else { return .rejected(.handshake(.retiredInstance)) }
        if let confirmedPeer, hello.instance == confirmedPeer.instance, hello.epoch < confirmedPeer.epoch {
            // Older than the handshake we last completed with this peer: a delayed copy.
            return .rejected(.handshake(.staleHello))
        }
        return .accepted(hello)
    }

    /// How a screened opening meets the handshake under way.
    enum Answer {
        /// No handshake: whether one starts is the lifecycle's call.
        case noHandshake
        /// Our opening is unanswered: pair it with this one (`pair(with:)`).
        case pair
        /// A repeat of the paired opening (the peer has not seen our confirmation): answer with
        /// it, and only it (answering a hello with a hello could ping-pong forever).
        case repeatOfPairing(confirmFrame: [UInt8])
        case stale
        /// The peer began again (a reconnect, or a new process). `reusedOpening`: our opening is
        /// unconfirmed and may answer it: announce it again (the frame) and pair. Nil: open afresh.
        case peerRestarted(reusedOpening: [UInt8]?)
    }

    /// Meet a screened opening with the handshake under way.
    mutating func answer(_ hello: HandshakeHello) -> Answer {
        let current: HandshakeHello
        let confirmFrame: [UInt8]
        switch state {
        case .idle:
            return .noHandshake
        case .opened:
            return .pair
        case let .paired(_, pairing):
            (current, confirmFrame) = (pairing.peer, pairing.confirmFrame)
        case let .confirmed(confirmed):
            (current, confirmFrame) = (confirmed.peer, confirmed.confirmFrame)
        }
        if current == hello { return .repeatOfPairing(confirmFrame: confirmFrame) }
        if current.instance == hello.instance && hello.epoch <= current.epoch { return .stale }
        if current.instance != hello.instance { retire(current.instance) }
        if case let .paired(opening, pairing) = state, opening.secret.canAnswerAgain,
           !opening.peerKeysUsed.contains(hello.key), opening.peerKeysUsed.count < Opening.peerKeysUsedMax {
            // Our handshake is unconfirmed: answer with the key (or share) we already announced,
            // and announce it again, not a fresh one. A fresh opening would look like a restart to
            // the peer, which would answer with a fresh one too, forever (found by the FuzzSession
            // harness: a connection blip during the handshake).
            pairing.proof.wipe()
            state = .opened(opening, earlyConfirmation: nil)
            return .peerRestarted(reusedOpening: opening.helloFrame)
        }
        // Connected (our secret is gone), or a peer key we already answered (deriving the same keys
        // again would seal a second confirmation under the same key and nonce): re-key from scratch.
        return .peerRestarted(reusedOpening: nil)
    }

    // MARK: Pairing and confirmation

    enum PairingResult {
        /// Paired: send `confirmFrame`; an `earlyConfirmation` that waited for the peer's opening
        /// is to be judged now (`receiveConfirmation`).
        case paired(confirmFrame: [UInt8], earlyConfirmation: [UInt8]?)
        /// Refused (the frame is dropped). `runFinished`: our CPace run is over, so a fresh
        /// opening is needed rather than staying stuck.
        case rejected(FrameRejection, runFinished: Bool)
        /// The guess budget is spent: the session ends.
        case guessBudgetSpent(Int)
        /// No opening waits for a peer (nothing to do).
        case notOpened
    }

    /// Pair our opening with the peer's, derive what the peer must confirm, and make our
    /// confirmation. Nothing is encrypted under the new keys until the peer's confirmation
    /// verifies (with a password the session keys do not even exist before then).
    mutating func pair(with peer: HandshakeHello) -> PairingResult {
        guard case .opened(var opening, let early) = state else { return .notOpened }
        guard peer.key != opening.hello.key else {
            // Our own key or share under someone else's hello: a reflection.
            return .rejected(.crypto(.reflectedPublicKey), runFinished: false)
        }
        let derived: (runID: [UInt8], proof: [UInt8], peerProof: PeerProof)
        switch opening.secret {
        case let .cpace(party):
            // The guess budget: every tag we give out lets whoever answered test one password.
            guard passwordRunsUnconfirmed < configuration.passwordRunsUnconfirmedMax else {
                return .guessBudgetSpent(passwordRunsUnconfirmed)
            }
            let pending: CPaceConfirmation
            do {
                pending = try party.receive(peerShare: peer.key, peerAssociatedData: peer.payload)
            } catch {
                // The share was checked (valid, not ours, not answered before), so this is not
                // expected; if the run aborted, begin a fresh one rather than stay stuck.
                return .rejected(.handshake(.invalidShare), runFinished: party.isFinished)
            }
            passwordRunsUnconfirmed += 1
            derived = (Array(pending.sidOutput.prefix(Self.runIDByteCount)), pending.localTag, .tag(pending))
        case let .x25519(keys):
            switch Self.deriveWithoutPassword(keys: keys, local: opening.hello, peer: peer, room: configuration.room) {
            case let .success(value): derived = value
            case let .failure(error): return .rejected(.crypto(error), runFinished: false)
            }
        }
        opening.peerKeysUsed.append(peer.key)
        let confirmFrame = WireCodec.encode(
            ClientMessage.signal(Signal(kind: .keyConfirm, payload: derived.runID + derived.proof)))
        let pairing = Pairing(
            peer: peer, runID: derived.runID, confirmFrame: confirmFrame,
            safetyNumber: SafetyNumber(
                room: configuration.room, local: opening.hello.safetyNumberParty, peer: peer.safetyNumberParty),
            proof: derived.peerProof)
        state = .paired(opening, pairing)
        return .paired(confirmFrame: confirmFrame, earlyConfirmation: early)
    }

    /// A confirmed handshake: how the conversation continues, its keys and its safety number.
    struct Completion {
        let continuation: ConversationContinuation
        let ratchet: MessageRatchet
        let safetyNumber: SafetyNumber
    }

    enum ConfirmationResult {
        /// The pairing is proven and is the session's now (the opening's secret is wiped).
        case confirmed(Completion)
        /// A repeat of the confirmation that made us CONNECTED.
        case duplicate
        /// No handshake is under way.
        case unexpected
        /// It overtook the peer's opening: held until that comes.
        case held
        /// Its run id is not the current pairing's: a delayed copy from before a restart.
        case forAnotherPairing
        /// Dropped: malformed, or (without a password) it does not prove our transcript, or the
        /// peer's opening claims a resume point our conversation never reached.
        case rejected(HandshakeError)
        /// With a password: the same run, a wrong tag. The session ends (the code is spent).
        case passwordMismatch
    }

    /// The peer's KEY_CONFIRM. `nextSendSequence`: the conversation's next number to send (the
    /// peer cannot expect a message we never numbered).
    mutating func receiveConfirmation(_ signal: Signal, nextSendSequence: UInt64) -> ConfirmationResult {
        let opening: Opening
        var pairing: Pairing
        switch state {
        case .idle:
            return .unexpected
        case .confirmed:
            return .duplicate
        case let .opened(current, _):
            guard let payload = signal.payload, payload.count > Self.runIDByteCount else {
                return .rejected(.confirmationFailed)
            }
            state = .opened(current, earlyConfirmation: payload)
            return .held
        case let .paired(currentOpening, currentPairing):
            (opening, pairing) = (currentOpening, currentPairing)
        }
        guard let payload = signal.payload, payload.count > Self.runIDByteCount else {
            return .rejected(.confirmationFailed)
        }
        guard Array(payload.prefix(Self.runIDByteCount)) == pairing.runID else { return .forAnotherPairing }
        let proof = Array(payload[Self.runIDByteCount...])
        let ratchet: MessageRatchet
        switch pairing.proof.check(proof) {
        case .passwordMismatch:
            // Same run, wrong tag: the peer's password differs from ours, or a relay in the middle
            // guessed and missed. The code is spent; nothing was ever encrypted.
            return .passwordMismatch
        case let .rejected(error):
            return .rejected(error)
        case let .verified(verified, verifiedRatchet):
            ratchet = verifiedRatchet
            if case .tag = pairing.proof {
                passwordRunsUnconfirmed -= 1
                pairing.proof = verified
                state = .paired(opening, pairing)
            }
        }
        let continuation = continuation(local: opening.hello, peer: pairing.peer)
        if case let .resume(nextExpected) = continuation.sending, nextExpected > nextSendSequence {
            return .rejected(.inconsistentResume)
        }
        complete(opening: opening, pairing: pairing)
        return .confirmed(Completion(continuation: continuation, ratchet: ratchet, safetyNumber: pairing.safetyNumber))
    }

    /// How the conversation continues with `peer`: our sending side follows what the peer
    /// announced (if it remembers our conversation, it expects our numbering to continue at
    /// `nextExpected`; if not, from 1), and the peer's side follows what we announced.
    private func continuation(local: HandshakeHello, peer: HandshakeHello) -> ConversationContinuation {
        let previous = confirmedPeer?.instance
        let resumed = peer.knownPeer == localInstance && previous == peer.instance
        return ConversationContinuation(
            peerChanged: previous != nil && previous != peer.instance,
            sending: resumed
                ? .resume(nextExpected: peer.nextExpected)
                : .renumber(from: peer.knownPeer == localInstance ? peer.nextExpected : 1),
            restartsReceiving: local.knownPeer != peer.instance)
    }

    /// The verified pairing becomes the session's: remember the peer (retiring the one it
    /// replaces), wipe our opening's secret (forward secrecy: the X25519 secret key or CPace
    /// scalar is not needed once confirmed). Its keys are the channel's from now on.
    private mutating func complete(opening: Opening, pairing: Pairing) {
        if let previous = confirmedPeer?.instance, previous != pairing.peer.instance {
            // A different peer process: its predecessor's late handshakes are ignored.
            retire(previous)
        }
        confirmedPeer = ConfirmedPeer(instance: pairing.peer.instance, epoch: pairing.peer.epoch)
        opening.secret.wipe()
        state = .confirmed(
            Confirmed(peer: pairing.peer, confirmFrame: pairing.confirmFrame, safetyNumber: pairing.safetyNumber))
    }
}
