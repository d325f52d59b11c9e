@_spi(Simulation) @_spi(Testing) import ChatCore
import ClientCore

/// The client side: what a client shell does (start the process, feed it lines, open and close
/// connections, pass frames both ways) and nothing it decides.
extension World {
    // MARK: Processes and users

    /// Start a process in `client`'s slot (the first, or a new one after a crash): a fresh
    /// `ClientDriver` with its own entropy, which announces itself and connects.
    public func startProcess(_ index: Int) {
        let client = clients[index]
        guard client.driver == nil || client.exitStatus != nil else { return }
        if client.started { client.incarnation += 1 }
        client.started = true
        client.exitStatus = nil
        client.inputEnded = false
        client.links.removeAll()
        client.armedTimer = nil
        let entropy = SeededEntropy(
            seed: configuration.seed, stream: .entropy,
            index: UInt64(index) << 16 | UInt64(UInt32(bitPattern: client.incarnation)))
        let driver = ClientDriver(
            configuration: client.driverConfiguration, password: client.password, entropy: entropy,
            fileStore: client.fileStore)
        driver.session.plantedBugs = configuration.sessionPlantedBugs
        client.driver = driver
        record(.clientStart, client: index, value: UInt64(client.incarnation))
        handle(.start, at: client)
    }

    /// The user of `client` types a line (pipe mode: a message).
    public func type(_ text: String, at index: Int) {
        guard clients[index].isRunning else { return }
        handle(.line(text), at: clients[index])
        if configuration.plantedBugs.contains(.leakTypedText), let id = clients[index].links.last?.id {
            let leak = WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: Array(text.utf8))))
            observer?.world(self, clientSent: leak, client: index)
            sendFromClient(clients[index], id, .text(leak))
        }
        if configuration.plantedBugs.contains(.leakSessionKey), let id = clients[index].links.last?.id,
            let key = clients[index].driver?.session.heldRecordKeysForTesting().first
        {
            let leak = WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: key)))
            observer?.world(self, clientSent: leak, client: index)
            sendFromClient(clients[index], id, .text(leak))
        }
    }

    /// The user's input ends (pipe mode: the client drains, then leaves).
    public func endInput(at index: Int) {
        guard clients[index].isRunning else { return }
        record(.userEndsInput, client: index)
        clients[index].inputEnded = true
        handle(.endOfInput, at: clients[index])
    }

    /// Hand `client`'s process any event, as its shell would (a test's stale connection event, a
    /// signal, an unreadable line).
    public func handle(_ event: ClientEvent, at index: Int) {
        handle(event, at: clients[index])
    }

    func handle(_ event: ClientEvent, at client: WorldClient) {
        guard let driver = client.driver, client.exitStatus == nil else { return }
        driver.handle(event, now: now)
        drainClient(client)
    }

    // MARK: The driver's actions

    /// Carry out everything the driver asked for, in order; then re-arm its timer.
    func drainClient(_ client: WorldClient) {
        guard let driver = client.driver else { return }
        defer { flushHeldMessage(at: client) }
        // Bounded: the driver produces a finite batch per input.
        while let action = driver.pollAction() {
            if case .display(.message) = action {} else { flushHeldMessage(at: client) }
            switch action {
            case let .connect(id): connect(client, id)
            case let .send(id, bytes):
                if overMark(client, id) { continue }
                if configuration.plantedBugs.contains(.dropFileAcks), isFileAck(bytes) { continue }
                observer?.world(self, clientSent: bytes, client: client.index)
                sendFromClient(client, id, .text(bytes))
            case let .sendFileSignal(id, bytes, binary):
                // Never dropped over the mark: the driver's window bounds chunks.
                let text = binary ? BinarySignal.text(bytes) ?? [] : bytes
                if case let .signal(signal)? = try? WireCodec.decodeClientMessage(text) {
                    overMarkKinds.insert(signal.kind.rawValue)
                }
                observer?.world(self, clientSent: text, client: client.index)
                sendFromClient(client, id, binary ? .binary(bytes) : .text(bytes))
            case let .sendBinary(id, bytes):
                if overMark(client, id) { continue }
                // The shell's planted bug and the observers see the text form.
                let text = BinarySignal.text(bytes) ?? []
                if configuration.plantedBugs.contains(.dropFileAcks), isFileAck(text) { continue }
                observer?.world(self, clientSent: text, client: client.index)
                sendFromClient(client, id, .binary(bytes))
            case let .ping(id):
                client.pingsSent += 1
                sendFromClient(client, id, .ping([]))
            case let .pong(id, payload): sendFromClient(client, id, .pong(payload))
            case let .close(id): closeFromClient(client, id)
            case let .display(event): display(event, at: client)
            case let .exit(status): exit(client, status)
            }
        }
        if leavesEarly(client) {
            driver.handle(.signal(ClientEvent.interruptSignal), now: now)
            drainClient(client)  // Once: the driver has exited after the interrupt.
            return
        }
        armClientTimer(client)
    }

    private func isFileAck(_ bytes: [UInt8]) -> Bool {
        guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(bytes) else { return false }
        return signal.kind == .fileAck
    }

    /// The planted `leaveWhenOwnConfirmed`: the shell interrupts a process whose input ended as
    /// soon as nothing of its own is pending.
    private func leavesEarly(_ client: WorldClient) -> Bool {
        guard configuration.plantedBugs.contains(.leaveWhenOwnConfirmed), client.inputEnded,
            client.exitStatus == nil, let driver = client.driver
        else { return false }
        return driver.session.pendingCount == 0
    }

    private func connect(_ client: WorldClient, _ id: ConnectionID) {
        let link = LinkID(UInt32(links.count))
        links.append(Link(client: Int32(client.index), incarnation: client.incarnation, clientID: id))
        buffers.append(LinkBuffers())
        client.links.append((id, link))
        counters.connections += 1
        record(.connectAttempt, client: client.index, link: link)
        if let failure = connectFailure {
            client.links.removeAll { $0.link == link }
            links[Int(link.value)].clientOpen = false
            handle(.transportFailed(id, failure), at: client)
            return
        }
        if client.cutUntil > now {
            return  // Lost on the way: the driver's connect timeout notices.
        }
        // A cluster's client picks a node when its connect arrives (`clusterStep`).
        let arrives = relayUp || isCluster
        queue.schedule(after: faults.oneWayDelay(), arrives ? .connectArrives(link) : .connectRefused(link))
    }

    /// The shell drops a frame written while its link is over the watermark (`ClientWatermark`),
    /// but a file chunk (`.sendFileSignal`): the session retransmits what it sent.
    private func overMark(_ client: WorldClient, _ id: ConnectionID) -> Bool {
        guard let link = client.link(for: id), links[Int(link.value)].clientOverMark else { return false }
        counters.framesDroppedOverMark += 1
        return true
    }

    /// The shell's report that `link` crossed a watermark reaches the driver that opened it.
    func clientWritable(_ link: LinkID, _ writable: Bool) {
        guard let client = clientEnd(link), links[Int(link.value)].clientUp else { return }
        handle(.transportWritable(links[Int(link.value)].clientID, writable), at: client)
    }

    func sendFromClient(_ client: WorldClient, _ id: ConnectionID, _ frame: WireFrame) {
        guard let link = client.link(for: id), links[Int(link.value)].clientUp else { return }
        transmit(frame, on: link, toRelay: true)
    }

    /// The driver closes a connection: the closing handshake's close frame goes out behind what it
    /// sent before, and the relay learns of the close when it arrives.
    private func closeFromClient(_ client: WorldClient, _ id: ConnectionID) {
        guard let link = client.link(for: id) else { return }
        client.links.removeAll { $0.link == link }
        links[Int(link.value)].clientOpen = false
        guard !links[Int(link.value)].broken else { return }
        links[Int(link.value)].closedByClientFrame = true
        // After anything already in flight (frames take at most `delayMax`), as TCP keeps order.
        queue.schedule(after: closeDelay, .relaySeesClose(link))
    }

    private func display(_ event: DisplayEvent, at client: WorldClient) {
        if case .state(.connected, .disconnected) = event, configuration.plantedBugs.contains(.misreportTransition) {
            show(.state(from: .connected, to: .searching), at: client)
            return
        }
        if case let .file(.progress(info, direction, bytes), savedAs) = event,
            configuration.plantedBugs.contains(.progressIn16Bits)
        {
            show(.file(.progress(info, direction, bytes: bytes & 0xFFFF), savedAs: savedAs), at: client)
            return
        }
        if case let .message(message) = event, !configuration.plantedBugs.isEmpty {
            for shown in plantedDisplay(message, at: client) { show(.message(shown), at: client) }
            return
        }
        show(event, at: client)
    }

    private func show(_ event: DisplayEvent, at client: WorldClient) {
        switch event {
        case let .state(from, to): record(.stateChanged, client: client.index, value: UInt64(from.ordinal) << 8 | UInt64(to.ordinal))
        case let .message(message): record(.received, client: client.index, value: message.sequence)
        case let .sent(sent, _): record(.queued, client: client.index, value: sent.id.value)
        case .refused: record(.refused, client: client.index)
        case let .delivered(ids): record(.delivered, client: client.index, value: UInt64(ids.count))
        case let .undeliverable(lost, _): record(.undeliverable, client: client.index, value: UInt64(lost.count))
        default: break
        }
        observer?.world(self, client: client.index, displays: event)
    }

    /// The planted display bugs: what a broken display shows of a delivered message.
    private func plantedDisplay(_ message: IncomingMessage, at client: WorldClient) -> [IncomingMessage] {
        if configuration.plantedBugs.contains(.hideEveryFourthMessage) && message.sequence % 4 == 0 { return [] }
        guard configuration.plantedBugs.contains(.swapMessages) else { return [message] }
        // Two messages shown by one input (a gap that filled) come out swapped.
        if let held = heldMessage[client.index] {
            heldMessage[client.index] = nil
            return [message, held]
        }
        heldMessage[client.index] = message
        return []
    }

    /// A message the swapping display held back is shown when its input's batch ends.
    private func flushHeldMessage(at client: WorldClient) {
        guard let held = heldMessage[client.index] else { return }
        heldMessage[client.index] = nil
        show(.message(held), at: client)
    }

    /// The process exits: its sockets close with it.
    private func exit(_ client: WorldClient, _ status: ClientExitStatus) {
        client.exitStatus = status
        record(.exited, client: client.index, value: UInt64(status.code))
        closeAllLinks(of: client)
        (client.fileStore as? InMemoryFileStore)?.processEnded()
        observer?.world(self, client: client.index, exited: status)
    }

    /// Every link the process holds closes (an exit or a crash): the relay learns of each.
    func closeAllLinks(of client: WorldClient) {
        for (_, link) in client.links {
            links[Int(link.value)].clientOpen = false
            if !links[Int(link.value)].broken {
                queue.schedule(after: closeDelay, .relaySeesClose(link))
            }
        }
        client.links.removeAll()
        client.armedTimer = nil
    }

    // MARK: Connection events at the client

    /// The link's client end is the current process's and still open (and, unless
    /// `evenIfBroken`, not broken: a broken link still delivers the news of its end).
    private func clientEnd(_ link: LinkID, evenIfBroken: Bool = false) -> WorldClient? {
        let state = links[Int(link.value)]
        let client = clients[Int(state.client)]
        guard state.clientOpen, evenIfBroken || !state.broken, client.isRunning,
            client.incarnation == state.incarnation
        else { return nil }
        return client
    }

    func upgradeArrives(_ link: LinkID) {
        if isSquatterLink(link) { return squatterUp(link) }
        guard let client = clientEnd(link), client.cutUntil <= now else { return }
        links[Int(link.value)].clientUp = true
        record(.linkUp, client: client.index, link: link)
        handle(.transportUp(links[Int(link.value)].clientID), at: client)
        if links[Int(link.value)].binarySignals {
            handle(.transportBinarySignals(links[Int(link.value)].clientID), at: client)
        }
    }

    func connectRefused(_ link: LinkID) {
        if isSquatterLink(link) { return squatterSeesClose(link) }
        guard let client = clientEnd(link) else { return }
        links[Int(link.value)].clientOpen = false
        client.links.removeAll { $0.link == link }
        counters.connectFailures += 1
        record(.connectFailed, client: client.index, link: link)
        let failure = TransportFailure(reason: "connection refused", permanent: false)
        handle(.transportFailed(links[Int(link.value)].clientID, failure), at: client)
    }

    func frameArrivesAtClient(_ link: LinkID, _ frame: WireFrame) {
        links[Int(link.value)].bytesToClient -= frame.byteCount
        relayQueueDrained(link)
        if isSquatterLink(link) { return squatterReceives(link, frame) }
        let state = links[Int(link.value)]
        guard let client = clientEnd(link), client.cutUntil <= now else {
            counters.framesLost += 1
            record(.frameLost, client: Int(state.client), link: link, value: UInt64(frame.byteCount))
            return
        }
        let id = state.clientID
        switch frame {
        case let .text(bytes):
            record(.frameAtClient, client: client.index, link: link, value: UInt64(bytes.count))
            trace.mixBytes(bytes)
            handle(.transportFrame(id, bytes), at: client)
        case let .binary(bytes):
            record(.frameAtClient, client: client.index, link: link, value: UInt64(bytes.count))
            trace.mixBytes(bytes)
            handle(.transportBinaryFrame(id, bytes), at: client)
        case let .ping(payload): handle(.transportPing(id, payload), at: client)
        case .pong: handle(.transportPong(id), at: client)
        case .close:
            // The shell answers the relay's close frame and the connection ends (RFC 6455 §5.5.1).
            clientSeesClose(link)
        }
    }

    func clientSeesClose(_ link: LinkID) {
        if isSquatterLink(link) { return squatterSeesClose(link) }
        guard let client = clientEnd(link, evenIfBroken: true) else {
            links[Int(link.value)].clientOpen = false
            return
        }
        links[Int(link.value)].clientOpen = false
        client.links.removeAll { $0.link == link }
        record(.clientSeesClose, client: client.index, link: link)
        if links[Int(link.value)].relayOpen {
            queue.schedule(after: faults.oneWayDelay(), .relaySeesClose(link))
        }
        handle(.transportClosed(links[Int(link.value)].clientID, reason: "closed"), at: client)
    }
}

extension SessionState {
    /// Position in `allCases` (declaration order), for tables and compact trace records.
    public var ordinal: Int {
        switch self {
        case .initial: 0
        case .searching: 1
        case .userFound: 2
        case .keySetup: 3
        case .connected: 4
        case .disconnected: 5
        case .destroyed: 6
        }
    }
}

extension World {
    /// A terminating signal reaches `client`'s process (SIGTERM is 15): it leaves as on `/quit`.
    public func signal(_ number: Int32, at index: Int) {
        guard clients[index].isRunning else { return }
        handle(.signal(number), at: clients[index])
    }
}
