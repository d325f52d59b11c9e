import ChatCore

/// What crosses a virtual WebSocket connection: the frames the two shells exchange.
public enum WireFrame: Sendable {
    /// A text frame (every protocol message).
    case text([UInt8])
    /// A binary frame (a binary SIGNAL, on a connection that negotiated them).
    case binary([UInt8])
    /// A ping and its payload.
    case ping([UInt8])
    /// A pong and its payload.
    case pong([UInt8])
    /// A close frame (the WebSocket closing handshake).
    case close

    /// A text frame's bytes, or a binary SIGNAL's text form (what a test's tap or tamperer reads);
    /// nil for anything else.
    public var textForm: [UInt8]? {
        switch self {
        case let .text(bytes): bytes
        case let .binary(bytes): BinarySignal.text(bytes)
        case .ping, .pong, .close: nil
        }
    }

    /// `text` (from `textForm`, perhaps altered) in this frame's form: binary if this one is and
    /// `text` is still a SIGNAL that has a binary form, text otherwise (a relay and a client accept
    /// a text SIGNAL on any connection).
    public func sameForm(_ text: [UInt8]) -> WireFrame {
        if case .binary = self, let binary = BinarySignal.binary(fromText: text) { return .binary(binary) }
        return .text(text)
    }

    /// Bytes on the wire, for the relay's writability accounting (payload only).
    public var byteCount: Int {
        switch self {
        case let .text(bytes), let .binary(bytes), let .ping(bytes), let .pong(bytes): bytes.count
        case .close: 2
        }
    }
}

/// Which virtual connection: an index into the world's links, never reused.
public struct LinkID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt32

    @inlinable
    public init(_ value: UInt32) {
        self.value = value
    }

    @inlinable
    public static func < (lhs: LinkID, rhs: LinkID) -> Bool { lhs.value < rhs.value }

    public var description: String { "link\(value)" }
}

/// The network's faults: what happens to each frame on its way.
///
/// Every frame is dropped with probability `drop`, else delivered once or (with probability
/// `duplicate`) twice, each copy after its own one-way delay drawn uniformly from `delay`. Random
/// delays reorder frames: more than TCP would do within a connection, exactly what a hostile relay
/// may do. Connection-level events (a connect, a close reaching the other end) are reliable and
/// take one delay. `active == false` (after a run's heal) keeps the delays and stops every loss.
public struct NetworkFaults: Sendable {
    public var drop: Double
    public var duplicate: Double
    /// One-way delay, microseconds.
    public var delayMicroseconds: ClosedRange<UInt64>
    /// Drops and duplicates happen only while active.
    public var active = true
    /// Frames are not scheduled at all: they wait on their link, in order, until the scenario
    /// delivers, drops, duplicates or alters them one by one (`World+Held.swift`). For the fuzz
    /// harness and the tests that play the network themselves.
    public var held = false
    /// Each link delivers its frames in the order sent in each direction, as TCP does (delays
    /// still vary; a frame waits for the one before it). The simulator's `--files`: the file
    /// receiver takes only the next chunk, so reordering within a connection would cost a stall
    /// timeout per window (docs/SIMULATOR.md, "Files"). Frames of two connections still cross.
    public var inOrder = false
    var random: Xoshiro256

    public init(drop: Double = 0, duplicate: Double = 0, delayMicroseconds: ClosedRange<UInt64> = 1_000...1_000,
                random: Xoshiro256)
    {
        precondition((0..<1).contains(drop) && (0..<1).contains(duplicate), "probabilities in [0, 1)")
        self.drop = drop
        self.duplicate = duplicate
        self.delayMicroseconds = delayMicroseconds
        self.random = random
    }

    /// The longest one-way delay.
    public var delayMax: Duration { .microseconds(delayMicroseconds.upperBound) }

    /// One one-way delay.
    public mutating func oneWayDelay() -> Duration {
        .microseconds(random.inRange(delayMicroseconds))
    }

    /// How many copies of a frame arrive (0: dropped).
    mutating func copies() -> Int {
        guard active else { return 1 }
        if random.chance(drop) { return 0 }
        return random.chance(duplicate) ? 2 : 1
    }
}
