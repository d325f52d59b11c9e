/// The handshake with the peer: our opening (an X25519 key pair, or a CPace run with the
/// password), its pairing with the peer's opening, the key confirmations, and what the session
/// remembers across handshakes (our epoch, the confirmed peer, the secrets retained for key
/// continuity, the retired peer instances, the password guess budget).
///
/// Protocol v3 (docs/PROTOCOL.md, "Session layer"): each side opens with a hello (SIGNAL kind
/// PAKE with a password, KEY_EXCHANGE without), answers the peer's opening with a KEY_CONFIRM that
/// names the two openings it pairs, and is confirmed only when the peer's confirmation of the same
/// pairing verifies. The first handshake with a peer instance is keyed by the password (CPace) or
/// by nothing (X25519 and safety numbers); every later one with the same instance is keyed with a
/// secret retained from an earlier one as well (`KeyContinuity`): it tests no password, and a relay
/// cannot complete it. Every opening answers one peer opening at most (a fresh key or CPace scalar
/// each time). A confirmation for our pairing that does not match it is tampering: the caller ends
/// the session, or refuses the handshake while CONNECTED on keys already proven.
///
/// It decides; the coordinator (`SessionManager`) sends the frames it hands back and drives the
/// lifecycle. The rules live in HandshakeMachine+Answer.swift (screening and answering openings)
/// and HandshakeMachine+Confirm.swift (pairing, confirmation, completion); the data of each state
/// in HandshakeStates.swift.
struct HandshakeMachine {
    enum State {
        /// No handshake and no keys: no peer yet, or the last one ended (disconnect, peer left).
        case idle
        /// A handshake is under way and no keys are in use.
        case handshaking(Attempt)
        /// A confirmed handshake's keys are in use (the session is CONNECTED); `rekey`: a new
        /// handshake under way beside it (the peer began again), which replaces it only once
        /// confirmed.
        case connected(Confirmed, rekey: Attempt?)
    }

    /// Peer instances that were replaced are remembered (their late handshakes are ignored). Bounded.
    static let retiredPeersMax = 8
    /// Peer openings answered by earlier openings of ours, remembered (bounded) so that a
    /// retransmission of one is not taken for a new opening.
    static let answeredMax = 8

    /// This client's identity for the life of the process (not a key; public).
    let localInstance: InstanceID
    private(set) var state: State = .idle
    /// Grows with every opening.
    private(set) var localEpoch: UInt64 = 0
    /// The peer instance of the last confirmed handshake (the conversation's) and its epoch.
    private(set) var confirmedPeer: ConfirmedPeer?
    var retiredPeers: [InstanceID] = []
    var answered: [HelloReference] = []
    var continuity = KeyContinuity()
    /// The pairing a restart replaced after our confirmation of it went out: the peer may already
    /// hold its keys (it confirmed it before the opening that made us restart reached us, or
    /// that opening was a relay's forgery). Its confirmation is still taken (`judgeSuperseded`),
    /// so an unauthenticated opening cannot leave the two sides on different keys. Newest last,
    /// at most `supersededMax` (a relay's forged openings that pair, by listing the peer's public
    /// retained-secret ids, each take a place: one slot let the next forgery push the real pairing
    /// out).
    var superseded: [Superseded] = []
    static let supersededMax = 4
    /// With a password: CPace pairings for which we gave out our confirmation tag and the peer
    /// has not confirmed, over the session's life. Each may have been a relay's password guess;
    /// `SessionConfiguration.passwordRunsUnconfirmedMax` bounds them (the guess budget).
    var passwordRunsUnconfirmed = 0
    /// With a password: every tag given out, confirmed or not (the first is the first handshake;
    /// each later one is announced, since it may be a relay's guess).
    var passwordTagsGiven = 0
    /// While handshaking: when the handshake counts as blocked (`SessionConfiguration.handshakeTimeout`
    /// after the first opening of this spell; restarts within the spell keep it).
    var deadline: Instant?
    /// The session's own copy of the password (wiped when the session ends), or nil.
    let password: Password?
    /// Broken behaviours for the simulator's self-tests (PlantedBugs.swift); always empty otherwise.
    var plantedBugs: PlantedBugs = []
    let configuration: SessionConfiguration

    init(configuration: SessionConfiguration, password: Password?, localInstance: InstanceID) {
        self.configuration = configuration
        self.password = password
        self.localInstance = localInstance
    }

    /// The kind of SIGNAL that opens our handshakes.
    var helloKind: SignalKind { password == nil ? .keyExchange : .pake }

    /// The handshake under way, if any (beside the keys in use, or without them).
    var attempt: Attempt? {
        switch state {
        case .idle: nil
        case let .handshaking(attempt): attempt
        case let .connected(_, rekey): rekey
        }
    }

    /// When our opening (and confirmation) are next retransmitted.
    var retransmitAt: Instant? { attempt?.opening.retransmission.at }

    /// Our confirmation of the handshake in use (the peer needs it to use the keys).
    var confirmFrame: [UInt8]? {
        if case let .connected(confirmed, _) = state { confirmed.confirmFrame } else { nil }
    }

    /// The safety number of the keys in use: the handshake that began the chain they continue.
    var safetyNumber: SafetyNumber? {
        if case let .connected(confirmed, _) = state { confirmed.safetyNumber } else { nil }
    }

    /// The keys of the pairing under way, once they exist (tests only).
    var pairingRatchet: MessageRatchet? {
        if case let .paired(_, pairing)? = attempt { pairing.proof.ratchet } else { nil }
    }

    // MARK: Opening

    /// A fresh X25519 key pair (no password) or a fresh CPace run (password), announced in a
    /// hello that also says which conversation we remember, where it stands, and which retained
    /// secrets we hold: the returned frame. It replaces the handshake under way (whose secret is
    /// wiped); while CONNECTED it runs beside the keys in use. `nextReceiveSequence`: the
    /// conversation's next expected record from the peer.
    mutating func open(now: Instant, nextReceiveSequence: UInt64, entropy: any EntropySource) -> [UInt8] {
        supersedeAttempt()
        localEpoch += 1
        let knownPeer = confirmedPeer?.instance ?? .none
        let nextExpected = confirmedPeer == nil ? 1 : nextReceiveSequence
        let payload = HandshakeHello.payload(
            instance: localInstance, epoch: localEpoch, knownPeer: knownPeer, nextExpected: nextExpected,
            retainedIDs: continuity.ids)
        let secret: LocalSecret
        let key: [UInt8]
        if let password {
            let party: CPaceParty
            do {
                // One share answers one peer share (the draft's §10.9: scalars are never reused).
                let keyedWith = plantedBugs.contains(.passwordLeftOutOfHandshake) ? Password.plantedConstant : password
                party = try CPaceParty(
                    password: keyedWith, channelIdentifier: CPaceParty.channelIdentifier(room: configuration.room),
                    associatedData: payload, setting: .symmetric, entropy: entropy)
            } catch {
                preconditionFailure("a \(payload.count)-byte hello is within CPace's AD bound: \(error)")
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
            nextExpected: nextExpected, retainedIDs: continuity.ids)
        let frame = WireCodec.encode(ClientMessage.signal(hello.signal))
        let interval = configuration.handshakeRetransmitInitial
        let opening = Opening(
            hello: hello, helloFrame: frame, secret: secret,
            retransmission: Retransmission(at: now.advanced(by: interval), interval: interval))
        if deadline == nil { deadline = now.advanced(by: configuration.handshakeTimeout) }
        setAttempt(.opened(opening, Waiting()))
        return frame
    }

    /// The opening under way must not pair with `hello` (the restart rule, `answer`) unless the
    /// peer's confirmation shows that `hello` answered it.
    mutating func setAside(_ hello: HandshakeHello) {
        guard case .opened(let opening, var waiting)? = attempt else { return }
        waiting.setAside(hello)
        rememberAnswered(hello.reference)
        setAttempt(.opened(opening, waiting))
    }

    /// Put `attempt` in place of the one under way.
    mutating func setAttempt(_ attempt: Attempt) {
        switch state {
        case .idle, .handshaking: state = .handshaking(attempt)
        case let .connected(confirmed, _): state = .connected(confirmed, rekey: attempt)
        }
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
        guard var attempt, attempt.opening.retransmission.at <= now else { return nil }
        attempt.fireRetransmission(now: now, cap: configuration.retransmitMax)
        setAttempt(attempt)
        let opening = attempt.opening
        var confirmation: [UInt8]?
        if case let .paired(_, pairing) = attempt { confirmation = pairing.confirmFrame }
        return RetransmittedFrames(
            hello: opening.helloFrame, confirmation: confirmation, attempt: opening.retransmission.attempts)
    }

    /// True when the handshake under way has run past its bound at `now`.
    func isBlocked(now: Instant) -> Bool {
        guard attempt != nil, let deadline else { return false }
        return deadline <= now
    }

    /// Forget the handshake and the keys in use, and wipe the secrets (the conversation's memory
    /// stays: epoch, confirmed peer, retained secrets, budget).
    mutating func drop() {
        attempt?.wipe()
        dropSuperseded()
        state = .idle
        deadline = nil
    }

    /// Abandon the handshake under way, keeping the keys in use (if any) and the superseded
    /// pairing (the peer may yet confirm it).
    mutating func dropAttempt() {
        // A paired attempt stays confirmable: a refusal caused by someone else's frame (a forged
        // confirmation naming an opening of ours we never made) must not undo a pairing the peer
        // may already have taken.
        supersedeAttempt()
        switch state {
        case .idle, .handshaking: state = .idle
        case let .connected(confirmed, _): state = .connected(confirmed, rekey: nil)
        }
        deadline = nil
    }

    /// The session ended: wipe everything, the password and the retained secrets too.
    mutating func end() {
        drop()
        wipe()
    }

    /// Wipe every secret (the session is going away).
    func wipe() {
        attempt?.wipe()
        for old in superseded { old.wipe(); old.tentative?.secret.wipe() }
        continuity.wipe()
        password?.wipe()
    }

    /// Ignore `instance`'s handshakes from now on (it was replaced by a confirmed successor).
    mutating func retire(_ instance: InstanceID) {
        guard !retiredPeers.contains(instance) else { return }
        if retiredPeers.count == Self.retiredPeersMax { retiredPeers.removeFirst() }
        retiredPeers.append(instance)
    }

    /// Remember that an opening of ours answered the peer opening `reference` (or that the peer
    /// used that opening's key on one of ours).
    mutating func rememberAnswered(_ reference: HelloReference) {
        guard !answered.contains(reference) else { return }
        if answered.count == Self.answeredMax { answered.removeFirst() }
        answered.append(reference)
    }

    /// The verified pairing becomes the session's: remember the peer (retiring the one it
    /// replaces: only now, when the successor is authenticated), keep its retained secret alone,
    /// and wipe our opening's secret (forward secrecy). Its keys are the channel's from now on.
    mutating func complete(
        opening: Opening, pairing: Pairing, retained: RetainedSecret, keeping: RetainedSecret? = nil
    ) {
        if let previous = confirmedPeer?.instance, previous != pairing.peer.instance { retire(previous) }
        confirmedPeer = ConfirmedPeer(instance: pairing.peer.instance, epoch: pairing.peer.epoch)
        continuity.confirm(retained, keeping: keeping)
        dropSuperseded()
        opening.secret.wipe()
        state = .connected(
            Confirmed(peer: pairing.peer, localEpoch: opening.hello.epoch, confirmFrame: pairing.confirmFrame,
                      safetyNumber: pairing.safetyNumber),
            rekey: nil)
        deadline = nil
    }
}
