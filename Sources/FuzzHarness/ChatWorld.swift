@_spi(Testing) import ChatCore
import ChatTesting
import ClientCore
import RelayCore

/// Two chat processes and the relay in ChatTesting's `World`, with a held network: the fuzzer (or
/// a property test) moves every frame itself, one step at a time (`WorldStep`), and every output
/// is checked as it appears.
///
/// The processes are the shipped `ClientDriver`s in pipe mode (every line a message), with a
/// reconnect backoff of 1 ms so that a reconnect is one short `advance` away; the relay is the
/// shipped `RelayEngine`. Honest steps keep each connection's FIFO order and only fail whole
/// connections; adversarial steps (drop, duplicate, reorder, tamper, truncate, inject, replay) act
/// like a hostile relay or network. `ChatWorldChecker` checks the invariants after every output;
/// liveness (`heal()`) is only owed to honest runs.
public final class ChatWorld {
    public struct Configuration: Sendable {
        public var session: SessionConfiguration
        /// Deliveries one `settle()` may take before the network counts as not settling.
        public var settleDeliveriesMax: Int
        /// Frames kept for replay steps.
        public var historyMax: Int
        /// The password both processes (and every restarted one) use; nil: no password (X25519
        /// and safety numbers).
        public var password: String?

        public init(session: SessionConfiguration, settleDeliveriesMax: Int = 8192, historyMax: Int = 64,
                    password: String? = nil) {
            self.session = session
            self.settleDeliveriesMax = settleDeliveriesMax
            self.historyMax = historyMax
            self.password = password
        }

        /// Small queues and windows, so that fuzz inputs reach every bound quickly.
        public static let small = Configuration(session: SessionConfiguration(
            room: RoomCode.simulated(0), sendQueueMax: 16, inFlightMax: 4, reorderBufferMax: 4,
            messageTextMaxBytes: 128))

        /// `small` with a password: the handshakes are CPace.
        public static let smallWithPassword: Configuration = {
            var configuration = small
            configuration.password = "oyster-lemon"
            return configuration
        }()
    }

    public let configuration: Configuration
    public let world: World
    let checker: ChatWorldChecker
    /// Frames seen on the relay → client links, for replays (bounded).
    public private(set) var history: [[UInt8]] = []
    /// Called with a line for every event, frame and output, when set (triage; see
    /// `fuzz-explain --verbose`).
    public var trace: ((String) -> Void)? {
        get { world.trace.lineHandler }
        set { world.trace.lineHandler = newValue }
    }
    /// The exact text of the last `send`.
    public private(set) var lastSentText = ""
    private var password: Password?

    /// SIGTERM's number on Linux: `quit` ends a process as a terminal's kill would.
    static let terminationSignal: Int32 = 15

    public init(configuration: Configuration = .small) {
        self.configuration = configuration
        password = configuration.password.map { try! Password($0) }  // A valid test password.
        let session = configuration.session
        let password = password
        var world = WorldConfiguration(
            clients: RoomCode.peersMax, seed: 0x5EED, faults: NetworkFaults(
                delayMicroseconds: 0...0, random: Xoshiro256(seed: 0x5EED, stream: .network)),
            driver: { _ in
                DriverConfiguration(
                    session: session, interactive: false, connectTimeout: .seconds(5),
                    reconnectInitialDelay: .milliseconds(1), reconnectMaximumDelay: .milliseconds(1),
                    giveUpAfter: .seconds(3600))
            },
            password: { _ in password })
        world.faults.held = true
        checker = ChatWorldChecker(configuration: configuration)
        self.world = World(configuration: world, trace: try! Trace(tailCapacity: 1, filePath: nil))
        self.world.observer = checker
        checker.world = self.world
        for side in 0..<RoomCode.peersMax { self.world.startProcess(side) }
    }

    deinit {
        password?.wipe()
    }

    /// Every broken invariant, in the order found.
    public var violations: [String] { checker.violations }
    /// Set by any adversarial step; liveness is not owed after one.
    public var isAdversarial: Bool { checker.isAdversarial }
    public var now: Instant { world.now }

    /// What each side's process is and has shown.
    public var processes: [PeerView] {
        (0..<RoomCode.peersMax).map { PeerView(side: $0, world: world, checker: checker) }
    }

    // MARK: Honest steps

    /// Let side `side` reconnect if its connection is down (its backoff is 1 ms).
    public func transportUp(_ side: Int) {
        world.advance(by: .milliseconds(2))
        check()
    }

    /// The connection of side `side` breaks; both ends notice.
    public func transportDown(_ side: Int) {
        world.reset(side)
        world.advance(by: .zero)
        check()
    }

    /// Side `side` goes offline: its link is cut and its connection breaks; it stays down, trying
    /// in vain to reconnect, until `reconnect`.
    public func disconnect(_ side: Int) {
        world.cut(side, for: .seconds(3600))
        transportDown(side)
    }

    /// Side `side` comes back online: its link works again and, within its connect timeout and one
    /// backoff, it reconnects.
    public func reconnect(_ side: Int) {
        world.restore(side)
        advance(by: .seconds(5) + .milliseconds(3))
    }

    /// The user on side `side` types `body`, tagged with a canary that names the message; `empty`
    /// types an empty line.
    public func send(_ side: Int, _ body: [UInt8], empty: Bool = false) {
        let text = empty ? "" : checker.nextText(side: side, body: body)
        lastSentText = text
        checker.typing(text, side: side)
        world.type(text, at: side)
        checker.typed(side: side)
        check()
    }

    /// The user on side `side` quits (SIGTERM: the same path as `/quit`).
    public func quit(_ side: Int) {
        world.signal(Self.terminationSignal, at: side)
        world.advance(by: .zero)
        check()
    }

    /// The process on side `side` dies and a new one starts (fresh instance and keys).
    public func restart(_ side: Int) {
        checker.crashed(side: side)
        world.crashProcess(side)
        world.startProcess(side)
        check()
    }

    /// Let virtual time pass, running every timer when it is due.
    public func advance(by duration: Duration) {
        world.advance(by: duration)
        check()
    }

    /// Deliver the oldest frame on side `side`'s client → relay link.
    public func deliverUp(_ side: Int) {
        world.deliverHeld(side, .toRelay)
        check()
    }

    /// Deliver the oldest frame on side `side`'s relay → client link.
    public func deliverDown(_ side: Int) {
        if let frame = world.heldTexts(side, .toClient).first { remember(frame) }
        world.deliverHeld(side, .toClient)
        check()
    }

    /// Deliver everything in flight, links taken in turn, until nothing moves.
    public func settle() {
        for side in 0..<RoomCode.peersMax { for frame in world.heldTexts(side, .toClient) { remember(frame) } }
        if !world.settle(deliveriesMax: configuration.settleDeliveriesMax) {
            checker.record("the network did not settle after \(configuration.settleDeliveriesMax) deliveries")
        }
        check()
    }

    /// Heal every fault and check liveness: two live sides must reach CONNECTED with nothing
    /// pending within `rounds` seconds of virtual time. Only for honest runs.
    public func heal(rounds: Int = 60) {
        precondition(!isAdversarial, "liveness is not owed after adversarial steps")
        guard world.clients.allSatisfy({ $0.isRunning }) else { return }
        for _ in 0..<rounds {
            settle()
            // A side that ended (its failure already judged by the checker) owes nothing more.
            guard world.clients.allSatisfy({ $0.isRunning }) else { return }
            if isQuiescentAndConnected {
                checker.checkSafetyNumbersMatch()
                return
            }
            advance(by: .seconds(1))
        }
        settle()
        if world.clients.allSatisfy({ $0.isRunning }) && !isQuiescentAndConnected {
            let summary = processes.map { "\($0.session.state) pending \($0.session.pendingCount)" }
            checker.record("liveness: after healing, not both CONNECTED with nothing pending: \(summary)")
        }
    }

    /// Whether both sides are CONNECTED with nothing pending and nothing in flight.
    public var isQuiescentAndConnected: Bool {
        processes.allSatisfy { $0.session.state == .connected && $0.session.pendingCount == 0 && $0.framesInFlight == 0 }
    }

    private func remember(_ frame: [UInt8]) {
        if history.count == configuration.historyMax { history.removeFirst() }
        history.append(frame)
    }

    private func check() {
        checker.checkAccounting()
    }
}

/// One side's process as the fuzz world shows it.
public struct PeerView {
    public let side: Int
    let world: World
    let checker: ChatWorldChecker

    /// The process's session (its current one, after a restart the new one's).
    public var session: SessionManager { world.clients[side].driver!.session }
    /// Which process this is: changes with every restart.
    public var instance: Int { Int(world.clients[side].incarnation) }
    /// Texts this process showed, in order.
    public var shown: [String] { checker.sides[side].shown }
    /// (text, "delivered" or "undeliverable(reason)") in the order this process reported them.
    public var outcomes: [(text: String, outcome: String)] { checker.sides[side].outcomes }
    /// Frames in flight on this side's links.
    public var framesInFlight: Int { world.heldCount(side, .toRelay) + world.heldCount(side, .toClient) }
}
