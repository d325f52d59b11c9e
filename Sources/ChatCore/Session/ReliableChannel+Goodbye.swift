/// The goodbye: a sealed, session-level close, so that leaving abandons nothing in flight.
///
/// The leaving side sends BYE requests (now, and again with backoff) saying what it has received;
/// the peer answers each with a BYE saying what it has sent (frozen from the first request on:
/// it numbers nothing new, and reports whatever it sends from then on undeliverable with reason
/// `peerLeft` at once) and what of that was confirmed. The leaving side is done when its own
/// messages are confirmed, it has received everything the peer sent, and the peer's answer shows
/// that the peer knows it. The caller bounds the wait (--drain-timeout).
///
/// BYE payload: counter (8) ‖ box(control key, nonce (purpose 4, side, counter), body), sharing
/// the acknowledgements' counter; body = flags (1: bit 0 the sender is leaving, bit 1 answer
/// requested) ‖ received through (8) ‖ sent through (8) ‖ confirmed through (8).
struct Farewell {
    /// We are leaving: the next BYE request is due at `at` (the interval doubles up to the cap).
    var leaving: (at: Instant, interval: Duration)?
    /// The peer said it leaves: nothing is numbered for it any more.
    var peerLeaving = false
    /// The peer's latest BYE: the last record it sent us, and the last of those we confirmed.
    var peerReport: (sentThrough: UInt64, confirmedThrough: UInt64)?
    /// The peer said goodbye and then its connection ended: it is gone for good.
    var peerGone = false
    /// Records we had numbered were abandoned then (reported undeliverable): should the peer come
    /// back all the same (its link dropped during its goodbye), our BYEs count as sent only what it
    /// acknowledged, so that its goodbye does not wait for records that no longer exist.
    var abandonedNumbered = false

    static let bodyByteCount = 25
    static let leavingFlag: UInt8 = 1
    static let requestFlag: UInt8 = 2

    /// A new peer instance: its predecessor's goodbye says nothing about it.
    mutating func peerChanged() {
        peerLeaving = false
        peerReport = nil
        peerGone = false
        abandonedNumbered = false
    }
}

extension ReliableChannel {
    enum GoodbyeReceipt {
        /// No keys: nothing was read.
        case closed
        case rejected(FrameRejection)
        /// Read; `peerStartedLeaving`: the first word that the peer leaves.
        case accepted(peerStartedLeaving: Bool)
    }

    /// When the next BYE request is due, while leaving on open keys.
    var goodbyeAt: Instant? {
        guard isOpen else { return nil }
        return farewell.leaving?.at
    }

    /// We leave once the peer has had its say: start the goodbye (a BYE request now).
    mutating func startLeaving(now: Instant, into outputs: inout SessionOutputs) {
        let interval = configuration.messageRetransmitInitial
        if farewell.leaving == nil { farewell.leaving = (now.advanced(by: interval), interval) }
        if case let .open(open) = state { sendGoodbye(open.ratchet, request: true, into: &outputs) }
    }

    /// One BYE, for a client that leaves without waiting: the peer learns it at once.
    func sayGoodbyeOnce(into outputs: inout SessionOutputs) {
        guard case let .open(open) = state else { return }
        sendGoodbye(open.ratchet, request: false, leaving: true, into: &outputs)
    }

    /// The BYE request timer.
    mutating func goodbyeTimeout(now: Instant, into outputs: inout SessionOutputs) {
        guard case let .open(open) = state, let leaving = farewell.leaving, leaving.at <= now else { return }
        let interval = min(leaving.interval * 2, configuration.retransmitMax)
        farewell.leaving = (now.advanced(by: interval), interval)
        sendGoodbye(open.ratchet, request: true, into: &outputs)
    }

    /// We are leaving and nothing is left: our messages are confirmed, the peer's have all
    /// arrived, and the peer's last word shows that it knows.
    var goodbyeComplete: Bool {
        guard farewell.leaving != nil, queue.isEmpty, let report = farewell.peerReport else { return false }
        return report.confirmedThrough >= report.sentThrough && nextReceiveSequence - 1 >= report.sentThrough
    }

    /// The peer is leaving and what it numbered before its latest BYE has all arrived here in order
    /// (a BYE can overtake the records it counts: they are waited for), or it is gone for good.
    var peerHasSaidAll: Bool {
        guard farewell.peerLeaving else { return false }
        if farewell.peerGone { return true }
        guard let report = farewell.peerReport else { return false }
        return nextReceiveSequence - 1 >= report.sentThrough
    }

    /// The peer's connection ended after it said goodbye: it is gone for good, and what it did
    /// not confirm never will be.
    mutating func peerGone(into outputs: inout SessionOutputs) {
        guard farewell.peerLeaving else { return }
        farewell.peerGone = true
        if queue.contains(where: { $0.sequence != nil }) { farewell.abandonedNumbered = true }
        abandonAll(.peerLeft, into: &outputs)
    }

    /// A BYE from the peer.
    mutating func receiveGoodbye(_ signal: Signal, now: Instant, into outputs: inout SessionOutputs) -> GoodbyeReceipt {
        guard case let .open(open) = state else { return .closed }
        guard let payload = signal.payload, payload.count >= 8 else {
            return .rejected(.crypto(.truncated(length: signal.payload?.count ?? 0)))
        }
        let body: SecureBytes
        do {
            body = try Array(payload[8...]).withBytes { buffer throws(CryptoError) in
                try open.ratchet.openGoodbye(counter: BigEndian.uint64(payload, at: 0), buffer)
            }
        } catch {
            return .rejected(.crypto(error))
        }
        defer { body.wipe() }
        peerHasKeys()
        guard body.count == Farewell.bodyByteCount else { return .rejected(.crypto(.truncated(length: body.count))) }
        let (flags, received, sent, confirmed) = body.withUnsafeBytes { bytes in
            (bytes[0], BigEndian.uint64(bytes, at: 1), BigEndian.uint64(bytes, at: 9), BigEndian.uint64(bytes, at: 17))
        }
        // Every number is the peer's: bounded by what this conversation can have seen.
        let receivedHere = nextReceiveSequence - 1
        guard flags & ~(Farewell.leavingFlag | Farewell.requestFlag) == 0, received < nextSendSequence,
              sent >= receivedHere, sent - receivedHere <= UInt64(configuration.sendQueueMax), confirmed <= sent
        else { return .rejected(.handshake(.inconsistentResume)) }
        let before = queue.count
        acknowledge(through: received, roundTripEnd: nil, into: &outputs)
        if queue.count < before { progressed(now: now, into: &outputs) }
        farewell.peerReport = (sent, confirmed)
        var started = false
        if flags & Farewell.leavingFlag != 0, !farewell.peerLeaving {
            farewell.peerLeaving = true
            started = true
            // What was never numbered will never be sent to it.
            abandonUnnumbered(.peerLeft, into: &outputs)
        }
        if flags & Farewell.requestFlag != 0 { sendGoodbye(open.ratchet, request: false, into: &outputs) }
        return .accepted(peerStartedLeaving: started)
    }

    /// Leaving, and the record just delivered completes what the peer reported sending: ask for
    /// its answer now rather than at the next timer.
    func nudgeGoodbye(_ ratchet: MessageRatchet, into outputs: inout SessionOutputs) {
        guard farewell.leaving != nil, let report = farewell.peerReport, report.confirmedThrough < report.sentThrough,
              nextReceiveSequence - 1 >= report.sentThrough
        else { return }
        sendGoodbye(ratchet, request: true, into: &outputs)
    }

    /// Send a BYE: what we received, sent, and had confirmed.
    func sendGoodbye(
        _ ratchet: MessageRatchet, request: Bool, leaving: Bool? = nil, into outputs: inout SessionOutputs
    ) {
        var body: [UInt8] = [
            ((leaving ?? (farewell.leaving != nil)) ? Farewell.leavingFlag : 0) | (request ? Farewell.requestFlag : 0),
        ]
        // Records abandoned when the peer left for good are not counted (it came back without them).
        let sentThrough = farewell.abandonedNumbered ? acknowledgedThrough : nextSendSequence - 1
        let confirmedThrough = min(
            sentThrough, (queue.first(where: { $0.sequence != nil })?.sequence ?? nextSendSequence) - 1)
        BigEndian.append(nextReceiveSequence - 1, to: &body)
        BigEndian.append(sentThrough, to: &body)
        BigEndian.append(confirmedThrough, to: &body)
        let sealed: (counter: UInt64, box: [UInt8])
        do {
            sealed = try body.withBytes { buffer throws(CryptoError) in try ratchet.sealGoodbye(buffer) }
        } catch {
            return  // Keys gone or 2^64 control messages: nothing to say it with.
        }
        var payload: [UInt8] = []
        BigEndian.append(sealed.counter, to: &payload)
        payload.append(contentsOf: sealed.box)
        outputs.transmit(WireCodec.encode(ClientMessage.signal(Signal(kind: .goodbye, payload: payload))))
    }
}
