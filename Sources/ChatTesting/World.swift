@_spi(Simulation) import ChatCore
import ClientCore
@_spi(Simulation) import RelayCore

/// The one testing world: N client processes and a relay, wired through an in-memory network with
/// faults, on a virtual clock (TigerBeetle's `src/testing/`, swift-nio's `NIOEmbedded`).
///
/// The clients are the shipped `ClientDriver` (reconnect policy, keepalive, drain, exit status, and
/// the `SessionManager` inside it); the relay is the shipped `RelayEngine` (admission, rate limits,
/// RATE_LIMITED holding, idle timeout, backpressure, the room logic). What the world supplies is
/// only what the binaries' shells supply: it moves frames, reports connections opening and closing
/// and the relay's outbound queue crossing its watermarks, and runs timers when they are due. The
/// clock, the network (`NetworkFaults`) and the entropy (`SeededEntropy`) are simulated; nothing
/// else is.
///
/// A scenario (the simulator, the fuzz harness, a test) drives it: it schedules its own events
/// (`schedule(_:at:)` with `.scenario`), types, crashes and cuts through the methods below, runs
/// `step()` until it is done, and watches through a `WorldObserver`. Everything is ordered by
/// (virtual time, scheduling order) and every random choice comes from the seed, so a run
/// replays exactly.
public final class World {
    public let configuration: WorldConfiguration
    public var queue: EventQueue<WorldEvent>
    public var now: Instant { queue.now }
    public private(set) var clients: [WorldClient]
    var links: [Link] = []
    var buffers: [LinkBuffers] = []
    public var faults: NetworkFaults
    /// Every connect fails with this (an untrusted certificate, say), while set.
    public var connectFailure: TransportFailure?
    public weak var observer: (any WorldObserver)?
    /// With a held network: sees every text frame as it is delivered (`client`, the direction) and
    /// returns what arrives instead — nothing to drop it, several to duplicate it, other bytes to
    /// tamper with it. A test's hostile network.
    public var heldTap: ((_ client: Int, _ direction: Direction, _ frame: [UInt8]) -> [[UInt8]])?
    public internal(set) var counters = WorldCounters()
    /// The kinds of the binary SIGNALs clients sent as `.sendFileSignal`, which a real shell queues
    /// over its watermark: only chunks may go that way (`ClientAction.sendFileSignal`).
    public internal(set) var overMarkKinds: Set<String> = []
    /// Draws for the planted shell bugs.
    var plantedRandom: Xoshiro256
    /// Messages a client's display held back (the `swapMessages` planted bug), by client.
    var heldMessage: [IncomingMessage?] = []
    /// Every event, frame and decision, for the trace hash and a failure's tail.
    public let trace: Trace

    /// The relay process now (a crash replaces it with a fresh one), and whether it is up.
    public internal(set) var relay: RelayEngine<[UInt8]>
    public internal(set) var relayUp = true
    /// The relay process is stopped (SIGSTOP): it reads, writes and times out nothing; connects
    /// hang and closes wait until it is thawed.
    public internal(set) var relayFrozen = false
    var frozenConnects: [LinkID] = []
    var frozenCloses: [LinkID] = []
    var relayGeneration: Int32 = 0
    /// The relay's connections, by its name for them (this generation only).
    var relayLinks = RelayConnectionTable()
    var relayArmedTimer: Instant?
    /// The connection whose input the relay is handling (the source of a forwarded SIGNAL).
    var relaySource: LinkID?
    /// The cluster's nodes and Redis (`World+Cluster.swift`); nil: a single relay.
    var cluster: VirtualCluster?

    public init(configuration: WorldConfiguration, trace: Trace) {
        self.configuration = configuration
        self.faults = configuration.faults
        self.connectFailure = configuration.connectFailure
        self.trace = trace
        queue = EventQueue()
        plantedRandom = Xoshiro256(seed: configuration.seed, stream: .planted)
        relay = Self.makeRelay(configuration, now: .zero, process: 0)
        clients = []
        for index in 0..<configuration.clients {
            let room = RoomCode.simulated(index / RoomCode.peersMax)
            addClient(room: room, driver: configuration.driver(room),
                      password: configuration.password(index / RoomCode.peersMax))
        }
        if let cluster = configuration.cluster, cluster.nodes > 1 { startCluster(cluster) }
    }

    /// A client slot more, in `room` (any number may share a room: the relay decides who gets in),
    /// whose processes run with `driver` and `password`. Start its process with `startProcess`.
    @discardableResult
    public func addClient(room: RoomCode, driver: DriverConfiguration, password: Password?) -> Int {
        let index = clients.count
        // 10.0.0.0/8, one address each: the relay's per-address limits see separate hosts.
        let address = RelayAddress.ipv4(0x0A00_0000 | UInt32(truncatingIfNeeded: index + 1))
        clients.append(WorldClient(index: index, room: room, address: address, driver: driver, password: password))
        heldMessage.append(nil)
        return index
    }

    static func makeRelay(
        _ configuration: WorldConfiguration, now: Instant, process: UInt64
    ) -> RelayEngine<[UInt8]> {
        let entropy = SeededEntropy(seed: configuration.seed, stream: .relay, index: process)
        if configuration.uncheckedRelayLimits {
            return RelayEngine(uncheckedLimits: configuration.relayLimits, now: now, entropy: entropy)
        }
        do {
            return try RelayEngine(limits: configuration.relayLimits, now: now, entropy: entropy)
        } catch {
            preconditionFailure("the world's relay limits are invalid: \(error)")
        }
    }

    /// The other client of `client`'s room, in the simulator's layout (clients 2k and 2k+1 share
    /// room k).
    public func peer(of client: Int) -> Int { client ^ 1 }

    /// Whether the relay holds an open connection of `client` (this relay process).
    public func relayHolds(_ client: Int) -> Bool {
        clients[client].relayLinks.contains { links[Int($0.value)].relayOpen }
    }

    // MARK: Running

    /// Schedule a scenario event.
    public func schedule(_ kind: UInt8, client: Int32 = -1, at time: Instant) {
        queue.schedule(at: time, .scenario(kind: kind, client: client))
    }

    /// Handle the next event. Returns a scenario event for the caller to handle, `.none` when the
    /// world handled it, or nil when nothing is left. `stale`: a timer that had been superseded.
    public func step() -> StepResult? {
        guard let event = queue.pop() else { return nil }
        if cluster != nil { return clusterStep(event) }
        switch event {
        case let .scenario(kind, client): return .scenario(kind: kind, client: client)
        case let .clientTimer(client): return clientTimer(Int(client)) ? .handled : .stale
        case .relayTimer: return relayTimer() ? .handled : .stale
        case let .connectArrives(link): connectArrives(link)
        case let .upgradeArrives(link): upgradeArrives(link)
        case let .connectRefused(link): connectRefused(link)
        case let .toRelay(link, frame): frameArrivesAtRelay(link, frame)
        case let .toClient(link, frame): frameArrivesAtClient(link, frame)
        case let .relaySeesClose(link): relaySeesClose(link)
        case let .clientSeesClose(link): clientSeesClose(link)
        case let .clientWritable(link, writable): clientWritable(link, writable)
        case .cluster: return .stale
        }
        return .handled
    }

    /// What `step()` did.
    public enum StepResult: Equatable, Sendable {
        case handled
        case stale
        case scenario(kind: UInt8, client: Int32)
    }

    @inline(__always)
    func record(_ kind: TraceKind, client: Int = -1, link: LinkID? = nil, value: UInt64 = 0) {
        trace.record(
            kind, time: now.nanoseconds, client: Int32(truncatingIfNeeded: client),
            connection: link.map { UInt64($0.value) + 1 } ?? 0, value: value)
    }

    // MARK: Timers

    func clientTimer(_ index: Int) -> Bool {
        let client = clients[index]
        guard let driver = client.driver, client.armedTimer == now else { return false }
        client.armedTimer = nil
        record(.clientTimer, client: index)
        driver.handleTimeout(now: now)
        drainClient(client)
        return true
    }

    private func relayTimer() -> Bool {
        guard relayUp, !relayFrozen, relayArmedTimer == now else { return false }
        relayArmedTimer = nil
        record(.relayTimer)
        relay.handleTimeout(now: now)
        drainRelay()
        return true
    }

    func armClientTimer(_ client: WorldClient) {
        guard let driver = client.driver, let due = driver.pollTimeout() else {
            client.armedTimer = nil
            return
        }
        let at = max(due, now)
        guard at != client.armedTimer else { return }
        client.armedTimer = at
        queue.schedule(at: at, .clientTimer(client: Int32(client.index)))
    }

    func armRelayTimer() {
        guard relayUp, let due = relay.pollTimeout() else {
            relayArmedTimer = nil
            return
        }
        let at = max(due, now)
        guard at != relayArmedTimer else { return }
        relayArmedTimer = at
        queue.schedule(at: at, clusterTimerEvent ?? .relayTimer)
    }
}
