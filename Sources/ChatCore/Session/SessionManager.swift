/// One end of a chat: the sans-IO session that both the terminal client and the simulator run.
///
/// Inputs arrive through `handle(_:now:)`, `send(_:now:)` and `handleTimeout(now:)`, each with the
/// caller's `now`; outputs (frames to send, messages to show, state changes, notices) are drained
/// with `pollOutput()`, and `pollTimeout()` says when the next timer is due — the shape of
/// quinn-proto and str0m. The session never reads a clock, never opens a socket, and takes
/// randomness only from the `EntropySource` it is given.
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
///
/// Structure: a coordinator over three state machines whose states carry the data valid in them
/// (as NIOHTTP2's `HTTP2ConnectionStateMachine`): `RoomMembership` (the transport and the room),
/// `HandshakeMachine` (openings, pairings, confirmations) and `ReliableChannel` (the conversation's
/// messages). They decide; the coordinator routes inputs to them, drives the documented lifecycle
/// (`SessionStateMachine`, whose every change it reports) and turns their decisions into outputs.
public final class SessionManager {
    public let configuration: SessionConfiguration
    /// How this session authenticates its handshakes: `.password` when it was given one.
    public let authentication: SessionAuthentication
    private let entropy: any EntropySource
    private var lifecycle = SessionStateMachine()
    private var room: RoomMembership
    private var handshake: HandshakeMachine
    private var channel: ReliableChannel
    private var outputs = SessionOutputs()
    private var lastNow: Instant = .zero

    /// Counters for tests, the simulator and the UI's status line.
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
        self.authentication = password == nil ? .safetyNumber : .password
        self.entropy = entropy
        self.room = RoomMembership(
            retransmitInitial: configuration.joinRetransmitInitial, retransmitMax: configuration.retransmitMax)
        let localInstance = InstanceID.random(entropy: entropy)
        self.handshake = HandshakeMachine(
            configuration: configuration, password: password?.copy(), localInstance: localInstance)
        self.channel = ReliableChannel(configuration: configuration)
    }

    deinit {
        handshake.wipe()
        channel.wipe()
    }

    // MARK: Public view

    /// The lifecycle state.
    public var state: SessionState { lifecycle.state }

    /// This client's identity for the life of the process (not a key; public).
    public var localInstance: InstanceID { handshake.localInstance }

    /// Messages accepted but not yet acknowledged by the peer.
    public var pendingCount: Int { channel.queue.count }

    /// The IDs of messages accepted but not yet acknowledged, oldest first.
    public var pendingMessageIDs: [MessageID] { channel.queue.map(\.id) }

    /// The safety number of the handshake that secured the session, while CONNECTED (nil
    /// otherwise): the same on both sides unless someone is in the middle. Every handshake has
    /// a new one, since keys are fresh each time.
    public var safetyNumber: SafetyNumber? { handshake.safetyNumber }

    /// With a password: CPace pairings for which we gave out our confirmation tag and the peer
    /// has not confirmed, over the session's life. Each may have been a relay's password guess;
    /// `configuration.passwordRunsUnconfirmedMax` bounds them (the guess budget).
    public var passwordRunsUnconfirmed: Int { handshake.passwordRunsUnconfirmed }

    /// Counters for tests, the simulator and the UI's status line.
    public var statistics: Statistics { outputs.statistics }

    /// Broken behaviours for the simulator's self-tests (PlantedBugs.swift); always empty otherwise.
    @_spi(Simulation) public var plantedBugs: PlantedBugs {
        get { channel.plantedBugs }
        set { channel.plantedBugs = newValue }
    }

    /// Copies of every key the session holds for its records right now (the current ratchet's
    /// chain and control keys; the X25519 secret key and the CPace scalar are gone once the
    /// handshake is confirmed), for the forward-secrecy tests. Never used by shipped code.
    @_spi(Testing)
    public func heldRecordKeysForTesting() -> [[UInt8]] {
        (channel.ratchet ?? handshake.pairingRatchet)?.heldSecretsForTesting() ?? []
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
        // Each lifecycle state runs the timer of one layer.
        switch lifecycle.state {
        case .searching: room.joinRetransmitAt
        case .keySetup: handshake.retransmitAt
        case .connected: channel.retransmitAt
        default: nil
        }
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
        guard lifecycle.state != .destroyed else { return .failure(.sessionEnded) }
        return channel.send(text, now: now, into: &outputs)
    }

    /// Run whatever timers are due at `now`.
    public func handleTimeout(now: Instant) {
        advanceClock(to: now)
        switch lifecycle.state {
        case .searching:
            if room.joinRetransmissionDue(now: now) { transmit(room.joinFrame(configuration.room)) }
        case .keySetup:
            guard let frames = handshake.retransmitIfDue(now: now) else { break }
            transmit(frames.hello)
            if let confirmation = frames.confirmation { transmit(confirmation) }
            outputs.notice(.handshakeRetransmitted(attempt: frames.attempt))
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

    // MARK: Transport and room

    private func transportUp(now: Instant) {
        guard apply(.transportUp) else { return }
        room.connect(now: now)
        transmit(room.joinFrame(configuration.room))
    }

    private func transportDown() {
        guard apply(.transportDown) else { return }
        room.disconnect()
        dropHandshake()
    }

    /// Whether a peer showing up (PEER_FOUND, or its hello) starts a handshake now.
    private var awaitsPeer: Bool {
        lifecycle.state == .searching || (lifecycle.state == .disconnected && room.isConnected)
    }

    private func receiveFrame(_ bytes: [UInt8], now: Instant) {
        guard lifecycle.state != .destroyed else { return }
        let message: RelayMessage
        do {
            message = try WireCodec.decodeRelayMessage(bytes, limits: configuration.wireLimits)
        } catch {
            reject(.wire(error))
            return
        }
        switch message {
        case let .joined(room, peers): receiveJoined(room: room, peers: peers, token: nil, now: now)
        case let .joinedWithToken(room, peers, token): receiveJoined(room: room, peers: peers, token: token, now: now)
        case .peerFound: receivePeerFound(now: now)
        case .peerLeft: receivePeerLeft()
        case let .error(code, text): receiveError(code, text, now: now)
        case let .signal(signal): receiveSignal(signal, now: now)
        }
    }

    private func receiveJoined(room roomCode: RoomCode, peers: Int, token: ReconnectToken?, now: Instant) {
        // A full room means the peer is here, whether or not its PEER_FOUND arrives: if both
        // PEER_FOUNDs were lost, waiting for them would wait forever (the JOIN is no longer
        // retransmitted once JOINED arrives). A PEER_FOUND that still comes is a duplicate.
        let announcesPeer = peers == RoomCode.peersMax
            && (lifecycle.state == .searching || lifecycle.state == .disconnected)
        guard room.receiveJoined(announcesPeer: announcesPeer, token: token) else { return }
        outputs.notice(.joined(room: roomCode, peersPresent: peers))
        if announcesPeer {
            outputs.notice(.peerFound)
            peerArrived(now: now)
        }
    }

    private func receivePeerFound(now: Instant) {
        if room.receivePeerFound() { return }  // The PEER_FOUND that JOINED already stood for.
        guard awaitsPeer else {
            // A duplicate (the relay repeats it after a repeated JOIN): the handshake under way,
            // or the session, already covers that peer.
            reject(.state(.init(state: lifecycle.state, event: .peerFound)))
            return
        }
        outputs.notice(.peerFound)
        peerArrived(now: now)
    }

    private func receivePeerLeft() {
        let wasWithPeer = [.userFound, .keySetup, .connected].contains(lifecycle.state)
        guard apply(.peerLeft) else { return }
        if wasWithPeer {
            dropHandshake()
            outputs.notice(.peerLeft)
        }
    }

    private func receiveError(_ code: RelayErrorCode, _ text: String, now: Instant) {
        outputs.notice(.relayError(code: code, message: text))
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
        case .keyExchange, .pake:
            receiveHello(signal, now: now)
        case .keyConfirm:
            receiveKeyConfirm(signal, now: now)
        case .message:
            if !channel.receiveRecord(signal, into: &outputs) {
                reject(.state(.init(state: lifecycle.state, event: .receiveMessage)))
            }
        case .ack:
            if !channel.receiveAck(signal, now: now, into: &outputs) {
                reject(.state(.init(state: lifecycle.state, event: .receiveMessage)))
            }
        default:
            reject(.wire(.unknownKind(signal.kind.rawValue)))
        }
    }

    // MARK: Handshake

    /// A peer is in the room: open a handshake.
    private func peerArrived(now: Instant) {
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

    /// Begin a fresh handshake while one is under way or complete (the peer began again).
    private func restartHandshake(now: Instant) {
        guard apply(.peerRestarted) else { return }
        dropHandshake()
        if lifecycle.state == .disconnected {
            guard apply(.peerFound) else { return }
        }
        startHandshake(now: now)
    }

    /// Forget the handshake and the keys (the conversation's queue and numbering stay).
    private func dropHandshake() {
        handshake.drop()
        channel.close()
    }

    private func receiveHello(_ signal: Signal, now: Instant) {
        let hello: HandshakeHello
        switch handshake.screen(signal) {
        case let .accepted(value): hello = value
        case let .rejected(rejection):
            reject(rejection)
            return
        case let .modeMismatch(failure):
            end(.authenticationFailed(failure))
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
        case let .peerRestarted(reusedOpening):
            outputs.notice(.peerRestarted)
            if let reusedOpening { transmit(reusedOpening) } else { restartHandshake(now: now) }
            pair(with: hello, now: now)
        }
    }

    /// Pair our opening with the peer's and send our confirmation.
    private func pair(with hello: HandshakeHello, now: Instant) {
        switch handshake.pair(with: hello) {
        case .notOpened:
            break
        case let .rejected(rejection, runFinished):
            reject(rejection)
            if runFinished { restartHandshake(now: now) }
        case let .guessBudgetSpent(count):
            end(.authenticationFailed(.tooManyAttempts(count)))
        case let .paired(confirmFrame, earlyConfirmation):
            transmit(confirmFrame)
            if let earlyConfirmation {
                receiveKeyConfirm(Signal(kind: .keyConfirm, payload: earlyConfirmation), now: now)
            }
        }
    }

    private func receiveKeyConfirm(_ signal: Signal, now: Instant) {
        switch handshake.receiveConfirmation(signal, nextSendSequence: channel.nextSendSequence) {
        case .unexpected:
            reject(.state(.init(state: lifecycle.state, event: .keyConfirmed)))
        case .duplicate:
            outputs.statistics.duplicatesDropped += 1  // A repeat of a confirmation already accepted.
        case .held:
            break  // It overtook the peer's hello: kept until that comes.
        case .forAnotherPairing:
            reject(.handshake(.staleConfirmation))  // A delayed copy from before a restart: not an attack.
        case let .rejected(error):
            reject(.handshake(error))
        case .passwordMismatch:
            end(.authenticationFailed(.passwordMismatch))
        case let .confirmed(completion):
            finishHandshake(completion, now: now)
        }
    }

    /// The peer holds our keys: settle the conversation, hand the keys to the channel, and go
    /// CONNECTED.
    private func finishHandshake(_ completion: HandshakeMachine.Completion, now: Instant) {
        channel.continueConversation(completion.continuation, into: &outputs)
        room.handshakeCompleted()
        guard apply(.keyConfirmed) else { return }
        outputs.statistics.handshakesCompleted += 1
        outputs.notice(.secured(
            resumed: completion.continuation.resumes, authentication: authentication,
            safetyNumber: completion.safetyNumber))
        channel.open(ratchet: completion.ratchet, now: now, into: &outputs)
    }

    // MARK: Ending

    private func end(_ reason: SessionEndReason) {
        guard lifecycle.state != .destroyed else { return }
        let event: SessionEvent = reason == .userQuit ? .quit : .fatalError
        guard apply(event) else { return }
        channel.abandonAll(.sessionEnded, into: &outputs)
        channel.close()
        handshake.end()
        room.disconnect()
        outputs.notice(.ended(reason))
        outputs.append(.closeTransport)
    }

    // MARK: Helpers

    /// Apply a lifecycle event; report the change, or record the rejection and return false.
    private func apply(_ event: SessionEvent) -> Bool {
        let before = lifecycle.state
        do {
            try lifecycle.apply(event)
        } catch {
            reject(.state(error))
            return false
        }
        if lifecycle.state != before {
            outputs.append(.stateChanged(from: before, to: lifecycle.state))
        }
        return true
    }

    private func reject(_ rejection: FrameRejection) {
        outputs.reject(rejection)
    }

    private func transmit(_ message: ClientMessage) {
        transmit(WireCodec.encode(message))
    }

    /// Frames go out only while the transport is up.
    private func transmit(_ frame: [UInt8]) {
        guard room.isConnected else { return }
        outputs.transmit(frame)
    }
}
