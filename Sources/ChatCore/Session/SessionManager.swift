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
    private var outputs: [SessionOutput] = []
    private var lastNow: Instant = .zero

    /// The transport and the room: JOIN, JOINED, PEER_FOUND, ROOM_FULL.
    private var room: RoomMembership

    // Handshake.
    /// The X25519 key pair of a handshake without a password.
    private let keyManager = KeyManager()
    /// Guarded scratch where each outgoing record is padded before sealing; wiped after each use.
    private let recordScratch: SecureBytes
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
    private var nextMessageID: UInt64 = 1
    private var sendQueue: [OutgoingMessage] = []
    private var nextSendSequence: UInt64 = 1
    private var retransmitAt: Instant?
    /// The message retransmission timeout: measured round trips, doubled on each expiry.
    private var retransmitEstimator: RetransmitEstimator
    private var nextReceiveSequence: UInt64 = 1
    /// Records that arrived ahead of `nextReceiveSequence`, sorted by sequence. Bounded.
    private var reorderBuffer: [(sequence: UInt64, box: [UInt8])] = []

    /// Broken behaviours for the simulator's self-tests (PlantedBugs.swift); always empty otherwise.
    @_spi(Simulation) public var plantedBugs: PlantedBugs = []

    /// Counters for tests, the simulator and the UI's status line.
    public private(set) var statistics = Statistics()

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
        self.retransmitEstimator = RetransmitEstimator(
            minimum: configuration.messageRetransmitInitial, maximum: configuration.retransmitMax)
        self.recordScratch = SecureBytes(count: ChatRecord.paddedCount(textCount: configuration.messageTextMaxBytes))
    }

    deinit {
        handshake?.wipe()
        keyManager.wipeKeys()
        password?.wipe()
        recordScratch.wipe()
        for message in sendQueue { message.text.wipe() }
    }

    // MARK: Public view

    /// The lifecycle state.
    public var state: SessionState { machine.state }

    /// Messages accepted but not yet acknowledged by the peer.
    public var pendingCount: Int { sendQueue.count }

    /// The IDs of messages accepted but not yet acknowledged, oldest first.
    public var pendingMessageIDs: [MessageID] { sendQueue.map(\.id) }

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
        outputs.isEmpty ? nil : outputs.removeFirst()
    }

    /// Every pending output, oldest first.
    public func drainOutputs() -> [SessionOutput] {
        defer { outputs.removeAll(keepingCapacity: true) }
        return outputs
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
        case .connected: consider(retransmitAt)
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
            guard let due = retransmitAt, due <= now else { break }
            // Go-back-N: resend every message in flight, oldest first, then back off.
            var resent = 0
            for index in sendQueue.indices where sendQueue[index].sequence != nil {
                guard let frame = sendQueue[index].frame else { continue }
                transmitFrame(frame)
                sendQueue[index].transmissions += 1
                resent += 1
            }
            statistics.retransmissions += resent
            retransmitEstimator.backOff()
            retransmitAt = resent > 0 ? now.advanced(by: retransmitEstimator.timeout) : nil
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
            // The relay holds what we sent and forwards it as its bucket refills: nothing was
            // lost, so resending now would only queue duplicates ahead of the acknowledgements.
            // Back off as if a timeout had expired (a congestion signal, as ECN is to TCP).
            retransmitEstimator.backOff()
            if retransmitAt != nil { retransmitAt = now.advanced(by: retransmitEstimator.timeout) }
        default:
            break  // Advisory (a SIGNAL with no peer, a join rate limit): retransmission recovers.
        }
    }

    private func receiveSignal(_ signal: Signal, now: Instant) {
        switch signal.kind {
        case .keyExchange, .pake: receiveHello(signal, now: now)
        case .keyConfirm: receiveKeyConfirm(signal, now: now)
        case .message: receiveRecord(signal, now: now)
        case .ack: receiveAck(signal, now: now)
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
        let nextExpected = peerInstance == nil ? 1 : nextReceiveSequence
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
                statistics.duplicatesDropped += 1
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
            ratchet.retainsOpenedKeys = plantedBugs.contains(.skipCounterCheck)
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
                statistics.duplicatesDropped += 1  // A repeat of a confirmation already accepted.
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
            ratchet.retainsOpenedKeys = plantedBugs.contains(.skipCounterCheck)
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
        if let previous = peerInstance, previous != peer.instance {
            // A different peer process: what was meant for the old one is not sent to this one.
            retire(previous)
            reportUndeliverable(where: { $0.boundPeer == previous }, reason: .peerChanged)
            nextReceiveSequence = 1
            reorderBuffer.removeAll()
        }
        // Our sending side follows what the peer announced: if it remembers our conversation,
        // it expects our numbering to continue at `nextExpected`; if not, from 1.
        let resumed = peer.knownPeer == localInstance && peerInstance == peer.instance
        if resumed {
            guard peer.nextExpected <= nextSendSequence else {
                reject(.handshake(.inconsistentResume))
                return
            }
            // Not a round trip: the messages went out before the connection or key changed.
            acknowledge(through: peer.nextExpected - 1, roundTripEnd: nil)
        } else {
            renumberPendingMessages(from: peer.knownPeer == localInstance ? peer.nextExpected : 1)
        }
        if local.knownPeer != peer.instance {
            // We announced another (or no) conversation, so the peer numbers its side from 1.
            nextReceiveSequence = 1
            reorderBuffer.removeAll()
        }
        peerInstance = peer.instance
        peerEpoch = peer.epoch
        for index in sendQueue.indices where sendQueue[index].boundPeer == nil {
            sendQueue[index].boundPeer = peer.instance
        }
        let firstUnacknowledged = sendQueue.first(where: { $0.sequence != nil })?.sequence ?? nextSendSequence
        ratchet.resume(nextSendSequence: firstUnacknowledged, nextReceiveSequence: nextReceiveSequence)
        reorderBuffer.removeAll()  // Records from before the re-key are under the old keys.
        room.handshakeCompleted()  // Even if JOINED and PEER_FOUND were lost: the relay put us with the peer.
        guard apply(.keyConfirmed) else { return }
        // Forward secrecy: the X25519 secret key or CPace scalar is not needed once confirmed.
        keyManager.wipeKeys()
        handshake?.party?.wipe()
        handshake?.party = nil
        statistics.handshakesCompleted += 1
        if let safetyNumber = handshake?.safetyNumber {
            outputs.append(
                .notice(.secured(resumed: resumed, authentication: authentication, safetyNumber: safetyNumber)))
        }
        retransmitAt = nil
        pump(now: now)
    }

    /// Forget the handshake and wipe its keys (the conversation state stays).
    private func dropHandshake() {
        handshake?.wipe()
        handshake = nil
        keyManager.wipeKeys()
        retransmitAt = nil
        reorderBuffer.removeAll()
        // Records sealed under the old keys are useless now; messages are re-sealed after re-keying.
        for index in sendQueue.indices { sendQueue[index].frame = nil }
    }

    private func retire(_ instance: InstanceID) {
        guard !retiredPeerInstances.contains(instance) else { return }
        if retiredPeerInstances.count == Self.retiredPeerInstancesMax { retiredPeerInstances.removeFirst() }
        retiredPeerInstances.append(instance)
    }

    // MARK: Sending

    /// The user sends a chat message at time `now`: its ID, under which `.delivered` or
    /// `.undeliverable` reports it later, or why it was refused. An accepted message is sent at
    /// once while CONNECTED (drain the outputs), else when the session next connects.
    public func send(_ text: String, now: Instant) -> Result<MessageID, SendRefusal> {
        advanceClock(to: now)
        guard machine.state != .destroyed else { return .failure(.sessionEnded) }
        let utf8Count = text.utf8.count
        guard utf8Count > 0 else { return .failure(.empty) }
        guard utf8Count <= configuration.messageTextMaxBytes else {
            return .failure(.tooLong(maxBytes: configuration.messageTextMaxBytes))
        }
        guard sendQueue.count < configuration.sendQueueMax else {
            return .failure(.queueFull(max: configuration.sendQueueMax))
        }
        // The text moves into guarded memory; the caller's String is the UI's copy.
        let secureText = SecureBytes(count: utf8Count) { buffer in
            _ = buffer.initializeMemory(as: UInt8.self, from: text.utf8)
        }
        let id = MessageID(nextMessageID)
        nextMessageID += 1
        // A message typed during a conversation belongs to that peer; one typed before any
        // conversation goes to whoever the first handshake confirms.
        sendQueue.append(OutgoingMessage(id: id, text: secureText, boundPeer: peerInstance))
        if machine.state == .connected {
            _ = apply(.sendMessage)
            pump(now: now)
        }
        return .success(id)
    }

    /// Seal and send queued messages while the window has room.
    private func pump(now: Instant) {
        guard machine.state == .connected, let ratchet = handshake?.ratchet else { return }
        var inFlight = 0
        for index in sendQueue.indices {
            guard sendQueue[index].boundPeer == peerInstance else { continue }
            guard inFlight < configuration.inFlightMax else { break }
            inFlight += 1
            if sendQueue[index].frame != nil { continue }
            let sequence: UInt64
            if let assigned = sendQueue[index].sequence {
                sequence = assigned
            } else {
                sequence = nextSendSequence
                nextSendSequence += 1
                sendQueue[index].sequence = sequence
            }
            // The padded record is built in the session's guarded scratch (one allocation for the
            // session's life: sodium_malloc per message cost more than the encryption) and wiped
            // as soon as it is sealed.
            let text = sendQueue[index].text
            let box: [UInt8]
            do {
                box = try recordScratch.withUnsafeMutableBytes { scratch throws(CryptoError) in
                    let count = ChatRecord.write(text: text, into: scratch)
                    defer { Sodium.memzero(UnsafeMutableRawBufferPointer(rebasing: scratch[0..<count])) }
                    let record = UnsafeRawBufferPointer(rebasing: scratch[0..<count])
                    return try ratchet.sealRecord(sequence: sequence, record)
                }
            } catch {
                preconditionFailure("sealing record #\(sequence) failed: \(error)")
            }
            var payload: [UInt8] = []
            payload.reserveCapacity(8 + box.count)
            BigEndian.append(sequence, to: &payload)
            payload.append(contentsOf: box)
            let frame = WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: payload)))
            sendQueue[index].frame = frame
            transmitFrame(frame)
            // A frame re-sealed after a re-key repeats a message already sent (its count goes past
            // one): Karn's rule leaves it unsampled, like any retransmission.
            sendQueue[index].transmissions += 1
            sendQueue[index].sentAt = now
            if retransmitAt == nil { retransmitAt = now.advanced(by: retransmitEstimator.timeout) }
        }
    }

    /// The peer has everything through `sequence`: report those messages delivered and, when
    /// `roundTripEnd` is given (an acknowledgement arrived then), time the newest of them that
    /// was sent only once (Karn's rule) as a round-trip sample.
    private func acknowledge(through sequence: UInt64, roundTripEnd: Instant?) {
        var delivered: [MessageID] = []
        var roundTrip: Duration?
        while let first = sendQueue.first, let assigned = first.sequence, assigned <= sequence,
              first.boundPeer == peerInstance || peerInstance == nil {
            if first.transmissions == 1, let sentAt = first.sentAt, let roundTripEnd {
                roundTrip = roundTripEnd.duration(since: sentAt)
            }
            delivered.append(first.id)
            first.text.wipe()
            sendQueue.removeFirst()
        }
        if let roundTrip { retransmitEstimator.sample(roundTrip) }
        if !delivered.isEmpty { outputs.append(.delivered(delivered)) }
    }

    /// Forget sequence numbers of unacknowledged messages; they are numbered again from `first`.
    private func renumberPendingMessages(from first: UInt64) {
        for index in sendQueue.indices {
            sendQueue[index].sequence = nil
            sendQueue[index].frame = nil
        }
        nextSendSequence = first
    }

    private func reportUndeliverable(where predicate: (OutgoingMessage) -> Bool, reason: UndeliverableReason) {
        var lost: [MessageID] = []
        var kept: [OutgoingMessage] = []
        for message in sendQueue {
            if predicate(message) {
                lost.append(message.id)
                message.text.wipe()
            } else {
                kept.append(message)
            }
        }
        sendQueue = kept
        if !lost.isEmpty { outputs.append(.undeliverable(lost, reason)) }
    }

    // MARK: Receiving records and acknowledgements

    private func receiveRecord(_ signal: Signal, now: Instant) {
        guard machine.state == .connected, let ratchet = handshake?.ratchet else {
            reject(.state(.init(state: machine.state, event: .receiveMessage)))
            return
        }
        guard let payload = signal.payload, payload.count >= 8 else {
            reject(.crypto(.truncated(length: signal.payload?.count ?? 0)))
            return
        }
        let sequence = BigEndian.uint64(payload, at: 0)
        let box = Array(payload[8...])
        if sequence < nextReceiveSequence && !plantedBugs.contains(.skipCounterCheck) {
            // Already delivered (a retransmission whose ack was lost, or a replay): never shown
            // twice. Re-acknowledge so the sender stops.
            statistics.duplicatesDropped += 1
            reject(.crypto(.replayed(sequence: sequence, expected: nextReceiveSequence)))
            sendAck()
            return
        }
        if sequence > nextReceiveSequence {
            // Ahead of a gap: hold it (unopened) until the gap fills, within bounds.
            let distance = sequence - nextReceiveSequence
            if distance <= UInt64(configuration.reorderBufferMax),
               reorderBuffer.count < configuration.reorderBufferMax,
               !reorderBuffer.contains(where: { $0.sequence == sequence }) {
                let position = reorderBuffer.firstIndex(where: { $0.sequence > sequence }) ?? reorderBuffer.count
                reorderBuffer.insert((sequence, box), at: position)
            }
            reject(.crypto(.outOfOrder(sequence: sequence, expected: nextReceiveSequence)))
            sendAck()
            return
        }
        guard openAndDeliver(sequence: sequence, box: box, ratchet: ratchet) else { return }
        // Deliver whatever the gap was holding back, in order.
        while let first = reorderBuffer.first, first.sequence <= nextReceiveSequence {
            reorderBuffer.removeFirst()
            if first.sequence == nextReceiveSequence {
                _ = openAndDeliver(sequence: first.sequence, box: first.box, ratchet: ratchet)
            }
        }
        sendAck()
    }

    /// Open record `sequence` (the next expected) and hand its text to the UI.
    private func openAndDeliver(sequence: UInt64, box: [UInt8], ratchet: MessageRatchet) -> Bool {
        // The plaintext is lent from the ratchet's guarded buffer (wiped when the closure returns);
        // only the text the UI needs leaves it, as a String.
        let decoded: Result<String, RecordError>
        do {
            decoded = try box.withBytes { buffer throws(CryptoError) in
                try ratchet.openRecord(sequence: sequence, buffer) { ChatRecord.text(of: $0) }
            }
        } catch {
            reject(.crypto(error))
            return false
        }
        // The box authenticated, so the sequence number is consumed whatever the content.
        nextReceiveSequence = sequence + 1
        let text: String
        switch decoded {
        case let .success(value):
            text = value
        case let .failure(error):
            reject(.record(error))
            return true
        }
        if plantedBugs.contains(.dropAcknowledgedMessage) && sequence % PlantedBugs.droppedSequenceModulus == 0 {
            return true
        }
        guard apply(.receiveMessage) else { return true }
        outputs.append(.received(IncomingMessage(sequence: sequence, text: text)))
        return true
    }

    private func sendAck() {
        guard let ratchet = handshake?.ratchet, machine.state == .connected else { return }
        var body: [UInt8] = []
        BigEndian.append(nextReceiveSequence - 1, to: &body)
        let sealed: (counter: UInt64, box: [UInt8])
        do {
            sealed = try body.withBytes { buffer throws(CryptoError) in try ratchet.sealAck(buffer) }
        } catch {
            preconditionFailure("sealing an ack cannot fail: \(error)")
        }
        var payload: [UInt8] = []
        BigEndian.append(sealed.counter, to: &payload)
        payload.append(contentsOf: sealed.box)
        transmit(.signal(Signal(kind: .ack, payload: payload)))
    }

    private func receiveAck(_ signal: Signal, now: Instant) {
        guard machine.state == .connected, let ratchet = handshake?.ratchet else {
            reject(.state(.init(state: machine.state, event: .receiveMessage)))
            return
        }
        guard let payload = signal.payload, payload.count >= 8 else {
            reject(.crypto(.truncated(length: signal.payload?.count ?? 0)))
            return
        }
        let counter = BigEndian.uint64(payload, at: 0)
        let body: SecureBytes
        do {
            body = try Array(payload[8...]).withBytes { buffer throws(CryptoError) in
                try ratchet.openAck(counter: counter, buffer)
            }
        } catch {
            reject(.crypto(error))
            return
        }
        guard body.count == 8 else {
            reject(.crypto(.truncated(length: body.count)))
            return
        }
        let through = body.withUnsafeBytes { BigEndian.uint64($0, at: 0) }
        guard through < nextSendSequence else {
            reject(.handshake(.inconsistentResume))
            return
        }
        let before = sendQueue.count
        acknowledge(through: through, roundTripEnd: now)
        if sendQueue.count < before {
            // Progress: restart the timer for what is still in flight, at the measured timeout.
            let stillInFlight = sendQueue.contains { $0.frame != nil }
            retransmitAt = stillInFlight ? now.advanced(by: retransmitEstimator.timeout) : nil
            pump(now: now)
        }
    }

    // MARK: Ending

    private func end(_ reason: SessionEndReason) {
        guard machine.state != .destroyed else { return }
        let event: SessionEvent = reason == .userQuit ? .quit : .fatalError
        guard apply(event) else { return }
        reportUndeliverable(where: { _ in true }, reason: .sessionEnded)
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
        statistics.framesRejected += 1
        outputs.append(.notice(.frameRejected(rejection)))
    }

    private func transmit(_ message: ClientMessage) {
        transmitFrame(WireCodec.encode(message))
    }

    private func transmitFrame(_ frame: [UInt8]) {
        guard room.isConnected else { return }
        outputs.append(.transmit(frame))
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

/// A message the user sent that the peer has not acknowledged yet.
private struct OutgoingMessage {
    let id: MessageID
    /// The text, in guarded memory until acknowledged (it may need re-sealing after a re-key).
    let text: SecureBytes
    /// The peer instance this message is for (nil: whoever the first handshake confirms).
    var boundPeer: InstanceID?
    /// Its sequence number in the conversation, once first sent.
    var sequence: UInt64?
    /// The sealed frame under the current key, kept for retransmission.
    var frame: [UInt8]?
    /// When its current frame was first sent, and how often the message went out (in any frame):
    /// only a message sent once gives a round-trip sample (Karn's rule).
    var sentAt: Instant?
    var transmissions = 0
}
