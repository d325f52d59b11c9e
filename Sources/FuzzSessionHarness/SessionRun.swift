import ChatCore
import ChatTesting

/// One `fuzzSession` input: a fresh victim session (the same seeded process every time) driven by
/// a program (`SessionOp`) against the recorded peer and a forging one, with every output checked
/// as it appears (`violations`).
///
/// The oracle, for the one session (the session-level half of `ChatWorldChecker`'s):
/// - every state change starts from the state before it and is legal (`Lifecycle`), and the
///   session's `state` agrees with what its outputs said;
/// - a message is shown only in CONNECTED, only if the peer sent it (a recorded text), at most
///   once and in the order sent;
/// - every message the user typed and the session accepted is numbered 1, 2, 3 …, and is
///   delivered or undeliverable at most once, only after being accepted, and meanwhile pending:
///   the session's pending list is exactly the accepted ones not yet resolved, within the cap;
/// - every frame it sends is one the relay accepts, canonical, sent in a state that allows it,
///   and carries no plaintext of any message (`SecretScanner`);
/// - and no trap from any of it (the fuzzer's own oracle).
public final class SessionRun {
    public let fixture: SessionFixture
    public let victim: SessionManager
    public private(set) var now = Instant.zero
    public private(set) var violations: [String] = []
    /// Every frame the victim refused, in order (bounded).
    public internal(set) var rejections: [FrameRejection] = []
    /// Called with a line per operation and output when set (fuzz-explain --verbose).
    public var trace: ((String) -> Void)?

    var state = SessionState.initial
    var cursor = 0
    var lastDelivered: [UInt8]?
    var typed = 0
    var accepted = 0
    var resolved: Set<UInt64> = []
    /// The recorded texts shown, by index: strictly increasing.
    var shownIndex = -1
    /// Every SIGNAL the victim sent (bounded), and its latest opening.
    var sentSignals: [Signal] = []
    var latestOpening: Signal?
    /// This input's forged openings (bounded).
    var forged: [(hello: [UInt8], instance: [UInt8], epoch: UInt64)] = []
    static let remembered = 16

    public init(password: Bool) {
        fixture = SessionFixture.fixture(password: password)
        victim = fixture.makeVictim()
    }

    static func victimText(_ number: Int, body: [UInt8]) -> String {
        Canary.text(client: 0, incarnation: 0, number: number, fillerLength: 0, fillerSeed: 0)
            + String(decoding: body, as: UTF8.self)
    }

    func record(_ problem: String) {
        if violations.count < 16 { violations.append("t=\(now) \(problem)") }
    }

    // MARK: Operations

    public func apply(_ op: SessionOp) {
        trace?("op \(op)")
        switch op {
        case let .deliverPeer(index): deliver(fixture.peerFrames[Int(index) % fixture.peerFrames.count])
        case .deliverNext:
            deliver(fixture.peerFrames[cursor % fixture.peerFrames.count])
            cursor += 1
        case let .send(body): send(body)
        case let .advance(tenths): advance(by: .milliseconds(Int64(tenths) * 100))
        case let .relay(event): relay(event)
        case let .forgeHello(hello): forgeHello(hello)
        case let .forgeConfirm(opening, variant): forgeConfirm(opening: Int(opening), variant: variant)
        case .repeatLast: if let lastDelivered { deliver(lastDelivered) }
        case let .reflect(back):
            guard !sentSignals.isEmpty else { return }
            deliver(WireCodec.encode(RelayMessage.signal(sentSignals[sentSignals.count - 1 - Int(back) % sentSignals.count])))
        case let .tamper(index, position, mask, key):
            tamper(Int(index) % fixture.peerFrames.count, position: Int(position), mask: mask, key: key)
        case let .raw(bytes): deliver(bytes)
        case let .leave(quit): input(quit ? .quit : .leave)
        }
        checkAccounting()
    }

    func deliver(_ frame: [UInt8]) {
        lastDelivered = frame
        input(.frame(frame))
    }

    func input(_ input: SessionInput) {
        victim.handle(input, now: now)
        drain()
    }

    func send(_ body: [UInt8]) {
        let text = Self.victimText(typed, body: body)
        typed += 1
        let result = victim.send(text, now: now)
        if case let .success(id) = result {
            accepted += 1
            if id.value != UInt64(accepted) { record("accepted \(id), expected message \(accepted)") }
        }
        trace?("send → \(result)")
        drain()
    }

    /// Let time pass, firing each timer when due (bounded: a timer that never moves on is a finding).
    func advance(by duration: Duration) {
        let end = now.advanced(by: duration)
        for _ in 0..<256 {
            guard let due = victim.pollTimeout(), due <= end else {
                now = end
                return
            }
            now = max(now, due)
            victim.handleTimeout(now: now)
            drain()
        }
        record("more than 256 timers fired within \(duration)")
        now = end
    }

    /// The relay's frames for `relay` events, encoded once.
    static let relayFrames: [SessionOp.RelayEvent: [UInt8]] = {
        let room = SessionFixture.configuration.room
        return [
            .joinedWithPeer: SessionFixture.joined(peers: 2),
            .joinedAlone: SessionFixture.joined(peers: 1),
            .peerFound: WireCodec.encode(RelayMessage.peerFound),
            .peerLeft: WireCodec.encode(RelayMessage.peerLeft),
            .roomFull: WireCodec.encode(RelayMessage.error(code: .roomFull, message: "room \(room.value) full")),
            .seatReserved: WireCodec.encode(RelayMessage.error(code: .seatReserved, message: "reserved")),
        ]
    }()

    func relay(_ event: SessionOp.RelayEvent) {
        switch event {
        case .transportDown: input(.transportDown)
        case .transportUp: input(.transportUp)
        default: deliver(Self.relayFrames[event]!)  // Every other event has its frame.
        }
    }

    func tamper(_ index: Int, position: Int, mask: UInt8, key: Bool) {
        guard var signal = fixture.peerSignals[index] else { return }
        if key {
            guard var field = signal.key, !field.isEmpty else { return }
            field[position % field.count] ^= mask
            signal.key = field
        } else {
            guard var field = signal.payload, !field.isEmpty else { return }
            field[position % field.count] ^= mask
            signal.payload = field
        }
        deliver(WireCodec.encode(RelayMessage.signal(signal)))
    }
}
