import ChatCore
@_spi(Simulation) import RelayCore

/// The relay side: what the relay's NIO shell does (accept, upgrade, pass frames, pause reads,
/// report writability and closes) around the real `RelayEngine`, and nothing it decides.
extension World {
    // MARK: Frames on the network

    /// Put `frame` on `link` towards the relay or the client, through the network's faults.
    func transmit(_ frame: WireFrame, on link: LinkID, toRelay: Bool) {
        let state = links[Int(link.value)]
        let client = Int(state.client)
        counters.framesSent += 1
        // A cluster node's frames wait out a cut of the client's link (TCP retransmits them).
        guard !state.broken, clients[client].cutUntil <= now || (isCluster && !toRelay) else {
            counters.framesLost += 1
            record(.frameLost, client: client, link: link, value: UInt64(frame.byteCount))
            return
        }
        if faults.held {
            hold(frame, on: link, toRelay: toRelay)
            return
        }
        // A cluster's nodes write to clients over TCP: in order, nothing lost or doubled (see
        // `clusterOrdered`); what the clients send still suffers every fault.
        var copies = 1
        if !isCluster || toRelay {
            copies = faults.copies()
        } else if cluster?.configuration.nodeFramesLost == true {
            copies = min(faults.copies(), 1)
        }
        if copies == 0 {
            counters.framesDropped += 1
            record(.frameDropped, client: client, link: link, value: UInt64(frame.byteCount))
        }
        if copies == 2 {
            counters.framesDuplicated += 1
            record(.frameDuplicated, client: client, link: link, value: UInt64(frame.byteCount))
        }
        for _ in 0..<copies {
            var at = now.advanced(by: faults.oneWayDelay())
            if toRelay {
                if faults.inOrder {
                    at = max(at, links[Int(link.value)].lastDueToRelay)
                    links[Int(link.value)].lastDueToRelay = at
                }
                queue.schedule(at: at, .toRelay(link, frame))
                clientBytesUnread(link, changedBy: frame.byteCount)
            } else {
                // Nothing reaches the client before the upgrade that opened the connection.
                if let upgradeDue = links[Int(link.value)].upgradeDue { at = max(at, upgradeDue) }
                if faults.inOrder {
                    at = max(at, links[Int(link.value)].lastDueToClient)
                    links[Int(link.value)].lastDueToClient = at
                }
                at = clusterOrdered(at, toClientOn: link)
                links[Int(link.value)].bytesToClient += frame.byteCount
                queue.schedule(at: at, .toClient(link, frame))
            }
        }
        if !toRelay { relayQueueGrew(link) }
    }

    /// How long a close takes to reach the other end: after every frame already on its way (frames
    /// take at most `delayMax`), as TCP keeps order. A held network keeps its frames apart from the
    /// queue, so there the close is immediate.
    var closeDelay: Duration {
        faults.held ? .zero : faults.delayMax + .microseconds(1)
    }

    // MARK: Connection events at the relay

    /// The relay's end of `link`, if this relay process holds it open.
    private func relayEnd(_ link: LinkID) -> ConnectionID? {
        let state = links[Int(link.value)]
        guard relayUp, state.relayOpen, state.relayGeneration == relayGeneration, let id = state.relayID else {
            return nil
        }
        return id
    }

    func connectArrives(_ link: LinkID) {
        let state = links[Int(link.value)]
        let client = clients[Int(state.client)]
        guard relayUp else {
            queue.schedule(after: faults.oneWayDelay(), .connectRefused(link))
            return
        }
        guard !state.broken, client.cutUntil <= now else { return }
        if relayFrozen {
            frozenConnects.append(link)
            return
        }
        let acceptance = relay.accept(from: client.address, now: now)
        links[Int(link.value)].relayID = acceptance.id
        links[Int(link.value)].relayGeneration = relayGeneration
        links[Int(link.value)].relayOpen = true
        relayLinks[acceptance.id] = link
        client.relayLinks.removeAll { !links[Int($0.value)].relayOpen }
        client.relayLinks.append(link)
        switch acceptance.disposition {
        case .serve, .refuse:
            // The TLS and WebSocket upgrade completes; a refused client then hears why.
            let due = now.advanced(by: faults.oneWayDelay())
            links[Int(link.value)].upgradeDue = due
            queue.schedule(at: due, .upgradeArrives(link))
            let binary = configuration.binarySignals.negotiates(seed: configuration.seed, link: link.value)
            links[Int(link.value)].binarySignals = binary
            relay.upgraded(acceptance.id, binarySignals: binary, now: now)
        case .drop:
            disconnectAtRelay(acceptance.id, link)
        }
        drainRelay()
    }

    func frameArrivesAtRelay(_ link: LinkID, _ frame: WireFrame) {
        guard let id = relayEnd(link), !links[Int(link.value)].broken,
            clients[Int(links[Int(link.value)].client)].cutUntil <= now
        else {
            clientBytesUnread(link, changedBy: -frame.byteCount)
            counters.framesLost += 1
            record(.frameLost, client: Int(links[Int(link.value)].client), link: link, value: UInt64(frame.byteCount))
            return
        }
        if links[Int(link.value)].readPaused || relayFrozen {
            buffers[Int(link.value)].waitingAtRelay.append(frame)
            return
        }
        deliverToRelay(frame, id, link)
        drainRelay()
    }

    private func deliverToRelay(_ frame: WireFrame, _ id: ConnectionID, _ link: LinkID) {
        clientBytesUnread(link, changedBy: -frame.byteCount)
        let client = Int(links[Int(link.value)].client)
        relaySource = link
        defer { relaySource = nil }
        switch frame {
        case let .text(bytes):
            record(.frameAtRelay, client: client, link: link, value: UInt64(bytes.count))
            trace.mixBytes(bytes)
            observer?.world(self, relayReceives: bytes, from: client)
            relay.receive(.text(bytes), from: id, now: now)
        case let .binary(bytes):
            record(.frameAtRelay, client: client, link: link, value: UInt64(bytes.count))
            trace.mixBytes(bytes)
            if let observer, let text = BinarySignal.text(bytes) {
                observer.world(self, relayReceives: text, from: client)
            }
            relay.receive(.binary(bytes), from: id, now: now)
        case let .ping(payload): relay.receive(.ping(payload), from: id, now: now)
        case .pong: relay.receive(.pong, from: id, now: now)
        case .close: relay.receive(.close(nil), from: id, now: now)
        }
        // Carry out what this frame caused while its source is known (a forward names it).
        performRelayActions()
    }

    func relaySeesClose(_ link: LinkID) {
        guard let id = relayEnd(link) else { return }
        if relayFrozen {
            frozenCloses.append(link)
            return
        }
        let client = Int(links[Int(link.value)].client)
        record(.relaySeesClose, client: client, link: link)
        links[Int(link.value)].relayOpen = false
        relayLinks[id] = nil
        relaySource = link
        // A clean close (the client's close frame, then the FIN): the relay frees the seat.
        if links[Int(link.value)].closedByClientFrame { relay.receive(.close(.normalClosure), from: id, now: now) }
        relay.closed(id, now: now)
        performRelayActions()
        relaySource = nil
        observer?.world(self, relayClosed: link, client: client)
        drainRelay()
    }

    /// The relay's NIO shell closes the socket: the engine hears `closed`, the client the FIN.
    private func disconnectAtRelay(_ id: ConnectionID, _ link: LinkID) {
        guard links[Int(link.value)].relayOpen else { return }
        links[Int(link.value)].relayOpen = false
        relayLinks[id] = nil
        relay.closed(id, now: now)
        observer?.world(self, relayClosed: link, client: Int(links[Int(link.value)].client))
        if links[Int(link.value)].clientOpen && !links[Int(link.value)].broken {
            // Behind the frames already on their way (TCP keeps order).
            queue.schedule(after: closeDelay, .clientSeesClose(link))
        }
    }

    // MARK: The engine's actions

    /// Carry out every pending action, then re-arm the relay's timer.
    func drainRelay() {
        performRelayActions()
        armRelayTimer()
    }

    func performRelayActions() {
        // Bounded: the engine produces a finite batch per input.
        while let action = relay.nextAction() {
            switch action {
            case let .send(id, message): relaySend(message, to: id)
            case let .forward(id, frame): relayForward(frame, to: id)
            case let .forwardBinary(id, frame): relayForward(frame, to: id, binary: true)
            case let .pong(id, payload):
                relayWrite(.pong(payload), to: id)
                // The shell reports each pong written: the engine keeps one in flight per connection.
                relay.pongWritten(id, now: now)
            case let .ping(id): relayWrite(.ping([]), to: id)
            case let .close(id, code, error, disconnectWhenWritten):
                relayClose(id, code: code, error: error, disconnect: disconnectWhenWritten)
            case let .disconnect(id):
                if let link = relayLinks[id] { disconnectAtRelay(id, link) }
            case let .pauseReading(id):
                if let link = relayLinks[id] {
                    links[Int(link.value)].readPaused = true
                    record(.relayPause, client: Int(links[Int(link.value)].client), link: link)
                }
            case let .resumeReading(id): resumeReading(id)
            case .shutdownComplete: break
            case let .cluster(command): performClusterCommand(command)
            }
        }
    }

    private func relaySend(_ message: RelayMessage, to id: ConnectionID) {
        guard let link = relayLinks[id] else { return }
        let client = Int(links[Int(link.value)].client)
        var message = message
        if configuration.plantedBugs.contains(.thirdPeerJoins), clients[client].isSquatter,
            case let .error(code, _) = message, code == .roomFull || code == .seatReserved
        {
            message = .joined(room: clients[client].room, peers: RoomCode.peersMax)
        }
        guard observer?.world(self, relayWillSend: message, to: client, link: link) ?? true else { return }
        let bytes = WireCodec.encode(message)
        record(.relaySend, client: client, link: link, value: UInt64(bytes.count))
        transmit(.text(bytes), on: link, toRelay: false)
    }

    /// `binary`: a binary SIGNAL to a connection that negotiated them; observers see its text form.
    func relayForward(_ frame: [UInt8], to id: ConnectionID, binary: Bool = false) {
        guard var link = relayLinks[id] else { return }
        if configuration.plantedBugs.contains(.forwardIntoNextRoom), plantedRandom.chance(1.0 / 8),
            let stray = strayLink(from: link)
        {
            link = stray
        }
        let client = Int(links[Int(link.value)].client)
        // A frame the engine held (rate limit) and releases on a timer has no input link: it
        // came from the other connection of the destination's room.
        let sourceLink = clusterSource(relaySource, to: link) ?? relay.rooms.peer(of: id).flatMap { relayLinks[$0] }
        let source = sourceLink.map { Int(links[Int($0.value)].client) } ?? -1
        if let observer {
            let text = binary ? BinarySignal.text(frame) ?? frame : frame
            guard observer.world(self, relayWillForward: text, from: source, to: client, link: link) else { return }
        }
        record(.relayForward, client: source, link: link, value: UInt64(client))
        transmit(binary ? .binary(frame) : .text(frame), on: link, toRelay: false)
    }

    /// The planted shell bug: a connection of the next room that the relay holds.
    private func strayLink(from link: LinkID) -> LinkID? {
        let room = Int(links[Int(link.value)].client) / RoomCode.peersMax
        let next = (room + 1) % max(1, clients.count / RoomCode.peersMax)
        for index in (next * RoomCode.peersMax)..<min(clients.count, (next + 1) * RoomCode.peersMax) {
            if let stray = clients[index].relayLinks.last(where: { links[Int($0.value)].relayOpen }) { return stray }
        }
        return nil
    }

    /// A frame the relay writes to `client` on its newest connection, as if from the peer (a
    /// malicious relay's own words). Lost when the relay holds no connection of the client.
    public func relayInject(_ bytes: [UInt8], to client: Int) {
        guard relayUp, let link = clients[client].relayLinks.last(where: { links[Int($0.value)].relayOpen }) else {
            counters.framesLost += 1
            return
        }
        transmit(.text(bytes), on: link, toRelay: false)
    }

    private func relayWrite(_ frame: WireFrame, to id: ConnectionID) {
        guard let link = relayLinks[id] else { return }
        transmit(frame, on: link, toRelay: false)
    }

    private func relayClose(_ id: ConnectionID, code: CloseCode, error: RelayErrorCode?, disconnect: Bool) {
        guard let link = relayLinks[id] else { return }
        record(.relayClose, client: Int(links[Int(link.value)].client), link: link, value: UInt64(code.rawValue))
        if let error { relaySend(.error(code: error, message: error.defaultMessage), to: id) }
        transmit(.close, on: link, toRelay: false)
        // The engine let go of the connection (its room seat too) when it decided to close it,
        // before the socket is gone.
        observer?.world(self, relayClosed: link, client: Int(links[Int(link.value)].client))
        if disconnect { disconnectAtRelay(id, link) }
    }

    private func resumeReading(_ id: ConnectionID) {
        guard let link = relayLinks[id] else { return }
        links[Int(link.value)].readPaused = false
        record(.relayResume, client: Int(links[Int(link.value)].client), link: link)
        deliverWaiting(id, link)
    }

    /// What waited in the socket buffer goes in, in order, until the relay pauses again.
    func deliverWaiting(_ id: ConnectionID, _ link: LinkID) {
        // Bounded by the frames waiting.
        while !links[Int(link.value)].readPaused, relayLinks[id] != nil,
            !buffers[Int(link.value)].waitingAtRelay.isEmpty
        {
            let frame = buffers[Int(link.value)].waitingAtRelay.removeFirst()
            deliverToRelay(frame, id, link)
        }
    }

    // MARK: Writability (the relay's outbound queue)

    /// The relay wrote to `link`: above the high watermark it is no longer writable.
    func relayQueueGrew(_ link: LinkID) {
        let state = links[Int(link.value)]
        guard !state.toldUnwritable, state.bytesToClient > relay.limits.outboundQueueHighBytes,
            let id = relayEnd(link)
        else { return }
        links[Int(link.value)].toldUnwritable = true
        relay.writabilityChanged(id, isWritable: false, now: now)
        performRelayActions()
    }

    /// Bytes toward the client left the queue: below the low watermark it is writable again.
    func relayQueueDrained(_ link: LinkID) {
        let state = links[Int(link.value)]
        guard state.toldUnwritable, state.bytesToClient < relay.limits.outboundQueueLowBytes else { return }
        links[Int(link.value)].toldUnwritable = false
        guard let id = relayEnd(link) else { return }
        relay.writabilityChanged(id, isWritable: true, now: now)
        drainRelay()
    }
}

extension World {
    /// The bytes a client sent and the relay has not read changed by `delta`: over the high
    /// watermark the client's shell says the link is unwritable, under the low one writable again
    /// (as NIO's channel writability does), its driver told through the queue like any event.
    func clientBytesUnread(_ link: LinkID, changedBy delta: Int) {
        guard let mark = configuration.clientWatermark else { return }
        let index = Int(link.value)
        links[index].bytesFromClient += delta
        if !links[index].clientOverMark, links[index].bytesFromClient > mark.high {
            links[index].clientOverMark = true
            counters.linksOverMark += 1
            queue.schedule(at: now, .clientWritable(link, false))
        } else if links[index].clientOverMark, links[index].bytesFromClient < mark.low {
            links[index].clientOverMark = false
            queue.schedule(at: now, .clientWritable(link, true))
        }
    }
}
