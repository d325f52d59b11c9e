@_spi(Simulation) import ChatCore
@_spi(Simulation) import ChatTesting

/// A relay in the middle (`--mitm`): it keeps the real relay (JOIN, JOINED, ROOM_FULL, its limits)
/// but plays each client's peer itself, with an endpoint of its own toward every client: a real
/// `SessionManager`, with a guessed password when the rooms have one (always wrong), which
/// believes it is alone in the client's room with the client.
///
/// Every SIGNAL a client sends goes to its endpoint (the real peer never sees it); the endpoint's
/// SIGNALs go to the client as if from the peer; the client is told the peer is here as soon as it
/// joins, and never that the real peer left. An endpoint whose session ends (its authentication
/// failed) is replaced at once by a fresh one with a new guess, up to `generationsMax` times per
/// client: a persistent attacker. Records an endpoint decrypts are counted, and so are the CPace
/// tags it receives (each tests one guess).
///
/// The other attacks (`MitmAttack`, `Attacks.swift`) forward the honest peers' traffic and tamper
/// with it instead.
final class Adversary {
    unowned let simulation: Simulation
    let attack: MitmAttack
    private var endpoints: [Endpoint?]
    static let generationsMax = 64
    /// The forwarding attacks' own choices (when to inject, what to forge).
    var random: Xoshiro256
    /// Each client's latest opening the relay saw (its public instance, epoch and retained ids).
    var lastHello: [WireForms.Hello?]
    /// Valid keys made so far (each from a throwaway session of its own).
    var keysMade: UInt64 = 0
    /// The client process (incarnation) the relay already refused once with an ERROR.
    var refusedIncarnation: [Int32]

    final class Endpoint {
        let session: SessionManager
        let generation: Int
        var armedTimer: Instant?

        init(session: SessionManager, generation: Int) {
            self.session = session
            self.generation = generation
        }
    }

    init(simulation: Simulation, attack: MitmAttack) {
        self.simulation = simulation
        self.attack = attack
        random = Xoshiro256(seed: simulation.settings.seed, stream: .planted, index: 1)
        endpoints = (0..<simulation.settings.peers).map { _ in nil }
        lastHello = endpoints.map { _ in nil }
        refusedIncarnation = endpoints.map { _ in -1 }
        guard attack == .endpoints else { return }
        for index in endpoints.indices { endpoints[index] = makeEndpoint(for: index, generation: 0) }
    }

    var world: World { simulation.world }
    var now: Instant { simulation.world.now }

    private func makeEndpoint(for index: Int, generation: Int) -> Endpoint {
        let entropy = SeededEntropy(
            seed: simulation.settings.seed, stream: .entropy, index: 1 << 48 | UInt64(index) << 16 | UInt64(generation))
        // A guess that can never be right: generated codes have only letters in their words.
        let guess = simulation.settings.password ? try! Password("relay-guess-\(index)-\(generation)") : nil
        let room = world.clients[index].room
        let session = SessionManager(configuration: SessionConfiguration(room: room), password: guess, entropy: entropy)
        // A relay that knows the clients' planted bug exploits it.
        session.plantedBugs = world.configuration.sessionPlantedBugs
        guess?.wipe()
        session.handle(.transportUp, now: now)
        session.handle(.frame(WireCodec.encode(RelayMessage.joined(room: room, peers: 1))), now: now)
        _ = session.drainOutputs()  // Its JOIN and state changes: nothing to deliver.
        return Endpoint(session: session, generation: generation)
    }

    // MARK: What the relay sees and says

    /// A frame from `client` reached the relay: a SIGNAL goes to the client's endpoint.
    func intercept(_ frame: [UInt8], from client: Int) {
        guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) else { return }
        simulation.record(.mitmIntercept, client: client, value: UInt64(frame.count))
        if let hello = WireForms.hello(signal) { lastHello[client] = hello }
        if let confirmation = WireForms.confirmation(signal), confirmation.isTag {
            tagReceived(receiver: confirmation.receiver, sender: confirmation.sender, from: client)
        }
        guard attack == .endpoints else { return tamperWithSent(signal, from: client) }
        guard let endpoint = endpoints[client] else { return }
        feed(.frame(WireCodec.encode(RelayMessage.signal(signal))), to: endpoint, client: client)
    }

    /// The relay's own messages: its endpoint answers for the peer, so the peer's departure and the
    /// relay's "no peer" are not the client's business. A JOINED lets the endpoint find the client.
    func relayWillSend(_ message: RelayMessage, to client: Int) -> Bool {
        guard attack == .endpoints else { return forwardingRelayWillSend(message, to: client) }
        switch message {
        case .peerLeft, .error(.noPeer, _):
            return false
        case .joined, .joinedWithToken:
            if let peers = message.joinedRoom?.peers, peers < RoomCode.peersMax {
                simulation.record(.mitmSend, client: client)
                world.relayInject(WireCodec.encode(RelayMessage.peerFound), to: client)
            }
            endpointFindsPeer(client)
            return true
        default:
            return true
        }
    }

    /// `client`'s connection at the relay closed: with none left, its endpoint's "peer" left.
    func relayClosed(_ link: LinkID, client: Int) {
        guard !world.relayHolds(client), let endpoint = endpoints[client] else { return }
        feed(.frame(WireCodec.encode(RelayMessage.peerLeft)), to: endpoint, client: client)
    }

    /// Every connection is gone with the relay.
    func relayCrashed() {
        for index in endpoints.indices {
            if let endpoint = endpoints[index] {
                feed(.frame(WireCodec.encode(RelayMessage.peerLeft)), to: endpoint, client: index)
            }
        }
    }

    private func endpointFindsPeer(_ client: Int) {
        guard let endpoint = endpoints[client] else { return }
        feed(.frame(WireCodec.encode(RelayMessage.peerFound)), to: endpoint, client: client)
    }

    // MARK: The endpoints

    func timer(_ client: Int) {
        guard let endpoint = endpoints[client], endpoint.armedTimer == now else { return }
        endpoint.armedTimer = nil
        simulation.record(.mitmTimer, client: client)
        endpoint.session.handleTimeout(now: now)
        drain(endpoint, client: client)
    }

    private func feed(_ input: SessionInput, to endpoint: Endpoint, client: Int) {
        endpoint.session.handle(input, now: now)
        drain(endpoint, client: client)
    }

    /// Act on the endpoint's outputs: its SIGNALs go to the client as if from the peer; a record it
    /// decrypts is counted (the relay read it); when it ends, a fresh one takes its place.
    private func drain(_ endpoint: Endpoint, client: Int) {
        var ended = false
        for output in endpoint.session.drainOutputs() {
            switch output {
            case let .transmit(frame):
                guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) else { continue }
                if let hello = WireForms.hello(signal) { simulation.guesses.fabricated(hello.reference, toward: client) }
                let bytes = WireCodec.encode(RelayMessage.signal(signal))
                simulation.record(.mitmSend, client: client, value: UInt64(bytes.count))
                world.relayInject(bytes, to: client)
            case .received:
                simulation.counters.relayDecrypted += 1
                simulation.record(.mitmDecrypted, client: client)
                if simulation.settings.password {
                    simulation.fail(
                        .authentication, "the relay decrypted a record from client \(client) despite the password")
                }
            case .notice(.ended):
                ended = true
            default:
                break
            }
        }
        if ended {
            replace(endpoint, client: client)
        } else {
            arm(endpoint, client: client)
        }
    }

    private func replace(_ endpoint: Endpoint, client: Int) {
        endpoints[client] = nil
        guard endpoint.generation + 1 < Self.generationsMax else { return }
        simulation.record(.mitmRespawn, client: client, value: UInt64(endpoint.generation + 1))
        endpoints[client] = makeEndpoint(for: client, generation: endpoint.generation + 1)
        if world.relayHolds(client) { endpointFindsPeer(client) }
    }

    private func arm(_ endpoint: Endpoint, client: Int) {
        guard let due = endpoint.session.pollTimeout() else {
            endpoint.armedTimer = nil
            return
        }
        let at = max(due, now)
        guard at != endpoint.armedTimer else { return }
        endpoint.armedTimer = at
        world.schedule(SimEvent.mitmTimer.rawValue, client: Int32(client), at: at)
    }
}
