import ChatTesting
import ChatCore
import RelayCore
import Testing

@testable import ClientCore

/// Two real sessions and the real room logic over links with Tor's latency (issue 17: "Tor adds
/// seconds"), on a virtual clock: each client's path to the relay takes `oneWay` each way, so a
/// message between the peers crosses two such paths. The links are TCP (nothing is lost), so
/// every retransmission is spurious: traffic the slow path did not need.
final class SlowLinkChat {
    var rooms = RelayRooms<Int>()
    let sessions: [SessionManager]
    private(set) var now = Instant.zero
    let oneWay: Duration
    /// Frames on their way, each with its arrival time (FIFO per direction: one TCP stream each).
    private var inFlight: [(at: Instant, order: Int, toRelay: Bool, connection: Int, frame: [UInt8])] = []
    private var order = 0
    /// What each client sent, decoded, in order.
    private(set) var sent: [[ClientMessage]] = [[], []]
    private(set) var outputs: [[SessionOutput]] = [[], []]
    /// When each client first reached CONNECTED.
    private(set) var connectedAt: [Instant?] = [nil, nil]

    init(configuration: SessionConfiguration, oneWay: Duration) {
        self.oneWay = oneWay
        sessions = (0..<2).map { index in
            let password = try! Password("correct horse battery")  // A valid test password.
            defer { password.wipe() }
            return SessionManager(
                configuration: configuration, password: password, entropy: SeededEntropy(seed: UInt64(index + 1)))
        }
        for session in sessions { session.handle(.transportUp, now: now) }
        collect()
    }

    /// Run until `done` holds or `limit` of virtual time has passed; returns whether `done` held.
    @discardableResult
    func run(for limit: Duration, until done: () -> Bool) -> Bool {
        let end = now.advanced(by: limit)
        // Bounded: each round moves the clock to the next event, and events are finite per second.
        for _ in 0..<1_000_000 {
            if done() { return true }
            let timers = sessions.compactMap { $0.pollTimeout() }
            guard let next = (timers + inFlight.map(\.at)).min(), next <= end else { return done() }
            now = max(now, next)
            for session in sessions {
                if let due = session.pollTimeout(), due <= now { session.handleTimeout(now: now) }
            }
            deliverDue()
            collect()
        }
        return done()
    }

    func send(_ index: Int, _ text: String) {
        _ = sessions[index].send(text, now: now)
        collect()
    }

    func delivered(_ index: Int) -> Int {
        outputs[index].reduce(0) { count, output in
            if case let .delivered(ids) = output { count + ids.count } else { count }
        }
    }

    func joins(_ index: Int) -> Int {
        sent[index].count { if case .join = $0 { true } else { false } }
    }

    func signals(_ index: Int, _ kinds: Set<SignalKind>) -> Int {
        sent[index].count { if case let .signal(signal) = $0 { kinds.contains(signal.kind) } else { false } }
    }

    private func deliverDue() {
        inFlight.sort { ($0.at, $0.order) < ($1.at, $1.order) }
        while let first = inFlight.first, first.at <= now {
            inFlight.removeFirst()
            if first.toRelay {
                for action in rooms.receive(frame: first.frame, from: first.connection) {
                    switch action {
                    case let .send(to, message): schedule(toRelay: false, to, WireCodec.encode(message))
                    case let .forward(to): schedule(toRelay: false, to, first.frame)
                    }
                }
            } else {
                sessions[first.connection].handle(.frame(first.frame), now: now)
            }
            collect()
        }
    }

    private func schedule(toRelay: Bool, _ connection: Int, _ frame: [UInt8]) {
        order += 1
        inFlight.append((now.advanced(by: oneWay), order, toRelay, connection, frame))
    }

    private func collect() {
        for (index, session) in sessions.enumerated() {
            for output in session.drainOutputs() {
                outputs[index].append(output)
                switch output {
                case let .transmit(frame):
                    if let message = try? WireCodec.decodeClientMessage(frame) { sent[index].append(message) }
                    schedule(toRelay: true, index, frame)
                case .stateChanged(_, to: .connected):
                    if connectedAt[index] == nil { connectedAt[index] = now }
                default: break
                }
            }
        }
    }
}

@Suite("Tor's latency: the session's timers through a proxy")
struct ProxyLatencyTests {
    static let base = SessionConfiguration(room: try! RoomCode("ROOM1"))
    static let tor = RelayRoute.tor(endpoint: "127.0.0.1:9050")
    static let handshakeKinds: Set<SignalKind> = [.pake, .keyExchange, .keyConfirm]

    /// The driver's session configuration for `route` (what ClientDriver runs its session with).
    static func sessionConfiguration(_ route: RelayRoute) -> SessionConfiguration {
        DriverConfiguration(session: base, interactive: false, route: route).session
    }

    /// Connect two peers over `oneWay`, then each sends three messages; what each sent.
    static func conversation(_ configuration: SessionConfiguration, oneWay: Duration) -> SlowLinkChat {
        let chat = SlowLinkChat(configuration: configuration, oneWay: oneWay)
        let connected = chat.run(for: .seconds(120)) { chat.sessions.allSatisfy { $0.state == .connected } }
        #expect(connected, "not connected within 120 s at \(oneWay) each way")
        for index in 0..<2 {
            for number in 1...3 { chat.send(index, "message \(number)") }
        }
        let delivered = chat.run(for: .seconds(120)) { chat.delivered(0) == 3 && chat.delivered(1) == 3 }
        #expect(delivered, "not delivered within 120 s at \(oneWay) each way")
        return chat
    }

    @Test("Through a proxy, round trips of 1 to 3 s to the relay: one JOIN, no handshake frame or message sent twice, as on a fast link")
    func noSpuriousRetransmissions() {
        let fast = Self.conversation(Self.base, oneWay: .milliseconds(5))
        for oneWay in [Duration.milliseconds(500), .milliseconds(1_000), .milliseconds(1_500)] {
            let chat = Self.conversation(Self.sessionConfiguration(Self.tor), oneWay: oneWay)
            for index in 0..<2 {
                #expect(chat.joins(index) == 1, "\(oneWay): \(chat.joins(index)) JOINs")
                #expect(chat.signals(index, Self.handshakeKinds) == fast.signals(index, Self.handshakeKinds),
                        "\(oneWay): handshake frames resent")
                #expect(chat.signals(index, [.message]) == 3, "\(oneWay): messages resent")
                #expect(chat.sessions[index].statistics.retransmissions == 0)
                // Connected after the minimum exchange: JOIN, then the handshake over two paths.
                let connected = chat.connectedAt[index].map { $0.duration(since: .zero) }
                #expect(connected.map { $0 <= oneWay * 14 } == true,
                        "\(oneWay): connected at \(String(describing: connected))")
            }
        }
    }

    @Test("The same links with the direct route's timers resend (what the proxied timers are for)")
    func directTimersResendOverTor() {
        let chat = Self.conversation(Self.base, oneWay: .milliseconds(1_500))
        let fast = Self.conversation(Self.base, oneWay: .milliseconds(5))
        let extra = (0..<2).map { index in
            chat.joins(index) - 1 + chat.signals(index, Self.handshakeKinds) - fast.signals(index, Self.handshakeKinds)
                + chat.signals(index, [.message]) - 3
        }
        #expect(extra.allSatisfy { $0 > 0 }, "extra frames per client: \(extra)")
    }

    @Test("The route's timers: direct unchanged; through a proxy JOIN waits 4 s, handshake and messages 7 s, the goodbye 10 s, within the session's rules")
    func proxiedTimers() {
        let direct = Self.sessionConfiguration(.direct)
        #expect(direct.joinRetransmitInitial == Self.base.joinRetransmitInitial)
        #expect(direct.handshakeRetransmitInitial == Self.base.handshakeRetransmitInitial)
        #expect(direct.messageRetransmitInitial == Self.base.messageRetransmitInitial)
        #expect(DriverConfiguration(session: Self.base, interactive: true).goodbyeTimeout == .seconds(5))
        for route in [Self.tor, RelayRoute.proxy(endpoint: "127.0.0.1:1080")] {
            let proxied = Self.sessionConfiguration(route)
            #expect(proxied.joinRetransmitInitial == .seconds(4))
            #expect(proxied.handshakeRetransmitInitial == .seconds(7))
            #expect(proxied.messageRetransmitInitial == .seconds(7))
            #expect(proxied.retransmitMax >= .seconds(7) && proxied.handshakeTimeout > proxied.retransmitMax)
            let driver = DriverConfiguration(session: Self.base, interactive: true, route: route)
            #expect(driver.goodbyeTimeout == .seconds(10))
        }
    }
}
