@_spi(Simulation) import ChatCore
@_spi(Simulation) import ChatTesting

/// Which malicious relay `--mitm` runs (`--attack NAME`). `endpoints` plays each client's peer
/// with a session of its own (`Adversary`); the others are the "dumb" attackers of issue 12: they
/// forward the honest peers' traffic and tamper with it, without running the protocol.
public enum MitmAttack: String, CaseIterable, Sendable, Hashable, Codable {
    /// A real `SessionManager` toward every client, with a wrong password guess in password mode.
    case endpoints = "endpoints"
    /// The `key` of every PAKE / KEY_EXCHANGE opening is replaced with another valid element.
    case substituteKeys = "substitute-keys"
    /// Forged restart hellos (the peer's public instance ID, a higher epoch) sent into CONNECTED
    /// pairs.
    case forgedRestart = "forged-restart"
    /// Every KEY_CONFIRM a client sends is also sent back to it.
    case reflectConfirm = "reflect-confirm"
    /// Openings from fresh instances sent into CONNECTED pairs; in password mode the relay also
    /// ends some runs with an ERROR (INVALID_ROOM) once it holds their tags, or before they gave
    /// any, inviting the user to run the code again.
    case freshInstance = "fresh-instance"

    /// The honest peers' SIGNALs pass (tampered with or not), so they may connect to each other.
    var forwardsHonestTraffic: Bool { self != .endpoints }

    /// The attack sends frames of its own on a schedule (`SimEvent.mitmInject`).
    var injects: Bool { self == .forgedRestart || self == .freshInstance }
}

/// The session layer's public wire forms (docs/PROTOCOL.md, "Kinds"), read and written here from
/// the specification rather than through ChatCore's internals, as a second client would.
enum WireForms {
    /// version (1) ‖ instance (16) ‖ epoch (8) ‖ known peer (16) ‖ next expected (8) ‖ n (1).
    static let helloFixedByteCount = 50
    static let referenceByteCount = 24
    /// run id (16) ‖ receiver's opening (24) ‖ sender's opening (24).
    static let confirmHeaderByteCount = 64
    /// A CPace tag: the only 64-byte proof (the others are boxes of 48 or 80 bytes).
    static let tagByteCount = 64

    /// A hello's fields, as far as an attacker uses them.
    struct Hello {
        var instance: [UInt8]
        var epoch: UInt64
        var retainedIDs: [UInt8]

        /// The opening's public name: instance ‖ epoch.
        var reference: [UInt8] { instance + bigEndian(epoch) }
    }

    static func isOpening(_ signal: Signal) -> Bool {
        signal.kind == .pake || signal.kind == .keyExchange
    }

    static func hello(_ signal: Signal) -> Hello? {
        guard isOpening(signal), let payload = signal.payload, payload.count >= helloFixedByteCount else { return nil }
        return Hello(
            instance: Array(payload[1..<17]), epoch: uint64(payload, at: 17),
            retainedIDs: Array(payload[helloFixedByteCount...]))
    }

    /// A hello payload: `knownPeer` zeros means none (then next expected is 1).
    static func helloPayload(
        instance: [UInt8], epoch: UInt64, knownPeer: [UInt8], nextExpected: UInt64, retainedIDs: [UInt8]
    ) -> [UInt8] {
        var bytes: [UInt8] = [3]
        bytes += instance + bigEndian(epoch) + knownPeer + bigEndian(nextExpected)
        bytes.append(UInt8(retainedIDs.count / 16))
        return bytes + retainedIDs
    }

    /// A KEY_CONFIRM's two references (receiver ‖ sender) and whether its proof is a CPace tag.
    static func confirmation(_ signal: Signal) -> (receiver: [UInt8], sender: [UInt8], isTag: Bool)? {
        guard signal.kind == .keyConfirm, let payload = signal.payload, payload.count > confirmHeaderByteCount
        else { return nil }
        return (
            Array(payload[16..<40]), Array(payload[40..<64]),
            payload.count == confirmHeaderByteCount + tagByteCount)
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    static func uint64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        bytes[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }
}

// MARK: The forwarding attacks

extension Adversary {
    private var password: Bool { simulation.settings.password }

    /// A CPace tag from `client` reached the relay: count it (`guess-bound`). The fresh-instance
    /// relay then, now and then, ends a run whose budget it has taken with a relay ERROR (issue
    /// 12's finding 2: before v3 that ended the run quietly and invited the user to run the code
    /// again).
    func tagReceived(receiver: [UInt8], sender: [UInt8], from client: Int) {
        let before = simulation.guesses.total
        if let finding = simulation.guesses.tag(receiver: receiver, sender: sender, from: client) {
            simulation.fail(finding)
        }
        guard simulation.guesses.total > before else { return }
        simulation.counters.relayGuesses += 1
        if attack == .freshInstance, simulation.guesses.tags(of: client, instance: Array(sender.prefix(16)))
            >= GuessCount.perRunMax, random.chance(0.5)
        {
            refuse(client)
        }
    }

    /// A SIGNAL a client sent, as the forwarding attacks see it (the relay forwards it anyway).
    func tamperWithSent(_ signal: Signal, from client: Int) {
        guard attack == .reflectConfirm, signal.kind == .keyConfirm else { return }
        let bytes = WireCodec.encode(RelayMessage.signal(signal))
        simulation.record(.mitmSend, client: client, value: UInt64(bytes.count))
        world.relayInject(bytes, to: client)
    }

    /// The relay is about to forward `frame` to `client`: the key substitution replaces the key of
    /// every opening with another valid one (and forwards that instead).
    func relayWillForward(_ frame: [UInt8], to client: Int) -> Bool {
        switch attack {
        case .endpoints:
            return false
        case .substituteKeys:
            guard case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame),
                let hello = WireForms.hello(signal)
            else { return true }
            let forged = Signal(kind: signal.kind, payload: signal.payload, key: freshKey(room: world.clients[client].room))
            send(forged, reference: hello.reference, to: client)
            return false
        case .forgedRestart, .reflectConfirm, .freshInstance:
            return true
        }
    }

    /// The relay's own messages pass; the fresh-instance relay refuses a client process now and
    /// then at JOINED before it gave any tag (an ERROR that does not spend the code: its user runs
    /// it again).
    func forwardingRelayWillSend(_ message: RelayMessage, to client: Int) -> Bool {
        guard attack == .freshInstance, password, message.joinedRoom != nil, now < simulation.faultPhaseEnd,
            let session = world.clients[client].driver?.session,
            simulation.guesses.tags(of: client, instance: session.localInstance.bytes) == 0,
            random.chance(1.0 / 16)
        else { return true }
        return !refuse(client)
    }

    /// End `client`'s run with a relay ERROR (INVALID_ROOM), once per process.
    @discardableResult
    private func refuse(_ client: Int) -> Bool {
        let incarnation = world.clients[client].incarnation
        guard refusedIncarnation[client] != incarnation else { return false }
        refusedIncarnation[client] = incarnation
        let bytes = WireCodec.encodeError(.invalidRoom)
        simulation.record(.mitmSend, client: client, value: UInt64(bytes.count))
        world.relayInject(bytes, to: client)
        return true
    }

    // MARK: Injections into CONNECTED pairs

    /// The first injection toward every client, at a random moment of the fault phase.
    func scheduleInjections() {
        guard attack.injects else { return }
        let start = simulation.settings.startSpreadMilliseconds * 1_000_000
        let end = simulation.faultPhaseEnd.nanoseconds
        for client in 0..<simulation.settings.peers {
            let at = Instant(nanoseconds: random.inRange(start...max(start, end - 1)))
            world.schedule(SimEvent.mitmInject.rawValue, client: Int32(client), at: at)
        }
    }

    /// Send `client` a forged opening if it is CONNECTED; the next one 1-4 s later, in the fault
    /// phase.
    func inject(_ client: Int) {
        let next = now.advanced(by: .milliseconds(random.inRange(1_000...4_000)))
        if next < simulation.faultPhaseEnd {
            world.schedule(SimEvent.mitmInject.rawValue, client: Int32(client), at: next)
        }
        guard world.clients[client].driver?.session.state == .connected else { return }
        let payload: [UInt8]
        switch attack {
        case .forgedRestart:
            // The peer's public instance and a higher epoch (now and then a huge one), resuming
            // with the client, half the time listing the peer's retained-secret ids (public, but
            // the relay cannot key with them).
            guard let peer = lastHello[world.peer(of: client)], let own = lastHello[client] else { return }
            let epoch = random.chance(0.25) ? UInt64.max - random.below(4) : peer.epoch + 1 + random.below(4)
            payload = WireForms.helloPayload(
                instance: peer.instance, epoch: epoch, knownPeer: own.instance, nextExpected: 1,
                retainedIDs: random.chance(0.5) ? peer.retainedIDs : [])
        default:
            // A new instance, sorting above nearly every client's, so that a client with a
            // handshake already under way answers it at once (the restart rule): the most tags.
            let instance = [0xFF] + (0..<15).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            payload = WireForms.helloPayload(
                instance: instance, epoch: 1 + random.below(4), knownPeer: [UInt8](repeating: 0, count: 16),
                nextExpected: 1, retainedIDs: [])
        }
        let kind: SignalKind = password ? .pake : .keyExchange
        let signal = Signal(kind: kind, payload: payload, key: freshKey(room: world.clients[client].room))
        send(signal, reference: Array(payload[1..<25]), to: client)
    }

    /// Send `client` an opening the relay made or altered, as if from the peer.
    private func send(_ signal: Signal, reference: [UInt8], to client: Int) {
        simulation.guesses.fabricated(reference, toward: client)
        let bytes = WireCodec.encode(RelayMessage.signal(signal))
        simulation.record(.mitmSend, client: client, value: UInt64(bytes.count))
        world.relayInject(bytes, to: client)
    }

    /// A valid key of the run's mode that nobody else holds: a CPace share (for a password the
    /// relay made up) or an X25519 public key, from a throwaway session's opening.
    private func freshKey(room: RoomCode) -> [UInt8] {
        keysMade += 1
        let entropy = SeededEntropy(seed: simulation.settings.seed, stream: .entropy, index: 1 << 47 | keysMade)
        let guess = password ? try! Password("relay-key-\(keysMade)") : nil
        let session = SessionManager(configuration: SessionConfiguration(room: room), password: guess, entropy: entropy)
        guess?.wipe()
        session.handle(.transportUp, now: now)
        session.handle(.frame(WireCodec.encode(RelayMessage.joined(room: room, peers: 2))), now: now)
        for output in session.drainOutputs() {
            if case let .transmit(frame) = output, case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame),
                WireForms.isOpening(signal), let key = signal.key
            {
                return key
            }
        }
        preconditionFailure("a session told of its peer opens a handshake")
    }
}
