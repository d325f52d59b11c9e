import ChatCore
import RelayCore

/// Sessions wired in memory to one `RelayRooms`, on a hand-driven clock.
///
/// Frames move in FIFO order. `tap` sees every frame the relay sends to a client and returns what
/// is actually delivered (nothing to drop it, several to duplicate it, altered bytes to tamper).
final class InMemoryChat {
    var rooms = RelayRooms<Int>()
    private(set) var sessions: [SessionManager] = []
    private(set) var now = Instant.zero
    private(set) var transportUp: [Bool] = []
    /// Every output each session produced, in order.
    private(set) var log: [[SessionOutput]] = []
    var tap: ((_ to: Int, _ frame: [UInt8]) -> [[UInt8]])?
    private var queue: [(toRelay: Bool, connection: Int, frame: [UInt8])] = []

    static let room = try! RoomCode("ROOM1")

    @discardableResult
    func addSession(
        room: RoomCode = InMemoryChat.room, password: String? = nil, connect: Bool = true,
        entropy: any EntropySource = SystemEntropy()
    ) -> Int {
        let secret = password.map { try! Password($0) }  // Test passwords are valid.
        defer { secret?.wipe() }
        let session = SessionManager(
            configuration: SessionConfiguration(room: room), password: secret, entropy: entropy)
        sessions.append(session)
        transportUp.append(false)
        log.append([])
        let index = sessions.count - 1
        if connect { self.connect(index) }
        return index
    }

    func connect(_ index: Int) {
        transportUp[index] = true
        sessions[index].handle(.transportUp, now: now)
        run()
    }

    func disconnect(_ index: Int) {
        transportUp[index] = false
        sessions[index].handle(.transportDown, now: now)
        for action in rooms.disconnect(index) { perform(action, frame: []) }
        run()
    }

    @discardableResult
    func send(_ index: Int, _ text: String) -> Result<MessageID, SendRefusal> {
        let result = sessions[index].send(text, now: now)
        run()
        return result
    }

    /// Deliver a raw frame from the relay to a client, bypassing the tap.
    func inject(_ frame: [UInt8], to index: Int) {
        sessions[index].handle(.frame(frame), now: now)
        run()
    }

    /// Advance the clock, firing due timers, in steps of at most `step`.
    func advance(by duration: Duration, step: Duration = .milliseconds(50)) {
        let end = now.advanced(by: duration)
        var iterations = 0
        while now < end {
            iterations += 1
            precondition(iterations < 1_000_000)
            now = min(end, now.advanced(by: step))
            for session in sessions {
                if let due = session.pollTimeout(), due <= now { session.handleTimeout(now: now) }
            }
            run()
        }
    }

    /// Move frames until nothing is left to move (bounded).
    func run() {
        var steps = 0
        while true {
            steps += 1
            precondition(steps < 100_000, "in-memory chat did not settle")
            collectOutputs()
            guard !queue.isEmpty else { return }
            let item = queue.removeFirst()
            if item.toRelay {
                guard transportUp[item.connection] else { continue }
                for action in rooms.receive(frame: item.frame, from: item.connection) {
                    perform(action, frame: item.frame)
                }
            } else {
                guard transportUp[item.connection] else { continue }
                sessions[item.connection].handle(.frame(item.frame), now: now)
            }
        }
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
            for output in session.drainOutputs() {
                log[index].append(output)
                if case let .transmit(frame) = output, transportUp[index] {
                    queue.append((true, index, frame))
                }
            }
        }
    }

    // MARK: Queries

    func received(_ index: Int) -> [String] {
        log[index].compactMap { if case let .received(message) = $0 { message.text } else { nil } }
    }

    func delivered(_ index: Int) -> [MessageID] {
        log[index].flatMap { output -> [MessageID] in if case let .delivered(ids) = output { ids } else { [] } }
    }

    func undeliverable(_ index: Int) -> [MessageID] {
        log[index].flatMap { output -> [MessageID] in
            if case let .undeliverable(ids, _) = output { ids } else { [] }
        }
    }

    func rejections(_ index: Int) -> [FrameRejection] {
        log[index].compactMap { if case let .notice(.frameRejected(rejection)) = $0 { rejection } else { nil } }
    }

    func states(_ index: Int) -> [SessionState] {
        log[index].compactMap { if case let .stateChanged(_, to) = $0 { to } else { nil } }
    }

    func ended(_ index: Int) -> [SessionEndReason] {
        log[index].compactMap { if case let .notice(.ended(reason)) = $0 { reason } else { nil } }
    }

    /// The SIGNAL kinds a session transmitted, in order, each with the state it was in.
    func transmittedKinds(_ index: Int) -> [(kind: SignalKind, state: SessionState)] {
        var state = SessionState.initial
        var kinds: [(SignalKind, SessionState)] = []
        for output in log[index] {
            switch output {
            case let .stateChanged(_, to): state = to
            case let .transmit(frame):
                if case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) { kinds.append((signal.kind, state)) }
            default: break
            }
        }
        return kinds
    }

    /// Whether a frame is a SIGNAL of `kind`.
    static func isSignal(_ frame: [UInt8], _ kind: SignalKind) -> Bool {
        if case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame) { return signal.kind == kind }
        return false
    }
}
