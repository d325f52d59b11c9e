@_spi(Testing) import ChatCore
import ChatTesting
import ClientCore

/// The oracle: what the simulation checks as the world runs. It sees what each client's process
/// shows its user (the ledger's input), every frame a client sends (the relay-blind scan), every
/// forward and JOINED the relay makes (only-from-peer, room capacity), and decides at the end.
extension Simulation: WorldObserver {
    public func world(_ world: World, clientSent frame: [UInt8], client: Int) {
        guard violation == nil else { return }
        let room = roomIndex(of: client)
        if let secret = secrets[room].find(in: frame) ?? keyScanners[room]?.find(in: frame) {
            fail(.relayBlind, "client \(client) sent \(secret) to the relay")
        }
    }

    public func world(_ world: World, relayReceives frame: [UInt8], from client: Int) {
        guard client < settings.peers else { return }
        adversary?.intercept(frame, from: client)
    }

    public func world(_ world: World, relayWillSend message: RelayMessage, to client: Int, link: LinkID) -> Bool {
        guard violation == nil else { return false }
        if let (room, _) = message.joinedRoom { joined(client, room: room, link: link) }
        if case let .error(code, _) = message { counters.relayErrors[code.rawValue, default: 0] += 1 }
        guard client < settings.peers else {
            squatterAnswered(message)
            return true
        }
        return adversary?.relayWillSend(message, to: client) ?? true
    }

    public func world(
        _ world: World, relayWillForward frame: [UInt8], from source: Int, to client: Int, link: LinkID
    ) -> Bool {
        guard violation == nil else { return false }
        // The target must be in the sender's room: its peer, or (when the relay has not yet seen
        // the sender's previous connection close) the sender itself, whose old link then drops it.
        guard source >= 0, roomIndex(of: client) == roomIndex(of: source) else {
            fail(
                .onlyFromPeer,
                "the relay forwarded a SIGNAL from client \(source) to client \(client), outside the sender's room")
            return false
        }
        // A squatter that briefly held a seat reads nothing: no attacker plays its peer.
        guard client < settings.peers else { return true }
        return adversary?.relayWillForward(frame, to: client) ?? true
    }

    public func world(_ world: World, relayClosed link: LinkID, client: Int) {
        roomMembers[roomIndex(of: client)].removeAll { $0 == link }
        if world.isCluster { clusterClosed(link, client: client) }
        guard client < settings.peers else { return }
        adversary?.relayClosed(link, client: client)
    }

    public func world(_ world: World, client: Int, exited status: ClientExitStatus) {
        record(.exited, client: client, value: UInt64(status.code))
        if status == .relayRefused { relayRefused(client) }
        if violation == nil && users[client].inputEnded { leaverExited(client, status) }
    }

    /// A process whose input ended exited: what the goodbye promises (`clean-leave`). Exit 0
    /// before the drain deadline means the goodbye finished: nothing of either side may be left
    /// pending. Running into the deadline is allowed only without time to spare.
    private func leaverExited(_ index: Int, _ status: ClientExitStatus) {
        guard let deadline = users[index].drainDeadline else { return }
        let peer = world.peer(of: index)
        let peerClient = world.clients[peer]
        if (status == .success || fileFailuresExplainExit(index, status)) && world.now < deadline {
            if users[index].leaves { counters.leftCleanly += 1 }
            // Only the peer process this one last secured a conversation with can have sent it records.
            let partner = users[index].securedWith.flatMap {
                peerClient.isRunning && $0 == peerClient.incarnation ? $0 : nil
            }
            if let finding = ledger.leftCleanly(
                index, incarnation: world.clients[index].incarnation, peer: peer, peerIncarnation: partner)
            {
                fail(finding)
            }
            return
        }
        guard world.now >= deadline else { return }
        if users[index].leaves { counters.leftAtDeadline += 1 }
        let spare = Duration.milliseconds(settings.leaveSpareMilliseconds)
        guard let healedAt, deadline >= healedAt.advanced(by: spare), peerClient.isRunning else { return }
        fail(
            .cleanLeave,
            "client \(index) ran into its drain deadline \(deadline.duration(since: healedAt).wholeMilliseconds) ms "
                + "after the faults healed (a goodbye takes at most \(settings.leaveSpareMilliseconds) ms then) "
                + "while its peer ran: \(describe(peer))")
    }

    /// The relay said JOINED on `link`: count it against the room's capacity, from what the relay
    /// said rather than from the room logic's own count.
    private func joined(_ client: Int, room: RoomCode, link: LinkID) {
        let index = roomIndex(of: client)
        guard room == world.clients[client].room else {
            fail(.onlyFromPeer, "the relay put client \(client) into room \(room), not \(world.clients[client].room)")
            return
        }
        if world.isCluster { return clusterJoined(client, room: room, link: link) }
        if !roomMembers[index].contains(link) { roomMembers[index].append(link) }
        let held = world.relay.rooms.occupancy(of: room)
        if roomMembers[index].count > RoomCode.peersMax || held > RoomCode.peersMax {
            fail(.roomCapacity, "room \(room) holds \(max(held, roomMembers[index].count)) peers")
        }
    }

    // MARK: What each client shows

    public func world(_ world: World, client index: Int, displays event: DisplayEvent) {
        guard violation == nil else { return }
        switch event {
        case let .state(from, to): stateChanged(index, from: from, to: to)
        case let .message(message): shown(index, message)
        case let .sent(sent, _):
            accepted(index, sent)
            sampleKeys(of: index)
        case .refused: counters.refused += 1
        case let .delivered(ids): delivered(index, ids)
        case let .undeliverable(lost, reason): undeliverable(index, lost, reason)
        case let .notice(notice) where notice.kind == .suspiciousFrame: counters.suspicious += 1
        case let .notice(notice) where notice.kind == .secured || notice.kind == .rekeyed:
            users[index].securedWith = world.clients[world.peer(of: index)].incarnation
        case let .notice(notice) where notice.kind == .codeSpent: users[index].toldCodeSpent = true
        case let .file(event, savedAs): fileDisplayed(event, savedAs: savedAs, client: index)
        default: break
        }
    }

    private func stateChanged(_ index: Int, from: SessionState, to: SessionState) {
        guard from == users[index].observedState, Lifecycle.isLegal(from: from, to: to) else {
            fail(
                .legalTransitions,
                "client \(index) reported \(from) -> \(to) while last seen in \(users[index].observedState)")
            return
        }
        users[index].observedState = to
        if to == .connected && attackerBlocksConnection {
            fail(.authentication, "client \(index) reached CONNECTED with a relay in the middle "
                + (settings.attack == .substituteKeys ? "substituting every key" : "despite the password"))
            return
        }
        switch to {
        case .userFound:
            users[index].userFoundAt = world.now
        case .connected:
            if let start = users[index].userFoundAt { handshakeLatencies.append(world.now.nanoseconds - start.nanoseconds) }
            users[index].userFoundAt = nil
            sampleKeys(of: index)
        default:
            break
        }
    }

    private func accepted(_ index: Int, _ sent: SentMessage) {
        let number = users[index].typing
        // IDs count up from 1; file control records (`--files`) take IDs of their own in between.
        let previous = users[index].ids.last ?? 0
        guard number >= 0, let identity = Canary.parse(sent.text), identity.number == number,
            files == nil ? sent.id.value == previous + 1 : sent.id.value > previous
        else {
            fail(.lossReported, "client \(index) accepted \(sent.id) out of the blue")
            return
        }
        users[index].numbers.append(number)
        users[index].ids.append(sent.id.value)
        if let finding = ledger.accepted(by: index, number: number) { return fail(finding) }
        counters.accepted += 1
    }

    /// The ledger number of a message ID of the client's current process.
    private func number(of id: MessageID, at index: Int) -> Int? {
        let ids = users[index].ids
        // Binary search: the IDs are increasing.
        var low = 0
        var high = ids.count
        while low < high {
            let middle = (low + high) / 2
            if ids[middle] < id.value { low = middle + 1 } else { high = middle }
        }
        guard low < ids.count, ids[low] == id.value else { return nil }
        return users[index].numbers[low]
    }

    private func shown(_ index: Int, _ message: IncomingMessage) {
        guard let identity = Canary.parse(message.text) else {
            fail(.onlyFromPeer, "client \(index) was shown a message nobody sent (\(message.text.utf8.count) bytes)")
            return
        }
        if let finding = ledger.shown(
            identity, to: index, incarnation: world.clients[index].incarnation, peer: world.peer(of: index))
        {
            return fail(finding)
        }
        counters.shown += 1
        let typedAt = ledger.entries[identity.client][identity.number].typedAt
        deliveryLatencies.append(world.now.nanoseconds - typedAt.nanoseconds)
    }

    private func delivered(_ index: Int, _ ids: [MessageID]) {
        for id in ids {
            guard let number = number(of: id, at: index) else {
                fail(.lossReported, "client \(index) was told \(id) was delivered, but never accepted it")
                return
            }
            // With a relay in the middle, the ack comes from the relay's endpoint, which has the session
            // keys: without a password that is the point of the attack, so it is not checked.
            if let finding = ledger.delivered(by: index, number: number, peerIsTrusted: !attackerPlaysPeer) {
                return fail(finding)
            }
            counters.delivered += 1
        }
    }

    private func undeliverable(_ index: Int, _ lost: [SentMessage], _ reason: UndeliverableReason) {
        for message in lost {
            guard let number = number(of: message.id, at: index) else {
                fail(.lossReported, "client \(index) was told \(message.id) is undeliverable, but never accepted it")
                return
            }
            if let finding = ledger.undeliverable(by: index, number: number) { return fail(finding) }
            counters.undeliverable[reason.causeName, default: 0] += 1
        }
    }
}

extension UndeliverableReason {
    /// A stable cause name for the report.
    var causeName: String {
        switch self {
        case .peerChanged: "peer changed"
        case .sessionEnded: "session ended"
        case .peerLeft: "peer left"
        }
    }
}

/// The relay-blind scan's keys. Searching every frame for every key every session ever held would
/// cost more than the rest of the run, so the scan samples: in one room of `keySampleRoomInterval`
/// (room 0 always), every key a client's session holds for its records when it connects and after
/// each message it sends is searched for in every later frame of that room, the newest
/// `keySampleNeedlesMax` of them at a time.
extension Simulation {
    static let keySampleRoomInterval = 32
    static let keySampleNeedlesMax = 64

    func sampleKeys(of client: Int) {
        let room = roomIndex(of: client)
        guard room % Self.keySampleRoomInterval == 0, let session = world.clients[client].driver?.session else {
            return
        }
        let keys = session.heldRecordKeysForTesting()
        // In place: the room's scanner is not copied for each sample.
        if keyScanners[room].map({ $0.count + keys.count > Self.keySampleNeedlesMax }) ?? true {
            keyScanners[room] = SecretScanner()
        }
        for key in keys where key.contains(where: { $0 != 0 }) {
            keyScanners[room]?.add(key, name: "a session key of room \(room)")
        }
    }
}

extension Simulation {
    /// What the relay told a squatter: a seat (only if one freed while its JOIN was on the way) or
    /// a refusal.
    func squatterAnswered(_ message: RelayMessage) {
        switch message {
        case .joined, .joinedWithToken: counters.squatsSeated += 1
        case .error(.roomFull, _), .error(.seatReserved, _): counters.squatsRefused += 1
        default: break
        }
    }
}
