import ChatCore

/// Inbound frames: the rate limits, holding and release, the room logic, backpressure.
///
/// A connection's data is changed in place through `ConnectionRecord`'s mutating methods on
/// `connections.values[index]` (see there); engine-wide effects (actions, timers, counters)
/// are applied here from what they return.
extension RelayEngine {
    typealias Index = Dictionary<ConnectionID, ConnectionRecord<Frame>>.Index

    /// One complete inbound frame from a connection.
    public mutating func receive(_ frame: InboundFrame<Frame>, from id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        if case let .text(payload) = frame {
            receiveText(payload, at: index, from: id, now: now)
            return
        }
        switch connections.values[index].noteInbound(now: now) {
        case .serving:
            break
        case .closing:
            // Everything is discarded now; a close frame is the client's answer to ours, which
            // completes the handshake.
            if case .close = frame { disconnect(id) }
            return
        case .upgrading, .disconnecting:
            return
        }
        switch frame {
        case .text:
            break
        case .binary:
            reply(.malformedJSON, "binary frames are not part of the protocol; send JSON text", to: id)
        case let .ping(payload):
            actions.append(.pong(id, payload))
        case .pong:
            break
        case let .close(code):
            receiveClose(code ?? .normalClosure, from: id, now: now)
        case .reserved:
            close(id, .protocolError, error: nil, now: now)
        }
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
        }
    }

    /// The per-frame path: the buckets, then the room logic, or holding.
    @inline(__always)
    private mutating func receiveText(_ frame: Frame, at index: Index, from id: ConnectionID, now: Instant) {
        let size = frame.relayByteCount
        // The NIO shell's decoder refuses such a frame from its header (`fault(.frameTooLarge)`)
        // before it is buffered; a shell without one (the simulator) gets the same answer here.
        guard size <= limits.frameSizeMaxBytes else {
            fault(.frameTooLarge, on: id, now: now)
            return
        }
        switch connections.values[index].admitText(frame, size: size, now: now) {
        case .ignored:
            return
        case .admitted:
            storedCounters.framesReceived &+= 1
            storedCounters.bytesReceived &+= size
            process(frame, from: id, now: now)
        case let .held(answer, pause, releaseAt):
            storedCounters.framesReceived &+= 1
            storedCounters.bytesReceived &+= size
            storedCounters.reject(.rateLimited)
            if answer {
                let text = RelayErrorCode.rateLimited.defaultMessage
                actions.append(.send(id, .error(code: .rateLimited, message: text)))
            }
            if pause { actions.append(.pauseReading(id)) }
            if let releaseAt { timers.insert(TimerEntry(deadline: releaseAt, connection: id)) }
        }
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
        // server closes TCP first (§7.1.1).
        if heldNothing == true { close(id, code, error: nil, disconnectWhenWritten: true, now: now) }
    }

    /// The release timer fired: send on every held frame the buckets can pay for, in order;
    /// then answer a waiting close, or read again once nothing is left, or wait for the next refill.
    mutating func releaseHeld(_ id: ConnectionID, now: Instant) {
        // Bounded by the frames held; stops early for the buckets or the peer's backpressure.
        while let index = connections.index(forKey: id) {
            let step = connections.values[index].withServing { serving -> ReleaseStep<Frame> in
                if let first = serving.held.first, !serving.pauseReasons.contains(.peerBackpressure),
                    serving.admit(first.relayByteCount, now: now)
                {
                    serving.held.removeFirst()
                    serving.heldBytes -= first.relayByteCount
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
                close(id, code, error: nil, disconnectWhenWritten: true, now: now)
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

    /// Hand an admitted text frame to the room logic: the one place frames reach `RelayRooms`.
    mutating func process(_ frame: Frame, from id: ConnectionID, now: Instant) {
        let wire = rooms.limits.wire
        let decoded = frame.withRelayBytes { bytes in
            Result { () throws(WireError) -> ClientFrame in try WireCodec.inspectClientFrame(bytes, limits: wire) }
        }
        switch decoded {
        case let .failure(error):
            reply(error.relayErrorCode, error.description, to: id)
        case let .success(.join(room)):
            join(room, from: id, now: now)
        case .success(.signal):
            switch rooms.route(signalFrom: id) {
            case let .forward(to: peer):
                forward(frame, from: id, to: peer)
            case let .refuse(code):
                reply(code, code.defaultMessage, to: id)
            }
        }
    }

    private mutating func forward(_ frame: Frame, from id: ConnectionID, to peer: ConnectionID) {
        storedCounters.framesForwarded &+= 1
        storedCounters.bytesForwarded &+= frame.relayByteCount
        actions.append(.forward(peer, frame))
        // A peer already over its high watermark: stop reading the sender now (a peer that
        // crosses the mark with this frame is reported by the shell, `writabilityChanged`).
        if !overWatermark.isEmpty && overWatermark.contains(peer) { pause(id, .peerBackpressure) }
    }

    private mutating func join(_ room: RoomCode, from id: ConnectionID, now: Instant) {
        // A repeated JOIN of the same room is a client's retransmission: not a new join.
        if rooms.room(of: id) != room, let key = connections[id]?.countedUnder, var entry = addresses[key] {
            let admitted = entry.joinBucket.tryConsume(RelayLimits.joinCostTokens, now: now)
            addresses[key] = entry
            guard admitted else {
                reply(.joinRateLimited, RelayErrorCode.joinRateLimited.defaultMessage, to: id)
                return
            }
        }
        perform(rooms.join(id, room: room))
    }

    /// Carry out the room logic's answers.
    mutating func perform(_ roomActions: [RelayRooms<ConnectionID>.Action]) {
        for action in roomActions {
            switch action {
            case let .send(to: target, message):
                if case let .error(code, _) = message { storedCounters.reject(RejectionReason(code)) }
                actions.append(.send(target, message))
            case .forward:
                // Only SIGNALs forward, and `process` routes those itself with the frame at hand.
                assertionFailure("a forward outside a SIGNAL")
            }
        }
    }

    /// Answer a connection with an `ERROR` (counted by its reason). Every protocol-level refusal
    /// goes through here (issue 14's "N errors, then close 1008" is a count in `Serving`).
    private mutating func reply(_ code: RelayErrorCode, _ text: String, to id: ConnectionID) {
        storedCounters.reject(RejectionReason(code))
        actions.append(.send(id, .error(code: code, message: text)))
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

    /// The room-mate of `id` drained (or left): read `id` again, and release what it held for
    /// the rate limit, which was waiting on the room-mate too.
    mutating func resumeAfterBackpressure(_ id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        let outcome = connections.values[index].withServing { serving -> (resume: Bool, releaseAt: Instant?)? in
            guard serving.pauseReasons.contains(.peerBackpressure) else { return nil }
            serving.pauseReasons.remove(.peerBackpressure)
            return (serving.pauseReasons.isEmpty, serving.held.isEmpty ? nil : serving.armRelease(now: now))
        }
        guard let outcome = outcome ?? nil else { return }
        if outcome.resume { actions.append(.resumeReading(id)) }
        if let at = outcome.releaseAt { timers.insert(TimerEntry(deadline: at, connection: id)) }
    }
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
