/// One end of a chat: the sans-IO session that both the terminal client and the simulator run.
///
/// Inputs arrive through `handle(_:now:)`, `send(_:now:)` and `handleTimeout(now:)`, each with
/// the caller's `now`; outputs (frames to send, messages to show, state changes, notices) are drained with
/// `pollOutput()`, and `pollTimeout()` says when the next timer is due — the shape of quinn-proto
/// and str0m. The session never reads a clock, never opens a socket, and takes randomness only
/// from the `EntropySource` it is given.
///
/// Protocol (docs/PROTOCOL.md, "Session layer"): on PEER_FOUND both sides open a handshake. With
/// a password it is CPace (SIGNAL kind PAKE: a ristretto255 share and the hello as associated
/// data); without one it is the original design's X25519 (KEY_EXCHANGE). Each side answers the
/// peer's opening with a KEY_CONFIRM (the CPace tag, or its transcript hash sealed under the new
/// keys) and enters CONNECTED only when the peer's confirmation verifies; with a password, one
/// that does not verify ends the session ("authentication failed"). The session keys come from
/// the handshake secret and transcript (`SessionKeyDerivation`) and feed a `MessageRatchet`:
/// every record has its own key. Messages are numbered per conversation, acknowledged
/// cumulatively, retransmitted with backoff until acknowledged, deduplicated and delivered in
/// order; a conversation survives reconnects and re-keys, and whatever cannot be confirmed is
/// reported as undeliverable.
public final class SessionManager {
    public let configuration: SessionConfiguration
    /// How this session authenticates its handshakes: `.password` when it was given one.
    public let authentication: SessionAuthentication
    /// The session's own copy of the password (wiped when the session ends), or nil.
    private let password: Password?
    private let entropy: any EntropySource
    private var machine = SessionStateMachine()
    private var outputs = SessionOutputs()
    private var lastNow: Instant = .zero

    /// The transport and the room: JOIN, JOINED, PEER_FOUND, ROOM_FULL.
    private var room: RoomMembership

    // Handshake.
    /// The X25519 key pair of a handshake without a password.
    private let keyManager = KeyManager()
    /// This client's identity for the life of the process (not a key; public).
    public let localInstance: InstanceID
    private var localEpoch: UInt64 = 0
    private var handshake: HandshakeProgress?
    /// Peer instances that were replaced; their late handshakes are ignored. Bounded.
    private var retiredPeerInstances: [InstanceID] = []
    private static let retiredPeerInstancesMax = 8
    /// With a password: CPace pairings for which we gave out our confirmation tag and the peer
    /// has not confirmed, over the session's life. Each may have been a relay's password guess;
    /// `configuration.passwordRunsUnconfirmedMax` bounds them (the guess budget).
    public private(set) var passwordRunsUnconfirmed = 0
    /// Bytes of the run identifier that leads a KEY_CONFIRM.
    static let runIDByteCount = 16

    // Conversation (survives re-keys while the peer instance stays the same).
    private var peerInstance: InstanceID?
    /// The handshake epoch of the last confirmed handshake with `peerInstance`.
    private var peerEpoch: UInt64 = 0
    /// The conversation's messages: queue, numbering, retransmission, acknowledgements.
    private var channel: ReliableChannel

    /// Broken behaviours for the simulator's self-tests (PlantedBugs.swift); always empty otherwise.
    @_spi(Simulation) public var plantedBugs: PlantedBugs {
        get { channel.plantedBugs }
        set { channel.plantedBugs = newValue }
    }

    /// Counters for tests, the simulator and the UI's status line.
    public var statistics: Statistics { outputs.statistics }

    public struct Statistics: Hashable, Sendable {
        public var framesRejected = 0
        public var duplicatesDropped = 0
        public var retransmissions = 0
        public var handshakesCompleted = 0
    }

    /// - Parameters:
    ///   - password: the chat password (a code's words, or the user's own): handshakes are CPace
    ///     with it. Nil: X25519, authenticated only by comparing safety numbers. The session keeps
    ///     its own copy and wipes it when it ends; the caller wipes the original.
    public init(configuration: SessionConfiguration, password: Password? = nil, entropy: any EntropySource) {
        precondition(password.map { !$0.isWiped } ?? true, "a wiped password")
        self.configuration = configuration
        self.password = password?.copy()
        self.authentication = password == nil ? .safetyNumber : .password
        self.entropy = entropy
        self.localInstance = InstanceID.random(entropy: entropy)
        self.room = RoomMembership(
            retransmitInitial: configuration.joinRetransmitInitial, retransmitMax: configuration.retransmitMax)
        self.channel = ReliableChannel(configuration: configuration)
    }

    deinit {
        handshake?.wipe()
        keyManager.wipeKeys()
        password?.wipe()
        channel.wipe()
    }

    // MARK: Public view

    /// The lifecycle state.
    public var state: SessionState { machine.state }

    /// Messages accepted but not yet acknowledged by the peer.
    public var pendingCount: Int { channel.queue.count }

    /// The IDs of messages accepted but not yet acknowledged, oldest first.
    public var pendingMessageIDs: [MessageID] { channel.queue.map(\.id) }

    /// The safety number of the handshake that secured the session, while CONNECTED (nil
    /// otherwise): the same on both sides unless someone is in the middle. Every handshake has
    /// a new one, since keys are fresh each time.
    public var safetyNumber: SafetyNumber? {
        machine.state == .connected ? handshake?.safetyNumber : nil
    }

    /// Copies of every key the session holds for its records right now (the current ratchet's
    /// chain and control keys; the X25519 secret key and the CPace scalar are gone once the
    /// handshake is confirmed), for the forward-secrecy tests. Never used by shipped code.
    @_spi(Testing)
    public func heldRecordKeysForTesting() -> [[UInt8]] {
        handshake?.ratchet?.heldSecretsForTesting() ?? []
    }

    /// The next output, or nil when there is none. Drain after every input.
    public func pollOutput() -> SessionOutput? {
        outputs.next()
    }

    /// Every pending output, oldest first.
    public func drainOutputs() -> [SessionOutput] {
        outputs.drain()
    }

    /// When `handleTimeout(now:)` should next be called, or nil when no timer is running.
    public func pollTimeout() -> Instant? {
        var earliest: Instant?
        func consider(_ candidate: Instant?) {
            guard let candidate else { return }
            if earliest == nil || candidate < earliest! { earliest = candidate }
        }
        switch machine.state {
        case .searching: consider(room.joinRetransmitAt)
        case .keySetup: consider(handshake?.retransmitAt)
        case .connected: consider(channel.retransmitAt)
        default: break
        }
        return earliest
    }

    // MARK: Inputs

    /// Feed one input at time `now` (monotonic; never earlier than the previous call).
    public func handle(_ input: SessionInput, now: Instant) {
        advanceClock(to: now)
        switch input {
        case .transportUp: transportUp(now: now)
        case .transportDown: transportDown()
        case let .frame(bytes): receiveFrame(bytes, now: now)
        case .quit: end(.userQuit)
        }
    }

    /// The user sends a chat message at time `now`: its ID, under which `.delivered` or
    /// `.undeliverable` reports it later, or why it was refused. An accepted message is sent at
    /// once while CONNECTED (drain the outputs), else when the session next connects.
    public func send(_ text: String, now: Instant) -> Result<MessageID, SendRefusal> {
        advanceClock(to: now)
        guard machine.state != .destroyed else { return .failure(.sessionEnded) }
        return channel.send(text, now: now, into: &outputs)
    }

    /// Run whatever timers are due at `now`.
    public func handleTimeout(now: Instant) {
        advanceClock(to: now)
        switch machine.state {
        case .searching:
            if room.joinRetransmissionDue(now: now) { transmit(.join(configuration.room)) }
        case .keySetup:
            guard var progress = handshake, progress.retransmitAt <= now else { break }
            progress.attempts += 1
            transmitFrame(progress.helloFrame)
            if let confirm = progress.confirmFrame { transmitFrame(confirm) }
            progress.retransmitInterval = min(progress.retransmitInterval * 2, configuration.retransmitMax)
            progress.retransmitAt = now.advanced(by: progress.retransmitInterval)
            handshake = progress
            outputs.append(.notice(.handshakeRetransmitted(attempt: progress.attempts)))
        case .connected:
            channel.retransmitIfDue(now: now, into: &outputs)
        default:
            break
        }
    }

    private func advanceClock(to now: Instant) {
        precondition(now >= lastNow, "time went backwards: \(now) < \(lastNow)")
        lastNow = now
    }

    // MARK: Transport

    private func transportUp(now: Instant) {
        guard apply(.transportUp) else { return }
        room.connect(now: now)
        transmit(.join(configuration.room))
    }

    private func transportDown() {
        guard apply(.transportDown) else { return }
        room.disconnect()
        dropHandshake()
    }

    // MARK: Frames from the relay

    private func receiveFrame(_ bytes: [UInt8], now: Instant) {
        guard machine.state != .destroyed else { return }
        let message: RelayMessage
        do {
            message = try WireCodec.decodeRelayMessage(bytes, limits: configuration.wireLimits)
        } catch {
            reject(.wire(error))
            return
        }
        switch message {
        case let .joined(room, peers): receiveJoined(room: room, peers: peers, now: now)
        case .peerFound: receivePeerFound(now: now)
        case .peerLeft: receivePeerLeft()
        case let .error(code, text): receiveError(code, text, now: now)
        case let .signal(signal):
            receiveSignal(signal, now: now)
        }
    }

    /// Whether a peer showing up (PEER_FOUND, or its hello) starts a handshake now.
    private var awaitsPeer: Bool {
        machine.state == .searching || (machine.state == .disconnected && room.isConnected)
    }

    private func receiveJoined(room roomCode: RoomCode, peers: Int, now: Instant) {
        // A full room means the peer is here, whether or not its PEER_FOUND arrives: if both
        // PEER_FOUNDs were lost, waiting for them would wait forever (the JOIN is no longer
        // retransmitted once JOINED arrives). A PEER_FOUND that still comes is a duplicate.
        let announcesPeer = peers == RoomCode.peersMax
            && (machine.state == .searching || machine.state == .disconnected)
        guard room.receiveJoined(announcesPeer: announcesPeer) else { return }
        outputs.append(.notice(.joined(room: roomCode, peersPresent: peers)))
        if announcesPeer {
            outputs.append(.notice(.peerFound))
            peerArrived(now: now)
        }
    }

    private func receivePeerFound(now: Instant) {
        if room.receivePeerFound() { return }  // The PEER_FOUND that JOINED already stood for.
        guard awaitsPeer else {
            // A duplicate (the relay repeats it after a repeated JOIN): the handshake under way,
            // or the session, already covers that peer.
            reject(.state(.init(state: machine.state, event: .peerFound)))
            return
        }
        outputs.append(.notice(.peerFound))
        peerArrived(now: now)
    }

    private func receivePeerLeft() {
        let wasWithPeer = [.userFound, .keySetup, .connected].contains(machine.state)
        guard apply(.peerLeft) else { return }
        if wasWithPeer {
            dropHandshake()
            outputs.append(.notice(.peerLeft))
        }
    }

    private func receiveError(_ code: RelayErrorCode, _ text: String, now: Instant) {
        outputs.append(.notice(.relayError(code: code, message: text)))
        switch code {
        case .roomFull:
            if room.receiveRoomFull() == .fatal { end(.relayRefused(code)) }
        case .invalidRoom, .alreadyJoined:
            end(.relayRefused(code))
        case .rateLimited:
            channel.relayRateLimited(now: now)
        default:
            break  // Advisory (a SIGNAL with no peer, a join rate limit): retransmission recovers.
        }
    }

    private func receiveSignal(_ signal: Signal, now: Instant) {
        switch signal.kind {
        case .keyExchange, .pake: receiveHello(signal, now: now)
        case .keyConfirm: receiveKeyConfirm(signal, now: now)
        case .message:
            if !channel.receiveRecord(signal, into: &outputs) {
                reject(.state(.init(state: machine.state, event: .receiveMessage)))
            }
        case .ack:
            if !channel.receiveAck(signal, now: now, into: &outputs) {
                reject(.state(.init(state: machine.state, event: .receiveMessage)))
            }
        default: reject(.wire(.unknownKind(signal.kind.rawValue)))
        }
    }

    // MARK: Handshake

    /// The kind of SIGNAL that opens our handshakes.
    private var helloKind: SignalKind { password == nil ? .keyExchange : .pake }

    /// A peer is in the room: open a handshake.
    private func peerArrived(now: Instant) {
        guard apply(.peerFound) else { return }
        startHandshake(now: now)
    }

    /// A fresh X25519 key pair (no password) or a fresh CPace run (password), announced in a
    /// hello that also says which conversation we remember and where it stands.
    private func startHandshake(now: Instant) {
        precondition(machine.state == .userFound)
        dropHandshake()
        localEpoch += 1
        let knownPeer = peerInstance ?? .none
        let nextExpected = peerInstance == nil ? 1 : channel.nextReceiveSequence
        let key: [UInt8]
        var party: CPaceParty?
        if let password {
            let associatedData = HandshakeHello.payload(
                instance: localInstance, epoch: localEpoch, knownPeer: knownPeer, nextExpected: nextExpected)
            do {
                party = try CPaceParty(
                    password: password, channelIdentifier: CPaceParty.channelIdentifier(room: configuration.room),
                    associatedData: associatedData, setting: .symmetric,
                    answersMax: HandshakeProgress.peerKeysUsedMax, entropy: entropy)
            } catch {
                preconditionFailure("a \(associatedData.count)-byte hello is within CPace's AD bound: \(error)")
            }
            key = party!.share
        } else {
            key = keyManager.generateKeyPair(entropy: entropy).bytes
        }
        let hello = HandshakeHello(
            kind: helloKind, key: key, instance: localInstance, epoch: localEpoch, knownPeer: knownPeer,
            nextExpected: nextExpected)
        let frame = WireCodec.encode(ClientMessage.signal(hello.signal))
        handshake = HandshakeProgress(
            local: hello, helloFrame: frame, party: party,
            retransmitAt: now.advanced(by: configuration.handshakeRetransmitInitial),
            retransmitInterval: configuration.handshakeRetransmitInitial)
        guard apply(.keysGenerated) else { return }
        transmitFrame(frame)
    }

    /// Whether the handshake under way can answer one more peer opening with the key (or share)
    /// it already announced.
    private func canAnswerAgain(_ progress: HandshakeProgress) -> Bool {
        if let party = progress.party { return !party.isFinished }
        return keyManager.hasKeyPair
    }

    private func receiveHello(_ signal: Signal, now: Instant) {
        let hello: HandshakeHello
        do {
            hello = try HandshakeHello(signal: signal)
        } catch {
            reject(.handshake(error))
            return
        }
        guard hello.instance != localInstance else {
            // Our own hello sent back (by a relay): taking it for a new peer would retire the
            // real one, and every later hello of the real peer would be refused.
            reject(.crypto(.reflectedPublicKey))
            return
        }
        guard hello.kind == helloKind else {
            // One side has a password and the other has none (or a relay swapped the handshake):
            // no key both sides trust can come of it, so no chat may start.
            end(.authenticationFailed(password == nil ? .peerHasPassword : .peerHasNoPassword))
            return
        }
        if hello.kind == .pake, !CPace.isValidShare(hello.key) {
            // Refused before it reaches our CPace run, which would otherwise have to abort.
            reject(.handshake(.invalidShare))
            return
        }
        guard !retiredPeerInstances.contains(hello.instance) else {
            reject(.handshake(.retiredInstance))
            return
        }
        guard hello.instance != peerInstance || hello.epoch >= peerEpoch else {
            // Older than the handshake we last completed with this peer: a delayed copy.
            reject(.handshake(.staleHello))
            return
        }
        switch machine.state {
        case _ where awaitsPeer:
            // The peer's hello arrived before (or without) PEER_FOUND: a peer is evidently here.
            outputs.append(.notice(.peerFound))
            peerArrived(now: now)
            acceptPeerHello(hello, now: now)
        case .keySetup, .connected:
            guard let current = handshake?.peer else {
                precondition(machine.state == .keySetup, "CONNECTED always has a peer")
                acceptPeerHello(hello, now: now)
                return
            }
            if current == hello {
                // A repeat: the peer has not seen our confirmation yet. Answer with it (and only
                // it: answering a hello with a hello could ping-pong forever).
                outputs.statistics.duplicatesDropped += 1
                if let confirm = handshake?.confirmFrame { transmitFrame(confirm) }
                return
            }
            if current.instance == hello.instance && hello.epoch <= current.epoch {
                reject(.handshake(.staleHello))
                return
            }
            // The peer began again (a reconnect, or a new process).
            if current.instance != hello.instance { retire(current.instance) }
            outputs.append(.notice(.peerRestarted))
            if machine.state == .keySetup, var progress = handshake, canAnswerAgain(progress),
               !progress.peerKeysUsed.contains(hello.key),
               progress.peerKeysUsed.count < HandshakeProgress.peerKeysUsedMax {
                // Our handshake is unconfirmed: answer with the key (or share) we already
                // announced, and announce it again, not a fresh one. A fresh opening would look
                // like a restart to the peer, which would answer with a fresh one too, forever
                // (found by the FuzzSession harness: a connection blip during the handshake).
                progress.forgetPairing()
                handshake = progress
                transmitFrame(progress.helloFrame)
                acceptPeerHello(hello, now: now)
                return
            }
            // Connected (our secret is gone), or a peer key we already answered (deriving the
            // same keys again would seal a second confirmation under the same key and nonce):
            // re-key from scratch.
            restartHandshake(now: now)
            acceptPeerHello(hello, now: now)
        default:
            reject(.state(.init(state: machine.state, event: .peerFound)))
        }
    }

    /// Begin a fresh handshake while one is under way or complete (the peer began again).
    private func restartHandshake(now: Instant) {
        guard apply(.peerRestarted) else { return }
        dropHandshake()
        if machine.state == .disconnected {
            guard apply(.peerFound) else { return }
        }
        startHandshake(now: now)
    }

    /// Pair our opening with the peer's, derive what the peer must confirm, and send our
    /// confirmation. Nothing is encrypted under the new keys until the peer's confirmation
    /// verifies (with a password the session keys do not even exist before then).
    private func acceptPeerHello(_ peer: HandshakeHello, now: Instant) {
        guard machine.state == .keySetup, var progress = handshake else { return }
        precondition(progress.peer == nil)
        guard peer.key != progress.local.key else {
            // Our own key or share under someone else's hello: a reflection.
            reject(.crypto(.reflectedPublicKey))
            return
        }
        let runID: [UInt8]
        let proof: [UInt8]
        if let party = progress.party {
            // The guess budget: every tag we give out lets whoever answered test one password.
            guard passwordRunsUnconfirmed < configuration.passwordRunsUnconfirmedMax else {
                end(.authenticationFailed(.tooManyAttempts(passwordRunsUnconfirmed)))
                return
            }
            let pending: CPaceConfirmation
            do {
                pending = try party.receive(peerShare: peer.key, peerAssociatedData: peer.payload)
            } catch {
                // The share was checked (valid, not ours, not answered before), so this is not
                // expected; if the run aborted, begin a fresh one rather than stay stuck.
                reject(.handshake(.invalidShare))
                if party.isFinished { restartHandshake(now: now) }
                return
            }
            passwordRunsUnconfirmed += 1
            runID = Array(pending.sidOutput.prefix(Self.runIDByteCount))
            proof = pending.localTag
            progress.pending = pending
        } else {
            let shared: SecureBytes
            do {
                shared = try keyManager.sharedSecret(with: try PublicKey(peer.key))
            } catch {
                reject(.crypto(error))
                return
            }
            // The secret half stays until the handshake is confirmed (then it is wiped, for
            // forward secrecy): a peer that restarts its handshake meanwhile is answered with it.
            let localSide: MessageRatchet.Side = progress.local.key.lexicographicallyPrecedes(peer.key) ? .low : .high
            let (low, high) = localSide == .low ? (progress.local, peer) : (peer, progress.local)
            let transcript = Transcript.hash(room: configuration.room, low: low, high: high)
            let master = SessionKeyDerivation.masterKey(handshakeSecret: shared, transcriptHash: transcript)
            shared.wipe()
            let ratchet = MessageRatchet(masterKey: master, localSide: localSide)
            do {
                proof = try transcript.withBytes { buffer throws(CryptoError) in
                    try ratchet.sealConfirmation(buffer)
                }
            } catch {
                preconditionFailure("sealing a confirmation under fresh keys cannot fail: \(error)")
            }
            runID = Array(transcript.prefix(Self.runIDByteCount))
            progress.transcript = transcript
            progress.ratchet = ratchet
        }
        progress.peerKeysUsed.append(peer.key)
        progress.peer = peer
        progress.runID = runID
        progress.safetyNumber = SafetyNumber(
            room: configuration.room, local: progress.local.safetyNumberParty, peer: peer.safetyNumberParty)
        let confirmFrame = WireCodec.encode(ClientMessage.signal(Signal(kind: .keyConfirm, payload: runID + proof)))
        progress.confirmFrame = confirmFrame
        handshake = progress
        transmitFrame(confirmFrame)
        if let early = progress.earlyConfirmation {
            handshake?.earlyConfirmation = nil
            receiveKeyConfirm(Signal(kind: .keyConfirm, payload: early), now: now)
        }
    }

    private func receiveKeyConfirm(_ signal: Signal, now: Instant) {
        guard machine.state == .keySetup, let progress = handshake else {
            if machine.state == .connected {
                outputs.statistics.duplicatesDropped += 1  // A repeat of a confirmation already accepted.
            } else {
                reject(.state(.init(state: machine.state, event: .keyConfirmed)))
            }
            return
        }
        guard let payload = signal.payload, payload.count > Self.runIDByteCount else {
            reject(.handshake(.confirmationFailed))
            return
        }
        guard let peer = progress.peer else {
            // The confirmation overtook the peer's hello: keep the newest one until it comes.
            handshake?.earlyConfirmation = payload
            return
        }
        guard Array(payload.prefix(Self.runIDByteCount)) == progress.runID else {
            // Meant for another pairing (a delayed copy from before a restart): not an attack.
            reject(.handshake(.staleConfirmation))
            return
        }
        let proof = Array(payload[Self.runIDByteCount...])
        let ratchet: MessageRatchet
        if let pending = progress.pending {
            let isk: SecureBytes
            do {
                isk = try pending.confirm(peerTag: proof)
            } catch {
                // Same run, wrong tag: the peer's password differs from ours, or a relay in the
                // middle guessed and missed. The code is spent; nothing was ever encrypted.
                end(.authenticationFailed(.passwordMismatch))
                return
            }
            let master = SessionKeyDerivation.masterKey(handshakeSecret: isk, transcriptHash: pending.sidOutput)
            isk.wipe()
            ratchet = MessageRatchet(masterKey: master, localSide: pending.localSide)
            passwordRunsUnconfirmed -= 1
            handshake?.pending = nil
            handshake?.ratchet = ratchet
        } else {
            guard let existing = progress.ratchet, let transcript = progress.transcript else {
                preconditionFailure("a pairing without a password has its ratchet and transcript")
            }
            let body: SecureBytes
            do {
                body = try proof.withBytes { buffer throws(CryptoError) in try existing.openConfirmation(buffer) }
            } catch {
                reject(.handshake(.confirmationFailed))
                return
            }
            let matches = body.constantTimeEquals(transcript)
            body.wipe()
            guard matches else {
                reject(.handshake(.confirmationFailed))
                return
            }
            ratchet = existing
        }
        finishHandshake(peer: peer, ratchet: ratchet, now: now)
    }

    /// The peer holds our keys: decide how the conversation continues, and go CONNECTED.
    private func finishHandshake(peer: HandshakeHello, ratchet: MessageRatchet, now: Instant) {
        guard let local = handshake?.local else { return }
        // Our sending side follows what the peer announced: if it remembers our conversation,
        // it expects our numbering to continue at `nextExpected`; if not, from 1.
        let resumed = peer.knownPeer == localInstance && peerInstance == peer.instance
        let continuation = ConversationContinuation(
            peerChanged: peerInstance != nil && peerInstance != peer.instance,
            sending: resumed
                ? .resume(nextExpected: peer.nextExpected)
                : .renumber(from: peer.knownPeer == localInstance ? peer.nextExpected : 1),
            restartsReceiving: local.knownPeer != peer.instance)
        if case let .resume(nextExpected) = continuation.sending, !channel.canResume(at: nextExpected) {
            reject(.handshake(.inconsistentResume))
            return
        }
        if let previous = peerInstance, previous != peer.instance {
            // A different peer process: what was meant for the old one is not sent to this one.
            retire(previous)
        }
        channel.continueConversation(continuation, into: &outputs)
        peerInstance = peer.instance
        peerEpoch = peer.epoch
        room.handshakeCompleted()  // Even if JOINED and PEER_FOUND were lost: the relay put us with the peer.
        guard apply(.keyConfirmed) else { return }
        // Forward secrecy: the X25519 secret key or CPace scalar is not needed once confirmed.
        keyManager.wipeKeys()
        handshake?.party?.wipe()
        handshake?.party = nil
        outputs.statistics.handshakesCompleted += 1
        if let safetyNumber = handshake?.safetyNumber {
            outputs.append(
                .notice(.secured(resumed: resumed, authentication: authentication, safetyNumber: safetyNumber)))
        }
        channel.open(ratchet: ratchet, now: now, into: &outputs)
    }

    /// Forget the handshake and wipe its keys (the conversation state stays).
    private func dropHandshake() {
        handshake?.wipe()
        handshake = nil
        keyManager.wipeKeys()
        channel.close()
    }

    private func retire(_ instance: InstanceID) {
        guard !retiredPeerInstances.contains(instance) else { return }
        if retiredPeerInstances.count == Self.retiredPeerInstancesMax { retiredPeerInstances.removeFirst() }
        retiredPeerInstances.append(instance)
    }

    // MARK: Ending

    private func end(_ reason: SessionEndReason) {
        guard machine.state != .destroyed else { return }
        let event: SessionEvent = reason == .userQuit ? .quit : .fatalError
        guard apply(event) else { return }
        channel.abandonAll(.sessionEnded, into: &outputs)
        dropHandshake()
        password?.wipe()
        room.disconnect()
        outputs.append(.notice(.ended(reason)))
        outputs.append(.closeTransport)
    }

    // MARK: Helpers

    /// Apply a lifecycle event; report the change, or record the rejection and return false.
    private func apply(_ event: SessionEvent) -> Bool {
        let before = machine.state
        do {
            try machine.apply(event)
        } catch {
            reject(.state(error))
            return false
        }
        if machine.state != before {
            outputs.append(.stateChanged(from: before, to: machine.state))
        }
        return true
    }

    private func reject(_ rejection: FrameRejection) {
        outputs.reject(rejection)
    }

    private func transmit(_ message: ClientMessage) {
        transmitFrame(WireCodec.encode(message))
    }

    private func transmitFrame(_ frame: [UInt8]) {
        guard room.isConnected else { return }
        outputs.transmit(frame)
    }
}

/// A handshake under way (or completed, while CONNECTED).
private struct HandshakeProgress {
    /// Our opening, and its frame for retransmission.
    var local: HandshakeHello
    var helloFrame: [UInt8]
    /// With a password: our CPace run (its scalar), until confirmation or the end of the handshake.
    var party: CPaceParty?
    var retransmitAt: Instant
    var retransmitInterval: Duration
    var attempts = 1

    // The current pairing (our opening with the peer's `peer`), once the peer's opening arrived.
    var peer: HandshakeHello?
    /// Leads our KEY_CONFIRM and must lead the peer's: which pairing a confirmation is for.
    var runID: [UInt8] = []
    /// With a password: ISK, held back until the peer's tag verifies.
    var pending: CPaceConfirmation?
    /// Without a password: the transcript hash the peer must confirm.
    var transcript: [UInt8]?
    /// The session's cipher. Without a password it exists from the pairing on (it seals our
    /// confirmation under a control key; no record before CONNECTED); with a password only once
    /// the peer's tag verified.
    var ratchet: MessageRatchet?
    var safetyNumber: SafetyNumber?
    var confirmFrame: [UInt8]?
    /// A confirmation that arrived before the peer's opening (networks reorder).
    var earlyConfirmation: [UInt8]?
    /// Peer keys (or shares) already paired with our opening; never pair one twice (the same
    /// keys would seal a second confirmation under the same nonce). Bounded.
    var peerKeysUsed: [[UInt8]] = []
    static let peerKeysUsedMax = 8

    init(local: HandshakeHello, helloFrame: [UInt8], party: CPaceParty?, retransmitAt: Instant,
         retransmitInterval: Duration) {
        self.local = local
        self.helloFrame = helloFrame
        self.party = party
        self.retransmitAt = retransmitAt
        self.retransmitInterval = retransmitInterval
    }

    /// Drop the current pairing (the peer began again) but keep our opening.
    mutating func forgetPairing() {
        pending?.wipe()
        pending = nil
        ratchet?.wipe()
        ratchet = nil
        peer = nil
        runID = []
        transcript = nil
        safetyNumber = nil
        confirmFrame = nil
        earlyConfirmation = nil
    }

    /// Wipe every secret the handshake holds.
    func wipe() {
        party?.wipe()
        pending?.wipe()
        ratchet?.wipe()
    }
}
