/// One end of a chat: the sans-IO session that both the terminal client and the simulator run.
///
/// Inputs arrive through `handle(_:now:)` and `handleTimeout(now:)`, each with the caller's
/// `now`; outputs (frames to send, messages to show, state changes, notices) are drained with
/// `pollOutput()`, and `pollTimeout()` says when the next timer is due — the shape of quinn-proto
/// and str0m. The session never reads a clock, never opens a socket, and takes randomness only
/// from the `EntropySource` it is given.
///
/// Protocol (docs/PROTOCOL.md, "Session layer"): on PEER_FOUND both sides make a fresh X25519
/// key pair and send KEY_EXCHANGE; each derives the crypto_box key, sends KEY_CONFIRM (its
/// transcript hash and resume point, sealed under the new key), and enters CONNECTED when the
/// peer's confirmation opens and matches. Messages are numbered per conversation, acknowledged
/// cumulatively, retransmitted with backoff until acknowledged, deduplicated and delivered in
/// order; a conversation survives reconnects and re-keys, and whatever cannot be confirmed is
/// reported as undeliverable.
public final class SessionManager {
    public let configuration: SessionConfiguration
    private let entropy: any EntropySource
    private var machine = SessionStateMachine()
    private var outputs: [SessionOutput] = []
    private var lastNow: Instant = .zero

    // Transport and room.
    private var transportIsUp = false
    private var joined = false
    private var joinRetransmitAt: Instant?
    private var joinRetransmitInterval: Duration
    /// JOINED said the room is full, so the handshake began; the relay's PEER_FOUND is still due.
    private var peerFoundAnnounced = false
    /// The relay accepted us into the room at least once (on any connection): it said JOINED or
    /// PEER_FOUND, or a handshake through it completed.
    private var joinedBefore = false
    /// ROOM_FULL answers to JOINs since we last joined; a rejoin tolerates a few (see `.error`).
    private var roomFullOnRejoin = 0
    /// With the JOIN backoff (1, 2, 4, 8, 8, ... s) ten refusals span about a minute.
    private static let roomFullOnRejoinMax = 10

    // Handshake.
    private let keyManager = KeyManager()
    /// This client's identity for the life of the process (not a key; public).
    public let localInstance: InstanceID
    private var localEpoch: UInt64 = 0
    private var handshake: HandshakeProgress?
    /// Peer instances that were replaced; their late handshakes are ignored. Bounded.
    private var retiredPeerInstances: [InstanceID] = []
    private static let retiredPeerInstancesMax = 8

    // Conversation (survives re-keys while the peer instance stays the same).
    private var peerInstance: InstanceID?
    /// The handshake epoch of the last confirmed handshake with `peerInstance`.
    private var peerEpoch: UInt64 = 0
    private var nextMessageID: UInt64 = 1
    private var sendQueue: [OutgoingMessage] = []
    private var nextSendSequence: UInt64 = 1
    private var retransmitAt: Instant?
    private var retransmitInterval: Duration
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

    public init(configuration: SessionConfiguration, entropy: any EntropySource) {
        self.configuration = configuration
        self.entropy = entropy
        self.localInstance = InstanceID.random(entropy: entropy)
        self.joinRetransmitInterval = configuration.joinRetransmitInitial
        self.retransmitInterval = configuration.messageRetransmitInitial
    }

    deinit {
        handshake?.encryption?.wipe()
        keyManager.wipeKeys()
        for message in sendQueue { message.text.wipe() }
    }

    // MARK: Public view

    /// The lifecycle state.
    public var state: SessionState { machine.state }

    /// Messages accepted but not yet acknowledged by the peer.
    public var pendingCount: Int { sendQueue.count }

    /// The IDs of messages accepted but not yet acknowledged, oldest first.
    public var pendingMessageIDs: [MessageID] { sendQueue.map(\.id) }

    /// The peer's key fingerprint while a handshake with it is under way or complete.
    public var peerFingerprint: String? { handshake?.peer?.key.fingerprint }

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
        case .searching: consider(joinRetransmitAt)
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
        case let .send(text): send(text, now: now)
        case .quit: end(.userQuit)
        }
    }

    /// Run whatever timers are due at `now`.
    public func handleTimeout(now: Instant) {
        advanceClock(to: now)
        switch machine.state {
        case .searching:
            if let due = joinRetransmitAt, due <= now, transportIsUp, !joined {
                transmit(.join(configuration.room))
                joinRetransmitInterval = min(joinRetransmitInterval * 2, configuration.retransmitMax)
                joinRetransmitAt = now.advanced(by: joinRetransmitInterval)
            }
        case .keySetup:
            guard var progress = handshake, progress.retransmitAt <= now else { break }
            progress.attempts += 1
            transmitFrame(progress.keyExchangeFrame)
            if let confirm = progress.confirmFrame { transmitFrame(confirm) }
            progress.retransmitInterval = min(progress.retransmitInterval * 2, configuration.retransmitMax)
            progress.retransmitAt = now.advanced(by: progress.retransmitInterval)
            handshake = progress
            outputs.append(.notice(.handshakeRetransmitted(attempt: progress.attempts)))
        case .connected:
            guard let due = retransmitAt, due <= now else { break }
            // Go-back-N: resend every message in flight, oldest first, then back off.
            var resent = 0
            for message in sendQueue where message.sequence != nil {
                guard let frame = message.frame else { continue }
                transmitFrame(frame)
                resent += 1
            }
            statistics.retransmissions += resent
            retransmitInterval = min(retransmitInterval * 2, configuration.retransmitMax)
            retransmitAt = resent > 0 ? now.advanced(by: retransmitInterval) : nil
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
        transportIsUp = true
        joined = false
        peerFoundAnnounced = false
        transmit(.join(configuration.room))
        joinRetransmitInterval = configuration.joinRetransmitInitial
        joinRetransmitAt = now.advanced(by: joinRetransmitInterval)
    }

    private func transportDown() {
        guard apply(.transportDown) else { return }
        transportIsUp = false
        joined = false
        joinRetransmitAt = nil
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
        case let .joined(room, peers):
            guard transportIsUp else { return }
            joined = true
            joinedBefore = true
            roomFullOnRejoin = 0
            joinRetransmitAt = nil
            outputs.append(.notice(.joined(room: room, peersPresent: peers)))
            // A full room means the peer is here, whether or not its PEER_FOUND arrives: if both
            // PEER_FOUNDs were lost, waiting for them would wait forever (the JOIN is no longer
            // retransmitted once JOINED arrives). A PEER_FOUND that still comes is a duplicate.
            if peers == RelayRooms<Int>.peersPerRoomMax, machine.state == .searching || machine.state == .disconnected {
                outputs.append(.notice(.peerFound))
                peerFoundAnnounced = true
                peerArrived(now: now)
            }
        case .peerFound:
            joined = true
            joinedBefore = true
            joinRetransmitAt = nil
            if peerFoundAnnounced {
                peerFoundAnnounced = false  // The PEER_FOUND that JOINED already stood for.
                return
            }
            switch machine.state {
            case let state where state == .searching || (state == .disconnected && transportIsUp):
                outputs.append(.notice(.peerFound))
                peerArrived(now: now)
            default:
                // A duplicate (the relay repeats it after a repeated JOIN): the handshake
                // under way, or the session, already covers that peer.
                reject(.state(.init(state: machine.state, event: .peerFound)))
            }
        case .peerLeft:
            let wasWithPeer = [.userFound, .keySetup, .connected].contains(machine.state)
            guard apply(.peerLeft) else { return }
            if wasWithPeer {
                dropHandshake()
                outputs.append(.notice(.peerLeft))
            }
        case let .error(code, text):
            outputs.append(.notice(.relayError(code: code, message: text)))
            switch code {
            case .roomFull where joinedBefore && !joined && roomFullOnRejoin < Self.roomFullOnRejoinMax:
                // We were in this room before: after a reconnect the relay may not yet have seen our
                // previous connection close and still counts it. Ask again (the JOIN retransmission
                // is running) before giving up; ending here stranded both peers (found by the simulator).
                roomFullOnRejoin += 1
            case .roomFull, .invalidRoom, .alreadyJoined:
                end(.relayRefused(code))
            default:
                break  // Advisory (rate limits, a SIGNAL with no peer): retransmission recovers.
            }
        case let .signal(signal):
            receiveSignal(signal, now: now)
        }
    }

    private func receiveSignal(_ signal: Signal, now: Instant) {
        switch signal.kind {
        case .keyExchange: receiveKeyExchange(signal, now: now)
        case .keyConfirm: receiveKeyConfirm(signal, now: now)
        case .message: receiveRecord(signal, now: now)
        case .ack: receiveAck(signal, now: now)
        default: reject(.wire(.unknownKind(signal.kind.rawValue)))
        }
    }

    // MARK: Handshake

    /// A peer is in the room: make a fresh key pair and announce it.
    private func peerArrived(now: Instant) {
        guard apply(.peerFound) else { return }
        startHandshake(now: now)
    }

    private func startHandshake(now: Instant) {
        precondition(machine.state == .userFound)
        dropHandshake()
        localEpoch += 1
        let key = keyManager.generateKeyPair(entropy: entropy)
        let hello = KeyExchangeHello(key: key, instance: localInstance, epoch: localEpoch)
        let frame = WireCodec.encode(ClientMessage.signal(hello.signal))
        handshake = HandshakeProgress(
            local: hello, keyExchangeFrame: frame,
            retransmitAt: now.advanced(by: configuration.handshakeRetransmitInitial),
            retransmitInterval: configuration.handshakeRetransmitInitial)
        guard apply(.keysGenerated) else { return }
        transmitFrame(frame)
    }

    private func receiveKeyExchange(_ signal: Signal, now: Instant) {
        let hello: KeyExchangeHello
        do {
            hello = try KeyExchangeHello(signal: signal)
        } catch {
            reject(.handshake(error))
            return
        }
        guard hello.instance != localInstance else {
            // Our own hello sent back (by a relay): taking it for a new peer would retire the
            // real one, and every later KEY_EXCHANGE of the real peer would be refused.
            reject(.crypto(.reflectedPublicKey))
            return
        }
        guard !retiredPeerInstances.contains(hello.instance) else {
            reject(.handshake(.retiredInstance))
            return
        }
        guard hello.instance != peerInstance || hello.epoch >= peerEpoch else {
            // Older than the handshake we last completed with this peer: a delayed copy.
            reject(.handshake(.staleKeyExchange))
            return
        }
        switch machine.state {
        case let state where state == .searching || (state == .disconnected && transportIsUp):
            // The peer's key arrived before (or without) PEER_FOUND: a peer is evidently here.
            outputs.append(.notice(.peerFound))
            peerArrived(now: now)
            acceptPeerHello(hello, now: now)
        case .keySetup, .connected:
            guard let current = handshake?.peer else {
                precondition(machine.state == .keySetup, "CONNECTED always has a peer")
                acceptPeerHello(hello, now: now)
                return
            }
            if current.key == hello.key && current.instance == hello.instance && current.epoch == hello.epoch {
                // A repeat: the peer has not seen our confirmation yet. Answer with it (and only
                // it: answering a KEY_EXCHANGE with a KEY_EXCHANGE could ping-pong forever).
                statistics.duplicatesDropped += 1
                if let confirm = handshake?.confirmFrame { transmitFrame(confirm) }
                return
            }
            if current.instance == hello.instance && hello.epoch <= current.epoch {
                reject(.handshake(.staleKeyExchange))
                return
            }
            // The peer began again (a reconnect, or a new process).
            if current.instance != hello.instance { retire(current.instance) }
            outputs.append(.notice(.peerRestarted))
            if machine.state == .keySetup, var progress = handshake, keyManager.hasKeyPair,
               !progress.peerKeysUsed.contains(hello.key),
               progress.peerKeysUsed.count < HandshakeProgress.peerKeysUsedMax {
                // Our handshake is unconfirmed: answer with the key pair we already announced
                // (and announce it again), not a fresh one. A fresh KEY_EXCHANGE would look like
                // a restart to the peer, which would answer with a fresh one too, forever (found
                // by the FuzzSession harness: a connection blip during the handshake).
                progress.encryption?.wipe()
                progress.peer = nil
                progress.encryption = nil
                progress.transcript = nil
                progress.confirmFrame = nil
                progress.earlyConfirmation = nil
                handshake = progress
                transmitFrame(progress.keyExchangeFrame)
                acceptPeerHello(hello, now: now)
                return
            }
            // Connected (our secret key is gone), or a peer key we already answered with this key
            // pair (deriving the same session key again would reuse its confirmation nonce):
            // re-key with fresh keys.
            guard apply(.peerRestarted) else { return }
            dropHandshake()
            if machine.state == .disconnected {
                guard apply(.peerFound) else { return }
            }
            startHandshake(now: now)
            acceptPeerHello(hello, now: now)
        default:
            reject(.state(.init(state: machine.state, event: .peerFound)))
        }
    }

    /// Derive the session key from the peer's hello and send our confirmation.
    private func acceptPeerHello(_ peer: KeyExchangeHello, now: Instant) {
        guard machine.state == .keySetup, var progress = handshake else { return }
        precondition(progress.peer == nil)
        let boxKey: SecureBytes
        do {
            boxKey = try keyManager.precomputedBoxKey(with: peer.key)
        } catch {
            reject(.crypto(error))
            return
        }
        // The secret half stays until the handshake is confirmed (then it is wiped, for forward
        // secrecy): a peer that restarts its handshake meanwhile is answered with the same key pair.
        progress.peerKeysUsed.append(peer.key)
        let localSide: EncryptionHandler.Side = progress.local.key < peer.key ? .low : .high
        let (low, high) = localSide == .low ? (progress.local, peer) : (peer, progress.local)
        let transcript = Transcript.hash(room: configuration.room, low: low, high: high)
        let encryption = EncryptionHandler(boxKey: boxKey, localSide: localSide)
        encryption.skipsCounterCheck = plantedBugs.contains(.skipCounterCheck)

        // Tell the peer which conversation of ours we remember and where it stands.
        let announcedPeer = peerInstance ?? .none
        let announcedNext = peerInstance == nil ? 1 : nextReceiveSequence
        var body = transcript
        body.append(contentsOf: announcedPeer.bytes)
        BigEndian.append(announcedNext, to: &body)
        let sealed: [UInt8]
        do {
            sealed = try body.withBytes { buffer throws(CryptoError) in try encryption.sealConfirmation(buffer) }
        } catch {
            preconditionFailure("sealing a confirmation under a fresh key cannot fail: \(error)")
        }
        let confirmFrame = WireCodec.encode(ClientMessage.signal(Signal(kind: .keyConfirm, payload: sealed)))
        progress.peer = peer
        progress.encryption = encryption
        progress.transcript = transcript
        progress.announcedPeer = announcedPeer
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
        guard let payload = signal.payload else {
            reject(.handshake(.confirmationFailed))
            return
        }
        guard let encryption = progress.encryption, let peer = progress.peer, let transcript = progress.transcript
        else {
            // The confirmation overtook the peer's KEY_EXCHANGE: keep the newest one until it comes.
            handshake?.earlyConfirmation = payload
            return
        }
        let body: SecureBytes
        do {
            body = try payload.withBytes { buffer throws(CryptoError) in
                try encryption.openConfirmation(buffer)
            }
        } catch {
            reject(.handshake(.confirmationFailed))
            return
        }
        let expectedCount = transcript.count + InstanceID.byteCount + 8
        let parsed: (matches: Bool, peerKnows: InstanceID, peerNext: UInt64)? = body.withUnsafeBytes { bytes in
            guard bytes.count == expectedCount else { return nil }
            let matches = transcript.withUnsafeBytes { expected in
                Sodium.constantTimeEqual(UnsafeRawBufferPointer(rebasing: bytes[0..<transcript.count]), expected)
            }
            let knowsRange = transcript.count..<(transcript.count + InstanceID.byteCount)
            guard let knows = InstanceID(bytes[knowsRange]) else { return nil }
            return (matches, knows, BigEndian.uint64(bytes, at: knowsRange.upperBound))
        }
        body.wipe()
        guard let parsed, parsed.matches else {
            reject(.handshake(.confirmationFailed))
            return
        }

        // The peer holds our keys. Decide how the conversation continues.
        if let previous = peerInstance, previous != peer.instance {
            // A different peer process: what was meant for the old one is not sent to this one.
            retire(previous)
            reportUndeliverable(where: { $0.boundPeer == previous }, reason: .peerChanged)
            nextReceiveSequence = 1
            reorderBuffer.removeAll()
        }
        // Our sending side follows what the peer announced: if it remembers our conversation,
        // it expects our numbering to continue at `peerNext`; if not, from 1.
        let resumed = parsed.peerKnows == localInstance && peerInstance == peer.instance
        if resumed {
            guard parsed.peerNext >= 1, parsed.peerNext <= nextSendSequence else {
                reject(.handshake(.inconsistentResume))
                return
            }
            acknowledge(through: parsed.peerNext - 1)
        } else {
            renumberPendingMessages(from: parsed.peerKnows == localInstance ? max(parsed.peerNext, 1) : 1)
        }
        if progress.announcedPeer != peer.instance {
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
        encryption.resume(nextSendSequence: firstUnacknowledged, nextReceiveSequence: nextReceiveSequence)
        reorderBuffer.removeAll()  // Boxes from before the re-key are under the old key.
        joinedBefore = true  // Even if JOINED and PEER_FOUND were lost: the relay put us with the peer.
        guard apply(.keyConfirmed) else { return }
        // Forward secrecy: the secret half is not needed once the session key is confirmed.
        keyManager.wipeKeys()
        statistics.handshakesCompleted += 1
        outputs.append(.notice(.secured(resumed: resumed, peerFingerprint: peer.key.fingerprint)))
        retransmitInterval = configuration.messageRetransmitInitial
        retransmitAt = nil
        pump(now: now)
    }

    /// Forget the handshake and wipe its keys (the conversation state stays).
    private func dropHandshake() {
        handshake?.encryption?.wipe()
        handshake = nil
        keyManager.wipeKeys()
        retransmitAt = nil
        reorderBuffer.removeAll()
        // Boxes sealed under the old key are useless now; messages are re-sealed after re-keying.
        for index in sendQueue.indices { sendQueue[index].frame = nil }
    }

    private func retire(_ instance: InstanceID) {
        guard !retiredPeerInstances.contains(instance) else { return }
        if retiredPeerInstances.count == Self.retiredPeerInstancesMax { retiredPeerInstances.removeFirst() }
        retiredPeerInstances.append(instance)
    }

    // MARK: Sending

    private func send(_ text: String, now: Instant) {
        guard machine.state != .destroyed else {
            outputs.append(.refused(.sessionEnded))
            return
        }
        let utf8Count = text.utf8.count
        guard utf8Count > 0 else {
            outputs.append(.refused(.empty))
            return
        }
        guard utf8Count <= configuration.messageTextMaxBytes else {
            outputs.append(.refused(.tooLong(maxBytes: configuration.messageTextMaxBytes)))
            return
        }
        guard sendQueue.count < configuration.sendQueueMax else {
            outputs.append(.refused(.queueFull(max: configuration.sendQueueMax)))
            return
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
        outputs.append(.queued(id))
        if machine.state == .connected {
            _ = apply(.sendMessage)
            pump(now: now)
        }
    }

    /// Seal and send queued messages while the window has room.
    private func pump(now: Instant) {
        guard machine.state == .connected, let encryption = handshake?.encryption else { return }
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
            let record = ChatRecord.seal(text: sendQueue[index].text)
            let box: [UInt8]
            do {
                box = try record.withUnsafeBytes { buffer throws(CryptoError) in
                    try encryption.sealRecord(sequence: sequence, buffer)
                }
            } catch {
                preconditionFailure("sealing record #\(sequence) failed: \(error)")
            }
            record.wipe()
            var payload: [UInt8] = []
            payload.reserveCapacity(8 + box.count)
            BigEndian.append(sequence, to: &payload)
            payload.append(contentsOf: box)
            let frame = WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: payload)))
            sendQueue[index].frame = frame
            transmitFrame(frame)
            if retransmitAt == nil { retransmitAt = now.advanced(by: retransmitInterval) }
        }
    }

    /// The peer has everything through `sequence`: report those messages delivered.
    private func acknowledge(through sequence: UInt64) {
        var delivered: [MessageID] = []
        while let first = sendQueue.first, let assigned = first.sequence, assigned <= sequence,
              first.boundPeer == peerInstance || peerInstance == nil {
            delivered.append(first.id)
            first.text.wipe()
            sendQueue.removeFirst()
        }
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
        guard machine.state == .connected, let encryption = handshake?.encryption else {
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
        guard openAndDeliver(sequence: sequence, box: box, encryption: encryption) else { return }
        // Deliver whatever the gap was holding back, in order.
        while let first = reorderBuffer.first, first.sequence <= nextReceiveSequence {
            reorderBuffer.removeFirst()
            if first.sequence == nextReceiveSequence {
                _ = openAndDeliver(sequence: first.sequence, box: first.box, encryption: encryption)
            }
        }
        sendAck()
    }

    /// Open record `sequence` (the next expected) and hand its text to the UI.
    private func openAndDeliver(sequence: UInt64, box: [UInt8], encryption: EncryptionHandler) -> Bool {
        let record: SecureBytes
        do {
            record = try box.withBytes { buffer throws(CryptoError) in
                try encryption.openRecord(sequence: sequence, buffer)
            }
        } catch {
            reject(.crypto(error))
            return false
        }
        // The box authenticated, so the sequence number is consumed whatever the content.
        nextReceiveSequence = sequence + 1
        defer { record.wipe() }
        let text: String
        do {
            text = try ChatRecord.text(of: record)
        } catch {
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
        guard let encryption = handshake?.encryption, machine.state == .connected else { return }
        var body: [UInt8] = []
        BigEndian.append(nextReceiveSequence - 1, to: &body)
        let sealed: (counter: UInt64, box: [UInt8])
        do {
            sealed = try body.withBytes { buffer throws(CryptoError) in try encryption.sealAck(buffer) }
        } catch {
            preconditionFailure("sealing an ack cannot fail: \(error)")
        }
        var payload: [UInt8] = []
        BigEndian.append(sealed.counter, to: &payload)
        payload.append(contentsOf: sealed.box)
        transmit(.signal(Signal(kind: .ack, payload: payload)))
    }

    private func receiveAck(_ signal: Signal, now: Instant) {
        guard machine.state == .connected, let encryption = handshake?.encryption else {
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
                try encryption.openAck(counter: counter, buffer)
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
        acknowledge(through: through)
        if sendQueue.count < before {
            // Progress: reset the backoff, restart the timer for what is still in flight.
            retransmitInterval = configuration.messageRetransmitInitial
            let stillInFlight = sendQueue.contains { $0.frame != nil }
            retransmitAt = stillInFlight ? now.advanced(by: retransmitInterval) : nil
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
        transportIsUp = false
        joinRetransmitAt = nil
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
        guard transportIsUp else { return }
        outputs.append(.transmit(frame))
    }
}

/// A handshake under way (or completed, while CONNECTED).
private struct HandshakeProgress {
    var local: KeyExchangeHello
    var keyExchangeFrame: [UInt8]
    var retransmitAt: Instant
    var retransmitInterval: Duration
    var attempts = 1
    var peer: KeyExchangeHello?
    var encryption: EncryptionHandler?
    var transcript: [UInt8]?
    var announcedPeer: InstanceID = .none
    var confirmFrame: [UInt8]?
    /// A confirmation that arrived before the peer's KEY_EXCHANGE (networks reorder).
    var earlyConfirmation: [UInt8]?
    /// Peer keys already combined with this local key pair; never combine one twice (the same
    /// session key would seal a different confirmation under the same nonce). Bounded.
    var peerKeysUsed: [PublicKey] = []
    static let peerKeysUsedMax = 8

    init(local: KeyExchangeHello, keyExchangeFrame: [UInt8], retransmitAt: Instant, retransmitInterval: Duration) {
        self.local = local
        self.keyExchangeFrame = keyExchangeFrame
        self.retransmitAt = retransmitAt
        self.retransmitInterval = retransmitInterval
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
}
