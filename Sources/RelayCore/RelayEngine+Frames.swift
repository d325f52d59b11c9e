import ChatCore

/// Inbound frames: the rate limits, holding and release, the room logic, backpressure.
///
/// A connection's data is changed in place through `ConnectionRecord`'s mutating methods on
/// `connections.values[index]` (see there); engine-wide effects (actions, timers, counters)
/// are applied here from what they return.
extension RelayEngine {
    typealias Index = Dictionary<ConnectionID, ConnectionRecord<Frame>>.Index

    /// One complete inbound frame from a connection. Every frame of every kind is charged to the
    /// connection's message and byte buckets (a text frame or a binary SIGNAL its size; a ping or
    /// another binary frame its payload; a pong, a close, or a fragment before the last one message
    /// and no bytes): a client that floods pings or binary frames is paused like one that floods
    /// text. A binary frame is a SIGNAL on a connection that negotiated `securechat.binary`, and
    /// takes the text frames' path (holding, order, the room logic).
    public mutating func receive(_ frame: InboundFrame<Frame>, from id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        let size: Int
        switch frame {
        case let .text(payload):
            receiveProtocolFrame(HeldFrame(frame: payload, binary: false), at: index, from: id, now: now)
            return
        case let .binary(payload) where connections.values[index].binarySignals:
            receiveProtocolFrame(HeldFrame(frame: payload, binary: true), at: index, from: id, now: now)
            return
        case let .ping(payload), let .binary(payload): size = payload.relayByteCount
        case .pong, .close, .fragment, .reserved: size = 0
        }
        let admission = connections.values[index].admitControl(size: size, paired: hasRoomMate(id), now: now)
        switch admission {
        case .admitted:
            act(on: frame, from: id, now: now)
        case let .overRate(answer, pause, releaseAt):
            // The end of the connection is never over the rate: the close is answered (behind
            // any held frames), and nothing more is to be said or paused on it.
            if case let .close(code) = frame {
                receiveClose(code ?? .normalClosure, from: id, now: now)
                return
            }
            storedCounters.reject(.rateLimited)
            noteHeld(id, answer: answer, pause: pause, releaseAt: releaseAt)
        case .closing, .closingPause:
            // Everything is discarded now; a close frame is the client's answer to ours, which
            // completes the handshake.
            if case .close = frame {
                disconnect(id)
            } else if case .closingPause = admission {
                actions.append(.pauseReading(id))
            }
        case .ignored:
            return
        }
    }

    /// Whether `id` has a room-mate (on this node or, in cluster mode, on another): its frames are
    /// then charged to the paired tier of the rate limits (`RelayLimits.pairedBytesPerSecond`).
    @inline(__always)
    func hasRoomMate(_ id: ConnectionID) -> Bool {
        if let cluster { return cluster.seats[id]?.partner != nil }
        return rooms.peer(of: id) != nil
    }

    /// A frame other than text (or a binary SIGNAL) that the buckets paid for.
    private mutating func act(on frame: InboundFrame<Frame>, from id: ConnectionID, now: Instant) {
        switch frame {
        case .text, .pong, .fragment:
            break
        case .binary:
            // Not negotiated (`securechat.binary`): today's answer, as before binary SIGNALs.
            reply(.malformedJSON, "binary frames are not part of the protocol; send JSON text", to: id, now: now)
        case let .ping(payload):
            answerPing(payload, on: id)
        case let .close(code):
            receiveClose(code ?? .normalClosure, from: id, now: now)
        case .reserved:
            close(id, .protocolError, error: nil, now: now)
        }
    }

    /// Answer a ping, unless a pong is still in flight (then this one is owed).
    private mutating func answerPing(_ payload: Frame, on id: ConnectionID) {
        guard let index = connections.index(forKey: id),
            connections.values[index].withServing({ $0.answerPing(payload) }) == true
        else { return }
        actions.append(.pong(id, payload))
    }

    /// The shell wrote the pong it was last given on this connection (or the connection ended):
    /// the owed pong, if a ping came meanwhile, goes now.
    public mutating func pongWritten(_ id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id),
            let owed = connections.values[index].withServing({ $0.pongWritten() }) ?? nil
        else { return }
        actions.append(.pong(id, owed))
    }

    /// Something went wrong below the frame level on a connection.
    public mutating func fault(_ fault: TransportFault, on id: ConnectionID, now: Instant) {
        guard connections.index(forKey: id) != nil else { return }
        switch fault {
        case .frameTooLarge:
            storedCounters.reject(.frameTooLarge)
            close(id, .messageTooLarge, error: .frameTooLarge, now: now)
        case .malformedFrame:
            storedCounters.reject(.malformed)
            close(id, .protocolError, error: nil, now: now)
        case .ioError:
            disconnect(id)
        case .badProxyHeader:
            storedCounters.reject(.badProxyHeader)
            disconnect(id)
        }
    }

    /// The per-frame path of a text frame or a binary SIGNAL: the buckets, then the room logic,
    /// or holding.
    @inline(__always)
    private mutating func receiveProtocolFrame(
        _ frame: HeldFrame<Frame>, at index: Index, from id: ConnectionID, now: Instant
    ) {
        let size = frame.frame.relayByteCount
        // The NIO shell's decoder refuses such a frame from its header (`fault(.frameTooLarge)`)
        // before it is buffered; a shell without one (the simulator) gets the same answer here. A
        // binary SIGNAL is measured by its text form, which a peer without binary gets: it fits
        // either peer or neither (a malformed one by its size, and answered in `process`). Only
        // while serving: once closing, the frame is one more to discard (`admitText`), counted
        // towards pausing reads, not an answer of its own.
        let charge = frame.chargeBytes
        if charge > limits.frameSizeMaxBytes, case .serving = connections.values[index].state {
            fault(.frameTooLarge, on: id, now: now)
            return
        }
        let paired = hasRoomMate(id)
        switch connections.values[index].admitText(frame, size: size, charge: charge, paired: paired, now: now) {
        case .ignored:
            return
        case .closingPause:
            actions.append(.pauseReading(id))
        case .admitted:
            storedCounters.framesReceived &+= 1
            storedCounters.bytesReceived &+= size
            if frame.binary { storedCounters.binarySignalsReceived &+= 1 }
            process(frame, from: id, now: now)
        case let .held(answer, pause, releaseAt):
            storedCounters.framesReceived &+= 1
            storedCounters.bytesReceived &+= size
            if frame.binary { storedCounters.binarySignalsReceived &+= 1 }
            storedCounters.reject(.rateLimited)
            noteHeld(id, answer: answer, pause: pause, releaseAt: releaseAt)
        }
    }

    /// A frame over the rate: `RATE_LIMITED` once per episode, reads paused, the release armed.
    private mutating func noteHeld(_ id: ConnectionID, answer: Bool, pause: Bool, releaseAt: Instant?) {
        if answer {
            let text = RelayErrorCode.rateLimited.defaultMessage
            actions.append(.send(id, .error(code: .rateLimited, message: text)))
        }
        if pause { actions.append(.pauseReading(id)) }
        if let releaseAt { timers.insert(TimerEntry(deadline: releaseAt, connection: id)) }
    }

    private mutating func receiveClose(_ code: CloseCode, from id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        let heldNothing = connections.values[index].withServing { serving in
            if serving.held.isEmpty { return true }
            // Keep order: the frames the client sent before its close (its last
            // acknowledgements, say) still go to the peer, as the rate allows; then the close.
            serving.closeAfterHeld = serving.closeAfterHeld ?? code
            return false
        }
        // Echo the client's status code (RFC 6455 §5.5.1); the handshake is then complete and the
        // server closes TCP first (§7.1.1). A client that says goodbye frees its seat.
        if heldNothing == true {
            close(id, code, error: nil, disconnectWhenWritten: true, freeSeat: code.saysGoodbye, now: now)
        }
    }

    /// The release timer fired: send on every held frame the buckets can pay for, in order;
    /// then answer a waiting close, or read again once nothing is left, or wait for the next refill.
    mutating func releaseHeld(_ id: ConnectionID, now: Instant) {
        // Bounded by the frames held; stops early for the buckets or the peer's backpressure.
        while let index = connections.index(forKey: id) {
            let paired = hasRoomMate(id)
            let step = connections.values[index].withServing { serving -> ReleaseStep<HeldFrame<Frame>> in
                serving.setPaired(paired, now: now)
                if let first = serving.held.first, !serving.pauseReasons.contains(.peerBackpressure),
                    serving.admit(first.chargeBytes, now: now)
                {
                    serving.held.removeFirst()
                    serving.heldBytes -= first.frame.relayByteCount
                    return .send(first)
                }
                if serving.held.isEmpty, let code = serving.closeAfterHeld {
                    serving.closeAfterHeld = nil
                    return .close(code)
                }
                if serving.held.isEmpty {
                    serving.rateLimitAnswered = false
                    serving.pauseReasons.remove(.rateLimited)
                    return .done(resume: serving.pauseReasons.isEmpty, releaseAt: nil)
                }
                let waitsForPeer = serving.pauseReasons.contains(.peerBackpressure)
                return .done(resume: false, releaseAt: waitsForPeer ? nil : serving.armRelease(now: now))
            }
            switch step {
            case let .send(frame)?:
                process(frame, from: id, now: now)
            case let .close(code)?:
                close(id, code, error: nil, disconnectWhenWritten: true, freeSeat: code.saysGoodbye, now: now)
                return
            case let .done(resume, releaseAt)?:
                if resume { actions.append(.resumeReading(id)) }
                if let releaseAt { timers.insert(TimerEntry(deadline: releaseAt, connection: id)) }
                return
            case nil:
                return
            }
        }
    }

    /// Hand an admitted text frame or binary SIGNAL to the room logic: the one place frames reach
    /// `RelayRooms`. A binary SIGNAL is checked as a text one is (its kind; its payload is opaque)
    /// and then routed the same way.
    mutating func process(_ held: HeldFrame<Frame>, from id: ConnectionID, now: Instant) {
        let wire = rooms.limits.wire
        let decoded = held.frame.withRelayBytes { bytes in
            Result { () throws(WireError) -> ClientFrame in
                if held.binary {
                    _ = try BinarySignal.inspect(bytes, limits: WireLimits(frameSizeMaxBytes: Int.max))
                    return .signal
                }
                return try WireCodec.inspectClientFrame(bytes, limits: wire)
            }
        }
        switch decoded {
        case let .failure(error):
            reply(error.relayErrorCode, error.description, to: id, now: now)
        case let .success(.join(room, token)):
            join(room, token: token, from: id, now: now)
        case .success(.signal):
            if cluster != nil {
                clusterRoute(held, from: id, now: now)
                return
            }
            switch rooms.route(signalFrom: id) {
            case let .forward(to: peer):
                forward(held, from: id, to: peer)
            case let .refuse(code):
                reply(code, code.defaultMessage, to: id, now: now)
            }
        }
    }

    private mutating func forward(_ held: HeldFrame<Frame>, from id: ConnectionID, to peer: ConnectionID) {
        storedCounters.framesForwarded &+= 1
        storedCounters.bytesForwarded &+= held.frame.relayByteCount
        appendForward(held, to: peer)
        // A peer already over its high watermark: stop reading the sender now (a peer that
        // crosses the mark with this frame is reported by the shell, `writabilityChanged`).
        if !overWatermark.isEmpty && overWatermark.contains(peer) { pause(id, .peerBackpressure) }
    }

    /// Write a SIGNAL to `peer` in the form it reads: a text SIGNAL as it is to anyone, a binary
    /// one as it is to a peer that negotiated binary and in its text form to any other. False (and
    /// nothing written) for a binary frame that is not a SIGNAL: only one from another node can be,
    /// since this node checked its own.
    @discardableResult
    mutating func appendForward(_ held: HeldFrame<Frame>, to peer: ConnectionID) -> Bool {
        guard held.binary else {
            actions.append(.forward(peer, held.frame))
            return true
        }
        if let index = connections.index(forKey: peer), connections.values[index].binarySignals {
            actions.append(.forwardBinary(peer, held.frame))
            return true
        }
        guard let text = held.frame.textSignal() else { return false }
        storedCounters.signalsConverted &+= 1
        actions.append(.forward(peer, text))
        return true
    }

    /// Carry out the room logic's answers.
    mutating func perform(_ roomActions: [RelayRooms<ConnectionID>.Action], now: Instant) {
        for action in roomActions {
            switch action {
            case let .send(to: target, .error(code, text)):
                reply(code, text, to: target, now: now)
            case let .send(to: target, message):
                actions.append(.send(target, message))
            case .forward:
                // Only SIGNALs forward, and `process` routes those itself with the frame at hand.
                assertionFailure("a forward outside a SIGNAL")
            }
        }
    }

    /// Answer a connection with an `ERROR` (counted by its reason). Every refusal goes through
    /// here; a protocol error also counts toward the connection's `protocolErrorsMax`, and the
    /// one past it closes the connection with `TOO_MANY_ERRORS` and 1008.
    mutating func reply(_ code: RelayErrorCode, _ text: String, to id: ConnectionID, now: Instant) {
        storedCounters.reject(RejectionReason(code))
        actions.append(.send(id, .error(code: code, message: text)))
        guard code.countsAsProtocolError, let index = connections.index(forKey: id) else { return }
        let errorsMax = limits.protocolErrorsMax
        let over = connections.values[index].withServing { serving in
            serving.protocolErrors += 1
            return serving.protocolErrors > errorsMax
        }
        guard over == true else { return }
        storedCounters.reject(.tooManyErrors)
        close(id, .policyViolation, error: .tooManyErrors, now: now)
    }

    // MARK: Pausing reads

    mutating func pause(_ id: ConnectionID, _ reason: PauseReasons) {
        guard let index = connections.index(forKey: id) else { return }
        let wasReading = connections.values[index].withServing { serving in
            defer { serving.pauseReasons.insert(reason) }
            return serving.pauseReasons.isEmpty
        }
        if wasReading == true { actions.append(.pauseReading(id)) }
    }

    /// `reason` no longer holds for `id` (its room-mate drained or left, or its own queue
    /// drained): read again if nothing else keeps it paused, and release what it held for the rate
    /// limit, which was waiting on the room-mate too.
    mutating func unpause(_ id: ConnectionID, _ reason: PauseReasons, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        let outcome = connections.values[index].withServing { serving -> (resume: Bool, releaseAt: Instant?)? in
            guard serving.pauseReasons.contains(reason) else { return nil }
            serving.pauseReasons.remove(reason)
            let release = reason == .peerBackpressure && !serving.held.isEmpty
            return (serving.pauseReasons.isEmpty, release ? serving.armRelease(now: now) : nil)
        }
        guard let outcome = outcome ?? nil else { return }
        if outcome.resume { actions.append(.resumeReading(id)) }
        if let at = outcome.releaseAt { timers.insert(TimerEntry(deadline: at, connection: id)) }
    }
}

extension CloseCode {
    /// The client's own close says it is done (1000, 1001): its seat is freed, not reserved.
    var saysGoodbye: Bool { self == .normalClosure || self == .goingAway }
}

/// One step of releasing held frames.
enum ReleaseStep<Frame> {
    /// The buckets paid for this frame: process it, then try the next.
    case send(Frame)
    /// Everything held is out and the client's close was waiting: answer it.
    case close(CloseCode)
    /// Stop: read again (`resume`), or wait for the timer (`releaseAt`, when newly armed).
    case done(resume: Bool, releaseAt: Instant?)
}
