/// The conversation's reliable, ordered message channel: the send queue, sequence numbers, the
/// in-flight window, go-back-N retransmission timed by a `RetransmitEstimator`, cumulative
/// acknowledgements, the reorder buffer, and the renumbering when the handshake says the peer's
/// view of the conversation changed.
///
/// The queue and the numbering belong to the conversation and survive re-keys and reconnects;
/// what needs the confirmed keys (sealing, the retransmission timer, records held for a gap) exists
/// only in `State.open`. Messages are numbered per conversation, acknowledged cumulatively,
/// retransmitted with backoff until acknowledged, deduplicated and delivered in order.
struct ReliableChannel {
    enum State {
        /// No confirmed keys (before the first handshake, during a re-key, between connections,
        /// after the end): messages wait in the queue.
        case closed
        /// Keys confirmed (the session is CONNECTED): messages are sealed and sent.
        case open(Open)
    }

    struct Open {
        /// The session's cipher, owned by the channel from the confirmation on.
        let ratchet: MessageRatchet
        /// When the messages in flight are next sent again; nil when none is in flight.
        var retransmitAt: Instant?
        /// Records that arrived ahead of `nextReceiveSequence`, sorted by sequence. Bounded.
        var reorderBuffer: [(sequence: UInt64, box: [UInt8])] = []
        /// Our KEY_CONFIRM, sent again with backoff until a frame the peer sealed under these keys
        /// opens. Until then the peer may lack it (its copy was lost) and wait in KEY_SETUP while
        /// we send records it cannot open yet; its own hello retransmissions would get it an
        /// answer too, but only at their backoff, and only if both directions pass.
        var confirmation: (frame: [UInt8], at: Instant, interval: Duration)?
        /// ACKs in a row that confirmed nothing new while records were in flight (fast retransmit).
        var duplicateAcks = 0
    }

    /// Duplicate ACKs that resend the oldest record in flight at once: TCP's fast retransmit
    /// (RFC 5681 §3.2) with 2 rather than 3, for windows of a dozen records.
    static let fastRetransmitThreshold = 2

    private(set) var state: State = .closed
    /// Messages accepted and not yet acknowledged, oldest first. Every one belongs to the current
    /// conversation (before the first, to whoever the first handshake confirms): a peer change
    /// reports them all undeliverable.
    private(set) var queue: [OutgoingMessage] = []
    private var nextMessageID: UInt64 = 1
    private(set) var nextSendSequence: UInt64 = 1
    private(set) var nextReceiveSequence: UInt64 = 1
    /// The highest of our numbers the peer acknowledged (it holds every record through it).
    private(set) var acknowledgedThrough: UInt64 = 0
    /// Where the next keys' chains stand (send, receive), as the confirmed handshake's hellos
    /// said (`continueConversation`); taken by `open`.
    private var anchors: (send: UInt64, receive: UInt64)?
    /// The message retransmission timeout: measured round trips, doubled on each expiry.
    private var estimator: RetransmitEstimator
    let configuration: SessionConfiguration
    /// Guarded scratch where each outgoing record is padded before sealing; wiped after each use.
    private let recordScratch: SecureBytes
    /// Broken behaviours for the simulator's self-tests; always empty otherwise.
    var plantedBugs: PlantedBugs = []
    /// The goodbye: whether we leave, and what the peer said of its own (ReliableChannel+Goodbye.swift).
    var farewell = Farewell()

    init(configuration: SessionConfiguration) {
        self.configuration = configuration
        self.estimator = RetransmitEstimator(
            minimum: configuration.messageRetransmitInitial, maximum: configuration.retransmitMax)
        self.recordScratch = SecureBytes(count: ChatRecord.paddedCount(textCount: configuration.messageTextMaxBytes))
    }

    var isOpen: Bool {
        if case .open = state { true } else { false }
    }

    /// When the messages in flight are next retransmitted, while the channel is open.
    var retransmitAt: Instant? {
        if case let .open(open) = state { open.retransmitAt } else { nil }
    }

    /// When our confirmation is next sent again, until the peer shows that it has the keys.
    var confirmationAt: Instant? {
        if case let .open(open) = state { open.confirmation?.at } else { nil }
    }

    /// The open channel's ratchet (tests only).
    var ratchet: MessageRatchet? {
        if case let .open(open) = state { open.ratchet } else { nil }
    }

    // MARK: Sending

    /// Accept a message (sent at once when open, else when the channel opens) or refuse it.
    mutating func send(
        _ text: String, now: Instant, into outputs: inout SessionOutputs
    ) -> Result<MessageID, SendRefusal> {
        let utf8Count = text.utf8.count
        guard utf8Count > 0 else { return .failure(.empty) }
        guard utf8Count <= configuration.messageTextMaxBytes else {
            return .failure(.tooLong(maxBytes: configuration.messageTextMaxBytes))
        }
        guard queue.count < configuration.sendQueueMax else {
            return .failure(.queueFull(max: configuration.sendQueueMax))
        }
        // The text moves into guarded memory; the caller's String is the UI's copy.
        let secureText = SecureBytes(count: utf8Count) { buffer in
            // One copy of the contiguous UTF-8 (native strings always have it); the generic
            // element-by-element copy cost about 1,800 instructions per message.
            let copied: Void? = text.utf8.withContiguousStorageIfAvailable { utf8 in
                buffer.copyMemory(from: UnsafeRawBufferPointer(utf8))
            }
            if copied == nil { _ = buffer.initializeMemory(as: UInt8.self, from: text.utf8) }
        }
        return enqueue(secureText, type: ChatRecord.typeText, now: now, into: &outputs)
    }

    /// Accept a file control message (a record of type 2), as `send` does a text.
    mutating func sendFileControl(
        _ bytes: [UInt8], now: Instant, into outputs: inout SessionOutputs
    ) -> Result<MessageID, SendRefusal> {
        guard !bytes.isEmpty else { return .failure(.empty) }
        guard bytes.count <= configuration.messageTextMaxBytes else {
            return .failure(.tooLong(maxBytes: configuration.messageTextMaxBytes))
        }
        guard queue.count < configuration.sendQueueMax else {
            return .failure(.queueFull(max: configuration.sendQueueMax))
        }
        let secure = bytes.withUnsafeBytes { SecureBytes(copying: $0) }
        return enqueue(secure, type: ChatRecord.typeFile, now: now, into: &outputs)
    }

    private mutating func enqueue(
        _ secureText: SecureBytes, type: UInt8, now: Instant, into outputs: inout SessionOutputs
    ) -> Result<MessageID, SendRefusal> {
        let id = MessageID(nextMessageID)
        nextMessageID += 1
        guard !farewell.peerLeaving else {
            // The peer said goodbye: nothing numbered from now on will reach it. Said at once,
            // not after retransmitting into the void.
            secureText.wipe()
            outputs.append(.undeliverable([id], .peerLeft))
            return .success(id)
        }
        queue.append(OutgoingMessage(id: id, text: secureText, recordType: type))
        pump(now: now, into: &outputs)
        return .success(id)
    }

    /// Seal and send queued messages while the window has room.
    mutating func pump(now: Instant, into outputs: inout SessionOutputs) {
        guard case var .open(open) = state else { return }
        var inFlight = 0
        for index in queue.indices {
            guard inFlight < configuration.inFlightMax else { break }
            inFlight += 1
            if queue[index].frame != nil { continue }
            let sequence: UInt64
            if let assigned = queue[index].sequence {
                sequence = assigned
            } else {
                // The peer is leaving: its goodbye waits only for what was numbered before.
                if farewell.peerLeaving { break }
                sequence = nextSendSequence
                nextSendSequence += 1
                queue[index].sequence = sequence
            }
            let frame = sealedFrame(
                text: queue[index].text, type: queue[index].recordType, sequence: sequence, ratchet: open.ratchet)
            queue[index].frame = frame
            outputs.transmit(frame)
            // A frame re-sealed after a re-key repeats a message already sent (its count goes past
            // one): Karn's rule leaves it unsampled, like any retransmission.
            queue[index].transmissions += 1
            queue[index].sentAt = now
            if open.retransmitAt == nil { open.retransmitAt = now.advanced(by: estimator.timeout) }
        }
        state = .open(open)
    }

    /// The MESSAGE frame of record `sequence`.
    private func sealedFrame(text: SecureBytes, type: UInt8, sequence: UInt64, ratchet: MessageRatchet) -> [UInt8] {
        // The padded record is built in the guarded scratch (one allocation for the session's life:
        // sodium_malloc per message cost more than the encryption) and wiped as soon as it is sealed.
        let box: [UInt8]
        do {
            box = try recordScratch.withUnsafeMutableBytes { scratch throws(CryptoError) in
                let count = ChatRecord.write(text: text, type: type, into: scratch)
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
        return WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: payload)))
    }

    /// The retransmission timer: when due, go-back-N resends every message in flight, oldest
    /// first, and backs off.
    mutating func retransmitIfDue(now: Instant, into outputs: inout SessionOutputs) {
        guard case var .open(open) = state, let due = open.retransmitAt, due <= now else { return }
        var resent = 0
        for index in queue.indices where queue[index].sequence != nil {
            guard let frame = queue[index].frame else { continue }
            outputs.transmit(frame)
            queue[index].transmissions += 1
            resent += 1
        }
        outputs.statistics.retransmissions += resent
        open.duplicateAcks = 0
        estimator.backOff()
        open.retransmitAt = resent > 0 ? now.advanced(by: estimator.timeout) : nil
        state = .open(open)
    }

    /// Our confirmation, again, when due (see `Open.confirmation`).
    mutating func resendConfirmationIfDue(now: Instant, into outputs: inout SessionOutputs) {
        guard case var .open(open) = state, let confirmation = open.confirmation, confirmation.at <= now else { return }
        outputs.transmit(confirmation.frame)
        let interval = min(confirmation.interval * 2, configuration.retransmitMax)
        open.confirmation = (confirmation.frame, now.advanced(by: interval), interval)
        state = .open(open)
    }

    /// The peer sent its confirmation again: it has not heard from us under these keys. An ACK
    /// shows it that we have them (and stops its repeats).
    func reacknowledge(into outputs: inout SessionOutputs) {
        guard case let .open(open) = state else { return }
        sendAck(open.ratchet, into: &outputs)
    }

    /// A frame the peer sealed under the current keys opened: it has our confirmation.
    mutating func peerHasKeys() {
        guard case var .open(open) = state, open.confirmation != nil else { return }
        open.confirmation = nil
        state = .open(open)
    }

    /// The relay said RATE_LIMITED: it holds what we sent and forwards it as its bucket refills,
    /// so nothing was lost and resending now would only queue duplicates ahead of the
    /// acknowledgements. Back off as if a timeout had expired (a congestion signal, as ECN is to TCP).
    mutating func relayRateLimited(now: Instant) {
        estimator.backOff()
        guard case var .open(open) = state, open.retransmitAt != nil else { return }
        open.retransmitAt = now.advanced(by: estimator.timeout)
        state = .open(open)
    }

    // MARK: Acknowledgements

    /// The peer has everything through `sequence`: report those messages delivered and, when
    /// `roundTripEnd` is given (an acknowledgement arrived then), time the newest of them that
    /// was sent only once (Karn's rule) as a round-trip sample.
    mutating func acknowledge(
        through sequence: UInt64, roundTripEnd: Instant?, into outputs: inout SessionOutputs
    ) {
        var delivered: [MessageID] = []
        var roundTrip: Duration?
        while let first = queue.first, let assigned = first.sequence, assigned <= sequence {
            if first.transmissions == 1, let sentAt = first.sentAt, let roundTripEnd {
                roundTrip = roundTripEnd.duration(since: sentAt)
            }
            delivered.append(first.id)
            first.text.wipe()
            queue.removeFirst()
        }
        acknowledgedThrough = max(acknowledgedThrough, sequence)
        if let roundTrip { estimator.sample(roundTrip) }
        if !delivered.isEmpty { outputs.append(.delivered(delivered)) }
    }

    /// An ACK from the peer. False when the channel is closed (nothing was read).
    mutating func receiveAck(_ signal: Signal, now: Instant, into outputs: inout SessionOutputs) -> Bool {
        guard case let .open(open) = state else { return false }
        guard let payload = signal.payload, payload.count >= 8 else {
            outputs.reject(.crypto(.truncated(length: signal.payload?.count ?? 0)))
            return true
        }
        let counter = BigEndian.uint64(payload, at: 0)
        let body: SecureBytes
        do {
            body = try Array(payload[8...]).withBytes { buffer throws(CryptoError) in
                try open.ratchet.openAck(counter: counter, buffer)
            }
        } catch {
            outputs.reject(.crypto(error))
            return true
        }
        peerHasKeys()
        guard body.count == 8 else {
            outputs.reject(.crypto(.truncated(length: body.count)))
            return true
        }
        let through = body.withUnsafeBytes { BigEndian.uint64($0, at: 0) }
        guard through < nextSendSequence else {
            outputs.reject(.handshake(.inconsistentResume))
            return true
        }
        let before = queue.count
        acknowledge(through: through, roundTripEnd: now, into: &outputs)
        if queue.count < before {
            progressed(now: now, into: &outputs)
        } else {
            duplicateAck(into: &outputs)
        }
        return true
    }

    /// An ACK that confirmed nothing new: the peer acknowledges every record that arrives, so
    /// records past a gap did. At the threshold the oldest record in flight (the gap, most
    /// likely) goes again at once, rather than after a timeout that may have backed off to
    /// seconds; once per timeout round.
    private mutating func duplicateAck(into outputs: inout SessionOutputs) {
        guard case var .open(open) = state, let oldest = queue.firstIndex(where: { $0.frame != nil }) else { return }
        open.duplicateAcks += 1
        if open.duplicateAcks == Self.fastRetransmitThreshold, let frame = queue[oldest].frame {
            outputs.transmit(frame)
            queue[oldest].transmissions += 1
            outputs.statistics.retransmissions += 1
        }
        state = .open(open)
    }

    /// Progress on our messages: restart the timer for what is still in flight, at the measured
    /// timeout, and send what the window now has room for.
    mutating func progressed(now: Instant, into outputs: inout SessionOutputs) {
        guard case var .open(open) = state else { return }
        open.duplicateAcks = 0
        let stillInFlight = queue.contains { $0.frame != nil }
        open.retransmitAt = stillInFlight ? now.advanced(by: estimator.timeout) : nil
        state = .open(open)
        pump(now: now, into: &outputs)
    }

    // MARK: Receiving records

    /// A MESSAGE record from the peer. False when the channel is closed (nothing was read).
    mutating func receiveRecord(_ signal: Signal, into outputs: inout SessionOutputs) -> Bool {
        guard case var .open(open) = state else { return false }
        // The open state moves out while its reorder buffer changes, so the buffer is not copied.
        state = .closed
        defer { state = .open(open) }
        guard let payload = signal.payload, payload.count >= 8 else {
            outputs.reject(.crypto(.truncated(length: signal.payload?.count ?? 0)))
            return true
        }
        let sequence = BigEndian.uint64(payload, at: 0)
        let box = Array(payload[8...])
        if sequence < nextReceiveSequence && !plantedBugs.contains(.skipCounterCheck) {
            // Already delivered (a retransmission whose ack was lost, or a replay): never shown
            // twice. Re-acknowledge so the sender stops.
            outputs.statistics.duplicatesDropped += 1
            outputs.reject(.crypto(.replayed(sequence: sequence, expected: nextReceiveSequence)))
            sendAck(open.ratchet, into: &outputs)
            return true
        }
        if sequence > nextReceiveSequence {
            hold(sequence: sequence, box: box, in: &open.reorderBuffer)
            outputs.reject(.crypto(.outOfOrder(sequence: sequence, expected: nextReceiveSequence)))
            sendAck(open.ratchet, into: &outputs)
            return true
        }
        guard openAndDeliver(sequence: sequence, box: box, ratchet: open.ratchet, into: &outputs) else { return true }
        open.confirmation = nil  // It authenticated: the peer has the keys.
        // Deliver whatever the gap was holding back, in order.
        while let first = open.reorderBuffer.first, first.sequence <= nextReceiveSequence {
            open.reorderBuffer.removeFirst()
            if first.sequence == nextReceiveSequence {
                _ = openAndDeliver(sequence: first.sequence, box: first.box, ratchet: open.ratchet, into: &outputs)
            }
        }
        sendAck(open.ratchet, into: &outputs)
        nudgeGoodbye(open.ratchet, into: &outputs)
        return true
    }

    /// A record ahead of a gap: hold it (unopened) until the gap fills, within bounds.
    ///
    /// A held record is not authenticated yet, so a newer copy of the same sequence replaces it:
    /// keeping the first would let one bad copy (a record sealed under keys from before a re-key
    /// and delayed in transit, or a forgery) take the slot of every genuine retransmission after
    /// it, and the conversation would then move one record per retransmission timeout.
    private func hold(sequence: UInt64, box: [UInt8], in buffer: inout [(sequence: UInt64, box: [UInt8])]) {
        let distance = sequence - nextReceiveSequence
        guard distance <= UInt64(configuration.reorderBufferMax) else { return }
        if let held = buffer.firstIndex(where: { $0.sequence == sequence }) {
            buffer[held].box = box
            return
        }
        guard buffer.count < configuration.reorderBufferMax else { return }
        let position = buffer.firstIndex(where: { $0.sequence > sequence }) ?? buffer.count
        buffer.insert((sequence, box), at: position)
    }

    /// Open record `sequence` (the next expected) and hand its text to the UI.
    private mutating func openAndDeliver(
        sequence: UInt64, box: [UInt8], ratchet: MessageRatchet, into outputs: inout SessionOutputs
    ) -> Bool {
        // The plaintext is lent from the ratchet's guarded buffer (wiped when the closure returns);
        // only the text the UI needs leaves it, as a String.
        let decoded: Result<ChatRecord.Content, RecordError>
        do {
            decoded = try box.withBytes { buffer throws(CryptoError) in
                try ratchet.openRecord(sequence: sequence, buffer) { ChatRecord.content(of: $0) }
            }
        } catch {
            outputs.reject(.crypto(error))
            return false
        }
        // The box authenticated, so the sequence number is consumed whatever the content.
        nextReceiveSequence = sequence + 1
        let text: String
        switch decoded {
        case let .success(.text(value)):
            text = value
        case let .success(.file(bytes)):
            outputs.append(.file(.control(bytes)))
            return true
        case let .failure(error):
            outputs.reject(.record(error))
            return true
        }
        if plantedBugs.contains(.dropAcknowledgedMessage) && sequence % PlantedBugs.droppedSequenceModulus == 0 {
            return true
        }
        outputs.append(.received(IncomingMessage(sequence: sequence, text: text)))
        return true
    }

    /// Acknowledge everything received in order so far.
    private func sendAck(_ ratchet: MessageRatchet, into outputs: inout SessionOutputs) {
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
        outputs.transmit(WireCodec.encode(ClientMessage.signal(Signal(kind: .ack, payload: payload))))
    }

    // MARK: Keys come and go

    /// A handshake was confirmed (before the lifecycle says CONNECTED): settle the queue and the
    /// numbering as the handshake decided.
    mutating func continueConversation(_ continuation: ConversationContinuation, into outputs: inout SessionOutputs) {
        if continuation.peerChanged {
            abandonAll(.peerChanged, into: &outputs)
            nextReceiveSequence = 1
            acknowledgedThrough = 0
            farewell.peerChanged()
        }
        switch continuation.sending {
        case let .resume(nextExpected):
            // Not a round trip: the messages went out before the connection or key changed.
            acknowledge(through: nextExpected - 1, roundTripEnd: nil, into: &outputs)
        case let .renumber(first):
            // Forget the sequence numbers of unacknowledged messages; they are numbered again.
            for index in queue.indices {
                queue[index].sequence = nil
                queue[index].frame = nil
            }
            nextSendSequence = first
            acknowledgedThrough = first - 1  // The peer expects `first`: it holds what came before.
        }
        if continuation.restartsReceiving { nextReceiveSequence = 1 }
        anchors = (continuation.expectedNext, continuation.receivingFrom)
    }

    /// Open with the confirmed handshake's ratchet and send what waits.
    mutating func open(
        ratchet: MessageRatchet, confirmation: [UInt8]?, now: Instant, into outputs: inout SessionOutputs
    ) {
        let firstUnacknowledged = queue.first(where: { $0.sequence != nil })?.sequence ?? nextSendSequence
        // Chain position 0 stands where the two hellos of the handshake said, on both sides; then
        // each chain steps over what the old keys carried after that (records acknowledged or
        // received under them while this handshake ran beside them: a re-key while CONNECTED).
        // Anchored at our current numbers instead, the two sides' keys for a record differed
        // whenever records crossed the re-key, and the record was refused for good (issue 12's
        // fresh-instance attacker wedged CONNECTED pairs so).
        let (sendAnchor, receiveAnchor) = anchors ?? (firstUnacknowledged, nextReceiveSequence)
        anchors = nil
        ratchet.resume(
            nextSendSequence: min(sendAnchor, firstUnacknowledged),
            nextReceiveSequence: min(receiveAnchor, nextReceiveSequence))
        ratchet.skip(sendTo: firstUnacknowledged, receiveTo: nextReceiveSequence)
        ratchet.retainsOpenedKeys = plantedBugs.contains(.skipCounterCheck)
        let interval = configuration.handshakeRetransmitInitial
        state = .open(Open(
            ratchet: ratchet, confirmation: confirmation.map { ($0, now.advanced(by: interval), interval) }))
        pump(now: now, into: &outputs)
        // Leaving across a re-key: say so under the new keys at once.
        if farewell.leaving != nil { sendGoodbye(ratchet, request: true, into: &outputs) }
    }

    /// The keys are gone (re-key, disconnect, end): wipe them; records sealed under them are
    /// useless now, and messages are sealed again once the channel reopens.
    mutating func close() {
        if case let .open(open) = state { open.ratchet.wipe() }
        state = .closed
        for index in queue.indices { queue[index].frame = nil }
    }

    /// Report the queued messages never numbered undeliverable for `reason` and forget them.
    mutating func abandonUnnumbered(_ reason: UndeliverableReason, into outputs: inout SessionOutputs) {
        let unsent = queue.filter { $0.sequence == nil }
        for message in unsent { message.text.wipe() }
        queue.removeAll { $0.sequence == nil }
        if !unsent.isEmpty { outputs.append(.undeliverable(unsent.map(\.id), reason)) }
    }

    /// Report every queued message undeliverable and forget it.
    mutating func abandonAll(_ reason: UndeliverableReason, into outputs: inout SessionOutputs) {
        let lost = queue.map(\.id)
        for message in queue { message.text.wipe() }
        queue.removeAll()
        if !lost.isEmpty { outputs.append(.undeliverable(lost, reason)) }
    }

    /// Wipe every secret the channel holds (the session is going away).
    func wipe() {
        if case let .open(open) = state { open.ratchet.wipe() }
        for message in queue { message.text.wipe() }
        recordScratch.wipe()
    }
}

/// A message the user sent that the peer has not acknowledged yet.
struct OutgoingMessage {
    let id: MessageID
    /// The text, in guarded memory until acknowledged (it may need re-sealing after a re-key).
    let text: SecureBytes
    /// The record type: chat text, or a file control message.
    var recordType: UInt8 = ChatRecord.typeText
    /// Its sequence number in the conversation, once first sent.
    var sequence: UInt64?
    /// The sealed frame under the current keys, kept for retransmission; nil while closed.
    var frame: [UInt8]?
    /// When its current frame was first sent, and how often the message went out (in any frame):
    /// only a message sent once gives a round-trip sample (Karn's rule).
    var sentAt: Instant?
    var transmissions = 0
}

/// How the conversation continues after a confirmed handshake (`HandshakeMachine` decides).
struct ConversationContinuation {
    enum Sending: Equatable {
        /// The peer remembers our conversation and has everything before `nextExpected`.
        case resume(nextExpected: UInt64)
        /// The peer does not: whatever is unacknowledged is numbered again from `from`.
        case renumber(from: UInt64)
    }

    /// A different peer instance from the conversation's: what was meant for the old one is
    /// not sent to this one, and its numbering starts over.
    var peerChanged: Bool
    var sending: Sending
    /// We announced another conversation (or none), so the peer numbers its side from 1.
    var restartsReceiving: Bool
    /// The number the peer's records under the new keys start from: what our hello announced
    /// (1 when it named another conversation). Both sides anchor the new chains there.
    var receivingFrom: UInt64 = 1

    /// The first of our numbers the peer expects next (it cannot expect one we never numbered).
    var expectedNext: UInt64 {
        switch sending {
        case let .resume(nextExpected): nextExpected
        case let .renumber(first): first
        }
    }

    /// The same peer instance as before resumes the conversation.
    var resumes: Bool {
        if case .resume = sending { true } else { false }
    }
}
