import ChatTesting
import ChatCore
@_spi(Simulation) @testable import RelayCore

/// A `RelayEngine<[UInt8]>` on a hand-driven clock, with helpers to connect, join and send, and
/// to drain the actions each step produced.
struct EngineHarness {
    typealias Action = RelayAction<[UInt8]>

    var engine: RelayEngine<[UInt8]>
    /// An arbitrary origin far from zero, so nothing depends on the clock starting at 0.
    private(set) var now = Instant(nanoseconds: 1_000_000_000_000)
    let start: Instant

    init(_ configure: (inout RelayLimits) -> Void = { _ in }) throws {
        var limits = RelayLimits()
        configure(&limits)
        start = now
        engine = try RelayEngine(limits: limits, now: now, entropy: SeededEntropy(seed: 14))
    }

    private init(engine: RelayEngine<[UInt8]>, now: Instant) {
        self.engine = engine
        self.now = now
        start = now
    }

    /// A cluster node's engine (`clusterNode` its identity), Redis reported available.
    static func cluster(_ node: String = "n1.00000001", _ configure: (inout RelayLimits) -> Void = { _ in }) throws
        -> EngineHarness
    {
        var limits = RelayLimits()
        configure(&limits)
        let now = Instant(nanoseconds: 1_000_000_000_000)
        var harness = EngineHarness(
            engine: try RelayEngine(limits: limits, now: now, entropy: SeededEntropy(seed: 14), clusterNode: node),
            now: now)
        harness.engine.clusterAvailabilityChanged(true, now: now)
        return harness
    }

    /// An engine over limits that skip validation (the simulator's planted-bug hook).
    static func unchecked(_ configure: (inout RelayLimits) -> Void) -> EngineHarness {
        var limits = RelayLimits()
        configure(&limits)
        let now = Instant(nanoseconds: 1_000_000_000_000)
        return EngineHarness(
            engine: RelayEngine(uncheckedLimits: limits, now: now, entropy: SeededEntropy(seed: 14)), now: now)
    }

    /// The reconnect token each connection was last given in a JOINED.
    private(set) var tokens: [ConnectionID: ReconnectToken] = [:]

    /// Every action queued so far, in order, with each JOINED's reconnect token noted in `tokens`
    /// and left out (`.joined(room:peers:)`), so that tests of everything else need not know the
    /// seeded tokens. `rawActions()` keeps them.
    mutating func actions() -> [Action] {
        rawActions().map { action in
            guard case let .send(id, .joinedWithToken(room, peers, token)) = action else { return action }
            tokens[id] = token
            return .send(id, .joined(room: room, peers: peers))
        }
    }

    /// Every action queued so far, in order, as the engine produced them.
    mutating func rawActions() -> [Action] {
        var drained: [Action] = []
        while let action = engine.nextAction() { drained.append(action) }
        return drained
    }

    /// Move the clock forward by `duration`, firing every timer at its own deadline on the way,
    /// as an event loop would.
    mutating func advance(_ duration: Duration) {
        let target = now.advanced(by: duration)
        // Bounded: each call fires at least the earliest timer, and the sweep moves forward a second.
        for _ in 0..<100_000 {
            guard let deadline = engine.pollTimeout(), deadline <= target else { break }
            now = max(now, deadline)
            engine.handleTimeout(now: now)
        }
        now = target
    }

    mutating func accept(_ address: RelayAddress = .ipv4(0x0A00_0001)) -> Acceptance {
        engine.accept(from: address, now: now)
    }

    /// Accept and upgrade a connection that admission serves; `binary`: it negotiated binary
    /// SIGNALs (`securechat.binary`).
    mutating func connect(_ address: RelayAddress = .ipv4(0x0A00_0001), binary: Bool = false) -> ConnectionID {
        let acceptance = accept(address)
        precondition(acceptance.disposition == .serve, "admission did not serve \(address)")
        engine.upgraded(acceptance.id, binarySignals: binary, now: now)
        return acceptance.id
    }

    mutating func send(_ bytes: [UInt8], from id: ConnectionID) {
        engine.receive(.text(bytes), from: id, now: now)
    }

    mutating func join(_ id: ConnectionID, _ room: String, token: ReconnectToken? = nil) {
        send(WireCodec.encodeJoin(try! RoomCode(room), token: token), from: id)
    }

    /// Two connections (from two addresses) joined to `room`; the actions so far are drained.
    mutating func pair(_ room: String = "ROOM1") -> (ConnectionID, ConnectionID) {
        let first = connect(.ipv4(0x0A00_0001))
        let second = connect(.ipv4(0x0A00_0002))
        join(first, room)
        join(second, room)
        _ = actions()
        return (first, second)
    }

    static func signal(_ marker: UInt8, payloadBytes: Int = 1) -> [UInt8] {
        let payload = [UInt8](repeating: marker, count: payloadBytes)
        return WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: payload)))
    }

    /// `count` arbitrary bytes (a binary frame's payload).
    static func bytes(_ count: Int) -> [UInt8] {
        [UInt8](repeating: 0x5A, count: count)
    }

    /// A binary SIGNAL (kind MSG) of `payloadBytes` bytes of `marker`, and its text form.
    static func binarySignal(_ marker: UInt8, payloadBytes: Int = 1) -> [UInt8] {
        BinarySignal.encode(Signal(kind: .message, payload: [UInt8](repeating: marker, count: payloadBytes)))!
    }

    static func error(_ code: RelayErrorCode) -> RelayMessage {
        .error(code: code, message: code.defaultMessage)
    }
}
