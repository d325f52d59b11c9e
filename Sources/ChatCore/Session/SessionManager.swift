/// One end of a chat: the sans-IO session that both the terminal client and the simulator run.
///
/// Inputs arrive through `handle(_:now:)`, `send(_:now:)` and `handleTimeout(now:)`, each with the
/// caller's `now`; outputs (frames to send, messages to show, state changes, notices) are drained
/// with `pollOutput()`, and `pollTimeout()` says when the next timer is due — the shape of
/// quinn-proto and str0m. The session never reads a clock, never opens a socket, and takes
/// randomness only from the `EntropySource` it is given.
///
/// Protocol v3 (docs/PROTOCOL.md, "Session layer"): on PEER_FOUND both sides open a handshake.
/// With a password it is CPace (SIGNAL kind PAKE: a ristretto255 share and the hello as associated
/// data); without one it is the original design's X25519 (KEY_EXCHANGE). Each side answers the
/// peer's opening with a KEY_CONFIRM naming the two openings and enters CONNECTED only when the
/// peer's confirmation of the same pairing verifies. The password (or, without one, nothing but
/// the safety number) authenticates the first handshake with a peer instance; later ones with it
/// are keyed with a secret retained from the last, so they test no password and a relay cannot
/// complete them. A confirmation that names our pairing and does not prove it, an opening of the
/// other mode, or a handshake blocked past its bound ends the session ("authentication failed"),
/// unless it is CONNECTED on keys already proven: then only that re-key is refused. Messages are
/// numbered per conversation, acknowledged cumulatively, retransmitted with backoff until
/// acknowledged, deduplicated and delivered in order; a conversation survives reconnects and
/// re-keys; leaving says goodbye (BYE) so that nothing in flight is abandoned; and whatever
/// cannot be confirmed is reported as undeliverable.
///
/// Structure: a coordinator over three state machines whose states carry the data valid in them
/// (as NIOHTTP2's `HTTP2ConnectionStateMachine`): `RoomMembership` (the transport and the room),
/// `HandshakeMachine` (openings, pairings, confirmations, continuity) and `ReliableChannel` (the
/// conversation's messages and the goodbye). They decide; the coordinator routes inputs to them,
/// drives the documented lifecycle (`SessionStateMachine`, whose every change it reports) and
/// turns their decisions into outputs (handshake inputs in SessionManager+Handshake.swift, the
/// goodbye in SessionManager+Goodbye.swift).
public final class SessionManager {
    public let configuration: SessionConfiguration
    /// How this session authenticates its handshakes: `.password` when it was given one.
    public let authentication: SessionAuthentication
    let entropy: any EntropySource
    var lifecycle = SessionStateMachine()
    var room: RoomMembership
    var handshake: HandshakeMachine
    var channel: ReliableChannel
    var outputs = SessionOutputs()
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

    /// The peer instance of the last confirmed handshake (nil before the first).
    public var confirmedPeerInstance: InstanceID? { handshake.confirmedPeer?.instance }

    /// Messages accepted but not yet acknowledged by the peer.
    public var pendingCount: Int { channel.queue.count }

    /// The IDs of messages accepted but not yet acknowledged, oldest first.
    public var pendingMessageIDs: [MessageID] { channel.queue.map(\.id) }

    /// The peer said goodbye and has said all it will: every record it numbered through its latest
    /// `BYE`'s sent through arrived here in order, or its connection ended after the goodbye (it
    /// is gone for good). A leaving client starts and answers no file transfer once its goodbye
    /// began (docs/PROTOCOL.md, "File transfer"), so the driver ends the transfers still waiting.
    public var peerHasSaidAll: Bool { channel.peerHasSaidAll }

    /// The safety number of the keys in use, while CONNECTED (nil otherwise): the same on both
    /// sides unless someone is in the middle. A re-key with the same peer instance continues the
    /// handshake that began the chain (it proves the keys before it), so the number stays; a new
    /// peer instance brings a new one.
    public var safetyNumber: SafetyNumber? { handshake.safetyNumber }

    /// With a password: CPace pairings for which we gave out our confirmation tag and the peer
    /// has not confirmed, over the session's life. Each may have been a relay's password guess;
    /// `configuration.passwordRunsUnconfirmedMax` bounds them (the guess budget). Above zero when
    /// the session ends, the code is spent: it must not be used again.
    public var passwordRunsUnconfirmed: Int { handshake.passwordRunsUnconfirmed }

    /// Counters for tests, the simulator and the UI's status line.
    public var statistics: Statistics { outputs.statistics }

    /// Broken behaviours for the simulator's self-tests (PlantedBugs.swift); always empty otherwise.
    @_spi(Simulation) public var plantedBugs: PlantedBugs {
        get { channel.plantedBugs }
        set {
            channel.plantedBugs = newValue
            handshake.plantedBugs = newValue
        }
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
        switch lifecycle.state {
        case .searching: room.joinRetransmitAt
        case .keySetup: Self.earliest(handshake.retransmitAt, handshake.deadline)
        case .connected:
            // The records, the goodbye, and a re-key under way beside them.
            Self.earliest(
                Self.earliest(channel.retransmitAt, channel.confirmationAt),
                Self.earliest(
                    channel.goodbyeAt, Self.earliest(handshake.retransmitAt, handshake.deadline)))
        default: nil
        }
    }

    /// The earlier of two optional instants (nil only when both are). Pairwise rather than variadic:
    /// the shells and the simulator ask after every input, and the variadic array and its
    /// `compactMap` were 3% of a simulation's instructions (BENCHMARKS.md).
    private static func earliest(_ first: Instant?, _ second: Instant?) -> Instant? {
        guard let first else { return second }
        guard let second else { return first }
        return min(first, second)
    }

    // MARK: Inputs

    /// Feed one input at time `now` (monotonic; never earlier than the previous call).
    public func handle(_ input: SessionInput, now: Instant) {
        advanceClock(to: now)
        switch input {
        case .transportUp: transportUp(now: now)
        case .transportDown: transportDown()
        case let .frame(bytes): receiveFrame(bytes, now: now)
        case let .binaryFrame(bytes): receiveBinaryFrame(bytes, now: now)
        case .leave: leave(now: now)
        case .quit: quit()
        }
    }

    /// The user sends a chat message at time `now`: its ID, under which `.delivered` or
    /// `.undeliverable` reports it later, or why it was refused. An accepted message is sent at
    /// once while CONNECTED (drain the outputs), else when the session next connects; after the
    /// peer said goodbye it is reported undeliverable at once.
    public func send(_ text: String, now: Instant) -> Result<MessageID, SendRefusal> {
        advanceClock(to: now)
        guard lifecycle.state != .destroyed else { return .failure(.sessionEnded) }
        return channel.send(text, now: now, into: &outputs)
    }

    /// A file control message (docs/PROTOCOL.md, "File transfer"), sent like a chat message: a
    /// record of type 2, numbered, sealed, acknowledged and retransmitted in order with the chat.
    public func sendFileControl(_ bytes: [UInt8], now: Instant) -> Result<MessageID, SendRefusal> {
        advanceClock(to: now)
        guard lifecycle.state != .destroyed else { return .failure(.sessionEnded) }
        return channel.sendFileControl(bytes, now: now, into: &outputs)
    }

    /// Whether a file chunk or acknowledgement may go now (CONNECTED): the driver sends one in
    /// binary form itself (`BinarySignal`), with no text frame made and taken apart again.
    public var mayTransmitFileSignal: Bool { lifecycle.state == .connected && room.isConnected }

    /// Transmit a file chunk or acknowledgement now, outside the reliable channel; false (and
    /// nothing sent) unless CONNECTED. The transfers resend what is lost.
    public func transmitFileSignal(_ signal: Signal) -> Bool {
        guard mayTransmitFileSignal else { return false }
        outputs.transmit(WireCodec.encode(ClientMessage.signal(signal)))
        return true
    }

    /// Run whatever timers are due at `now`.
    public func handleTimeout(now: Instant) {
        advanceClock(to: now)
        switch lifecycle.state {
        case .searching:
            if room.joinRetransmissionDue(now: now) { transmit(room.joinFrame(configuration.room)) }
        case .keySetup:
            if handshake.isBlocked(now: now) {
                // Frames flow (the peer's opening came, or the relay says it is here) and yet no
                // confirmation verified within the bound: someone is blocking it. Said, not waited on.
                end(.authenticationFailed(.handshakeTimedOut))
                return
            }
            retransmitHandshake(now: now)
        case .connected:
            channel.retransmitIfDue(now: now, into: &outputs)
            channel.resendConfirmationIfDue(now: now, into: &outputs)
            goodbyeTimeout(now: now)
            if handshake.isBlocked(now: now) {
                handshake.dropAttempt()  // A re-key nobody completed: the keys in use stay.
            } else {
                retransmitHandshake(now: now)
            }
        default:
            break
        }
    }

    private func retransmitHandshake(now: Instant) {
        guard let frames = handshake.retransmitIfDue(now: now) else { return }
        transmit(frames.hello)
        if let confirmation = frames.confirmation { transmit(confirmation) }
        outputs.notice(.handshakeRetransmitted(attempt: frames.attempt))
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
    var awaitsPeer: Bool {
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

    /// A binary SIGNAL: checked (a malformed one is refused, typed, as a text frame that does not
    /// decode), then handled as the same SIGNAL in text.
    private func receiveBinaryFrame(_ bytes: [UInt8], now: Instant) {
        guard lifecycle.state != .destroyed else { return }
        do {
            let message = try BinarySignal.decodeRelayMessage(bytes, limits: configuration.wireLimits)
            guard case let .signal(signal) = message else { return }
            receiveSignal(signal, now: now)
        } catch {
            reject(.wire(error))
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
        // A peer that said goodbye is gone for good: what it never confirmed will not be.
        channel.peerGone(into: &outputs)
    }

    private func receiveError(_ code: RelayErrorCode, _ text: String, now: Instant) {
        outputs.notice(.relayError(code: code, message: text))
        switch code {
        case .roomFull:
            if room.receiveRoomFull() == .fatal { end(.relayRefused(code)) }
        case .seatReserved:
            if room.receiveSeatReserved() == .fatal { end(.relayRefused(code)) }
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
            finishLeavingIfDone(now: now)
        case .ack:
            if !channel.receiveAck(signal, now: now, into: &outputs) {
                reject(.state(.init(state: lifecycle.state, event: .receiveMessage)))
            }
            finishLeavingIfDone(now: now)
        case .goodbye:
            receiveGoodbye(signal, now: now)
        case .fileChunk, .fileAck:
            // Sealed under a file's key, which only the transfers hold: handed on unread, and only
            // on keys in use (the transfers trust the peer the keys prove).
            guard lifecycle.state == .connected else {
                reject(.state(.init(state: lifecycle.state, event: .receiveMessage)))
                return
            }
            outputs.append(.file(.signal(signal)))
        default:
            reject(.wire(.unknownKind(signal.kind.rawValue)))
        }
    }

    // MARK: Ending

    func end(_ reason: SessionEndReason) {
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
    func apply(_ event: SessionEvent) -> Bool {
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

    func reject(_ rejection: FrameRejection) {
        outputs.reject(rejection)
    }

    func transmit(_ message: ClientMessage) {
        transmit(WireCodec.encode(message))
    }

    /// Frames go out only while the transport is up.
    func transmit(_ frame: [UInt8]) {
        guard room.isConnected else { return }
        outputs.transmit(frame)
    }
}
