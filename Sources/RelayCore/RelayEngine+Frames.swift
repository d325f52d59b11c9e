import ChatCore

/// Inbound frames: the rate limits, holding and release, the room logic, backpressure.
///
/// A note on the in-place pattern below: a connection's `Serving` data is taken out of its
/// enum case, the case is set to `.modifying`, and the data is put back. Without the
/// placeholder, the copy in hand and the one in the dictionary would share the held-frames
/// buffer, and the first change to it would copy it.
extension RelayEngine {
    typealias Index = Dictionary<ConnectionID, ConnectionRecord<Frame>>.Index

    /// One complete inbound frame from a connection.
    public mutating func receive(_ frame: InboundFrame<Frame>, from id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        switch connections.values[index].state {
        case .serving:
            break
        case .closing:
            // Everything is discarded now; a close frame is the client's answer to ours, which
            // completes the handshake.
            if case .close = frame { disconnect(id) }
            return
        case .upgrading, .disconnecting, .modifying:
            return
        }
        switch frame {
        case let .text(payload):
            receiveText(payload, at: index, from: id, now: now)
        case .binary:
            touch(index, now: now)
            reply(.malformedJSON, "binary frames are not part of the protocol; send JSON text", to: id)
        case let .ping(payload):
            touch(index, now: now)
            actions.append(.pong(id, payload))
        case .pong:
            touch(index, now: now)
        case let .close(code):
            touch(index, now: now)
            receiveClose(code ?? .normalClosure, at: index, from: id, now: now)
        case .reserved:
            touch(index, now: now)
            close(id, .protocolError, error: nil, now: now)
        }
    }

    /// Something went wrong below the frame level on a connection.
    public mutating func fault(_ fault: TransportFault, on id: ConnectionID, now: Instant) {
        guard connections[id] != nil else { return }
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

    /// Any inbound frame shows the client is alive.
    @inline(__always)
    private mutating func touch(_ index: Index, now: Instant) {
        guard case var .serving(serving) = connections.values[index].state else { return }
        connections.values[index].state = .modifying
        serving.lastInbound = now
        connections.values[index].state = .serving(serving)
    }

    private mutating func receiveText(_ frame: Frame, at index: Index, from id: ConnectionID, now: Instant) {
        guard case var .serving(serving) = connections.values[index].state else { return }
        connections.values[index].state = .modifying
        serving.lastInbound = now
        guard serving.closeAfterHeld == nil else {
            connections.values[index].state = .serving(serving)
            return
        }
        let size = frame.relayByteCount
        storedCounters.framesReceived &+= 1
        storedCounters.bytesReceived &+= size
        // Keep order: once anything is held, everything after it waits too.
        if serving.held.isEmpty && serving.admit(size, now: now) {
            connections.values[index].state = .serving(serving)
            process(frame, from: id, now: now)
        } else {
            hold(frame, size: size, in: &serving, from: id, now: now)
            connections.values[index].state = .serving(serving)
        }
    }

    private mutating func receiveClose(_ code: CloseCode, at index: Index, from id: ConnectionID, now: Instant) {
        guard case var .serving(serving) = connections.values[index].state else { return }
        if serving.held.isEmpty {
            // Echo the client's status code (RFC 6455 §5.5.1); the handshake is then complete
            // and the server closes TCP first (§7.1.1).
            close(id, code, error: nil, disconnectWhenWritten: true, now: now)
            return
        }
        // Keep order: the frames the client sent before its close (its last acknowledgements,
        // say) still go to the peer, as the rate allows; then the close.
        connections.values[index].state = .modifying
        serving.closeAfterHeld = serving.closeAfterHeld ?? code
        connections.values[index].state = .serving(serving)
    }

    /// A frame over the rate: answer `RATE_LIMITED` once, stop reading, hold it until the
    /// buckets can pay for it. A flooding client is slowed by TCP to its allowed rate and the
    /// relay spends nothing on its excess (the rest of the read batch in hand is all it holds).
    private mutating func hold(
        _ frame: Frame, size: Int, in serving: inout Serving<Frame>, from id: ConnectionID, now: Instant
    ) {
        storedCounters.reject(.rateLimited)
        if !serving.rateLimitAnswered {
            serving.rateLimitAnswered = true
            actions.append(.send(id, .error(code: .rateLimited, message: RelayErrorCode.rateLimited.defaultMessage)))
        }
        if serving.pauseReasons.isEmpty { actions.append(.pauseReading(id)) }
        serving.pauseReasons.insert(.rateLimited)
        // The bound is a backstop (a frame beyond it is dropped; the client was told RATE_LIMITED);
        // the first frame is always held, so reading always resumes.
        if serving.held.isEmpty || serving.heldBytes + size <= RelayLimits.heldBytesMax {
            serving.held.append(frame)
            serving.heldBytes += size
        }
        armRelease(&serving, id, now: now)
    }

    /// Arm the release timer for when the buckets can pay for the oldest held frame.
    mutating func armRelease(_ serving: inout Serving<Frame>, _ id: ConnectionID, now: Instant) {
        guard serving.releaseAt == nil, let at = serving.releaseTime(now: now) else { return }
        serving.releaseAt = at
        timers.insert(TimerEntry(deadline: at, connection: id))
    }

    /// The release timer fired: send on every held frame the buckets can pay for, in order;
    /// then answer a waiting close, or read again once nothing is left, or wait for the next refill.
    mutating func releaseHeld(_ id: ConnectionID, now: Instant) {
        // Bounded by the frames held; stops early for the buckets or the peer's backpressure.
        while let index = connections.index(forKey: id), case var .serving(serving) = connections.values[index].state {
            connections.values[index].state = .modifying
            if let first = serving.held.first, !serving.pauseReasons.contains(.peerBackpressure),
                serving.admit(first.relayByteCount, now: now)
            {
                serving.held.removeFirst()
                serving.heldBytes -= first.relayByteCount
                connections.values[index].state = .serving(serving)
                process(first, from: id, now: now)
                continue
            }
            if serving.held.isEmpty, let code = serving.closeAfterHeld {
                serving.closeAfterHeld = nil
                connections.values[index].state = .serving(serving)
                close(id, code, error: nil, disconnectWhenWritten: true, now: now)
                return
            }
            if serving.held.isEmpty {
                serving.rateLimitAnswered = false
                serving.pauseReasons.remove(.rateLimited)
                if serving.pauseReasons.isEmpty { actions.append(.resumeReading(id)) }
            } else if !serving.pauseReasons.contains(.peerBackpressure) {
                armRelease(&serving, id, now: now)
            }
            connections.values[index].state = .serving(serving)
            return
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
        if connections[peer]?.isWritable == false { pause(id, .peerBackpressure) }
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
        guard let index = connections.index(forKey: id), case var .serving(serving) = connections.values[index].state
        else { return }
        connections.values[index].state = .modifying
        if serving.pauseReasons.isEmpty { actions.append(.pauseReading(id)) }
        serving.pauseReasons.insert(reason)
        connections.values[index].state = .serving(serving)
    }

    /// The room-mate of `id` drained (or left): read `id` again, and release what it held for
    /// the rate limit, which was waiting on the room-mate too.
    mutating func resumeAfterBackpressure(_ id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id), case var .serving(serving) = connections.values[index].state,
            serving.pauseReasons.contains(.peerBackpressure)
        else { return }
        connections.values[index].state = .modifying
        serving.pauseReasons.remove(.peerBackpressure)
        if serving.pauseReasons.isEmpty { actions.append(.resumeReading(id)) }
        if !serving.held.isEmpty { armRelease(&serving, id, now: now) }
        connections.values[index].state = .serving(serving)
    }
}
