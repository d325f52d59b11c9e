import ChatCore
import RelayCore

/// Sessions wired in memory to one `RelayRooms`, on a hand-driven clock: the testing world one
/// level below `World`, for what concerns the session protocol alone (no client driver, no relay
/// policy, no faults unless a test makes them through `tap`). The session unit tests and the
/// session benchmarks both run on it.
///
/// Frames move in FIFO order. `tap` sees every frame the relay sends to a client and returns what
/// is actually delivered (nothing to drop it, several to duplicate it, altered bytes to tamper).
public final class SessionRoom {
    public var rooms = RelayRooms<Int>()
    public private(set) var sessions: [SessionManager] = []
    public private(set) var now = Instant.zero
    public private(set) var transportUp: [Bool] = []
    /// Every output each session produced, in order (empty when built with `keepsLog: false`).
    public private(set) var log: [[SessionOutput]] = []
    /// Messages each session received (counted even without the log).
    public private(set) var receivedCounts: [Int] = []
    public var tap: ((_ to: Int, _ frame: [UInt8]) -> [[UInt8]])?
    private let keepsLog: Bool
    private var queue: [(toRelay: Bool, connection: Int, frame: [UInt8])] = []
    private var queueHead = 0

    public static let room = try! RoomCode("ROOM1")
    /// Frames moved per `run()` at most: far more than any exchange a test or benchmark makes.
    static let stepsMax = 100_000

    /// `keepsLog`: false for a benchmark, whose outputs would otherwise accumulate for ever.
    public init(keepsLog: Bool = true) {
        self.keepsLog = keepsLog
    }

    @discardableResult
    public func addSession(
        room: RoomCode = SessionRoom.room, password: String? = nil, connect: Bool = true,
        entropy: any EntropySource = SystemEntropy()
    ) -> Int {
        let secret = password.map { try! Password($0) }  // Test passwords are valid.
        defer { secret?.wipe() }
        let session = SessionManager(
            configuration: SessionConfiguration(room: room), password: secret, entropy: entropy)
        sessions.append(session)
        transportUp.append(false)
        log.append([])
        receivedCounts.append(0)
        let index = sessions.count - 1
        if connect { self.connect(index) }
        return index
    }

    public func connect(_ index: Int) {
        transportUp[index] = true
        sessions[index].handle(.transportUp, now: now)
        run()
    }

    public func disconnect(_ index: Int) {
        transportUp[index] = false
        sessions[index].handle(.transportDown, now: now)
        for action in rooms.disconnect(index) { perform(action, frame: []) }
        run()
    }

    @discardableResult
    public func send(_ index: Int, _ text: String) -> Result<MessageID, SendRefusal> {
        let result = sessions[index].send(text, now: now)
        run()
        return result
    }

    /// Deliver a raw frame from the relay to a client, bypassing the tap.
    public func inject(_ frame: [UInt8], to index: Int) {
        sessions[index].handle(.frame(frame), now: now)
        run()
    }

    /// Advance the clock, firing due timers, in steps of at most `step`.
    public func advance(by duration: Duration, step: Duration = .milliseconds(50)) {
        let end = now.advanced(by: duration)
        var iterations = 0
        while now < end {
            iterations += 1
            precondition(iterations < 1_000_000, "a test advanced the clock by more than a million steps")
            now = min(end, now.advanced(by: step))
            for session in sessions {
                if let due = session.pollTimeout(), due <= now { session.handleTimeout(now: now) }
            }
            run()
        }
    }

    /// Move frames until nothing is left to move (bounded).
    public func run() {
        for _ in 0..<Self.stepsMax {
            collectOutputs()
            guard queueHead < queue.count else {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
                return
            }
            let item = queue[queueHead]
            queueHead += 1
            guard transportUp[item.connection] else { continue }
            if item.toRelay {
                for action in rooms.receive(frame: item.frame, from: item.connection) {
                    perform(action, frame: item.frame)
                }
            } else {
                sessions[item.connection].handle(.frame(item.frame), now: now)
            }
        }
        preconditionFailure("the in-memory sessions did not settle within \(Self.stepsMax) frames")
    }

    private func perform(_ action: RelayRooms<Int>.Action, frame: [UInt8]) {
        let (to, bytes): (Int, [UInt8])
        switch action {
        case let .send(connection, message): (to, bytes) = (connection, WireCodec.encode(message))
        case let .forward(connection): (to, bytes) = (connection, frame)
        }
        let delivered = tap?(to, bytes) ?? [bytes]
        for copy in delivered { queue.append((false, to, copy)) }
    }

    private func collectOutputs() {
        for (index, session) in sessions.enumerated() {
            while let output = session.pollOutput() {
                if keepsLog { log[index].append(output) }
                switch output {
                case let .transmit(frame) where transportUp[index]: queue.append((true, index, frame))
                case .received: receivedCounts[index] += 1
                default: break
                }
            }
        }
    }
}

// MARK: Queries

extension SessionRoom {
    public func received(_ index: Int) -> [String] {
        log[index].compactMap { if case let .received(message) = $0 { message.text } else { nil } }
    }

    public func delivered(_ index: Int) -> [MessageID] {
        log[index].flatMap { output -> [MessageID] in if case let .delivered(ids) = output { ids } else { [] } }
    }

    public func undeliverable(_ index: Int) -> [MessageID] {
        log[index].flatMap { output -> [MessageID] in
            if case let .undeliverable(ids, _) = output { ids } else { [] }
        }
    }

    public func rejections(_ index: Int) -> [FrameRejection] {
        log[index].compactMap { if case let .notice(.frameRejected(rejection)) = $0 { rejection } else { nil } }
    }

    public func states(_ index: Int) -> [SessionState] {
        log[index].compactMap { if case let .stateChanged(_, to) = $0 { to } else { nil } }
    }

    public func ended(_ index: Int) -> [SessionEndReason] {
        log[index].compactMap { if case let .notice(.ended(reason)) = $0 { reason } else { nil } }
    }

    /// The SIGNAL kinds a session transmitted, in order, each with the state it was in.
    public func transmittedKinds(_ index: Int) -> [(kind: SignalKind, state: SessionState)] {
        var state = SessionState.initial
        var kinds: [(SignalKind, SessionState)] = []
        for output in log[index] {
            switch output {
            case let .stateChanged(_, to): state = to
            case let .transmit(frame):
                guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) else { continue }
                kinds.append((signal.kind, state))
            default: break
            }
        }
        return kinds
    }

    /// Whether a frame is a SIGNAL of `kind`.
    public static func isSignal(_ frame: [UInt8], _ kind: SignalKind) -> Bool {
        if case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame) { return signal.kind == kind }
        return false
    }
}
