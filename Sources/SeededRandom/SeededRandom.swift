// The one home of seeded pseudo-randomness in the project: the simulator, the fuzz harness, the
// tests (through ChatTesting's `SeededEntropy`) and the load generator all draw from these two
// generators. No dependencies, so that relay-bench can use them without linking the chat core; no
// shipped chat binary (`securechat`, `relay`) links this module (IsolationTests checks).

/// SplitMix64 (Steele, Lea and Flood 2014): turns one 64-bit seed into well-mixed 64-bit values.
///
/// Seeds `Xoshiro256` and derives independent streams from a run's seed; the load generator uses it
/// directly for WebSocket masking keys. Written here rather than taken from a package because it is
/// eight lines and must never change between builds: a trace hash is only comparable if the
/// generator is bit-for-bit the same.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// xoshiro256** (Blackman and Vigna): the simulator's one generator family.
///
/// Every random choice of a run (network faults, the fault schedule, the workload, each client's
/// key material) comes from a stream of this generator derived from the run's seed, so one seed
/// determines the whole run. Streams are independent so that, say, one more retransmission in one
/// room does not shift the keys drawn in another.
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    /// A generator for `stream` number `index` of the run seeded with `seed`.
    public init(seed: UInt64, stream: Stream, index: UInt64 = 0) {
        var mixer = SplitMix64(seed: seed)
        var derived = SplitMix64(seed: mixer.next() ^ (stream.rawValue &* 0xD6E8_FEB8_6659_FD93))
        var indexed = SplitMix64(seed: derived.next() ^ (index &* 0x9E37_79B9_7F4A_7C15))
        s0 = indexed.next()
        s1 = indexed.next()
        s2 = indexed.next()
        s3 = indexed.next()
        // The all-zero state is the generator's one fixed point; SplitMix64 cannot yield four zeros
        // in a row, but the precondition documents the requirement.
        precondition(s0 | s1 | s2 | s3 != 0)
    }

    /// The independent random streams of a run.
    public enum Stream: UInt64, Sendable {
        /// Settings not given on the command line (swarm testing).
        case settings = 1
        /// Per-frame network faults: drop, duplicate, delay.
        case network = 2
        /// When resets, partitions, crashes and restarts happen.
        case faults = 3
        /// When each user types, and what.
        case workload = 4
        /// Key material and instance IDs of one client incarnation (`index` names it).
        case entropy = 5
        /// Reconnect backoff jitter.
        case reconnect = 6
        /// Planted relay bugs.
        case planted = 7
        /// The rooms' chat codes (their passwords).
        case codes = 8
        /// The relay's reconnect tokens (`index`: the relay process, counted from 0).
        case relay = 9
        /// Which users end their input early, and when (`--leave-randomly`).
        case leaving = 10
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, 45)
        return result
    }

    @inline(__always)
    private func rotateLeft(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }

    /// A uniform value in `0..<bound` (Lemire's multiply-shift with rejection: no modulo bias).
    /// Our own so the mapping from generator output to value can never change under us.
    public mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        // Bounded: each draw is rejected with probability < bound / 2^64 <= 1/2.
        for _ in 0..<128 {
            let product = next().multipliedFullWidth(by: bound)
            if product.low >= (0 &- bound) % bound { return product.high }
        }
        preconditionFailure("xoshiro256** output is not uniform")
    }

    /// A uniform value in `range` (inclusive).
    public mutating func inRange(_ range: ClosedRange<UInt64>) -> UInt64 {
        let width = range.upperBound - range.lowerBound
        if width == UInt64.max { return next() }
        return range.lowerBound + below(width + 1)
    }

    /// True with probability `probability` (0 never draws; 1 always).
    public mutating func chance(_ probability: Double) -> Bool {
        if probability <= 0 { return false }
        if probability >= 1 { return true }
        return Double(next() >> 11) * 0x1p-53 < probability
    }

    /// One element of a non-empty array.
    public mutating func pick<T>(_ choices: [T]) -> T {
        precondition(!choices.isEmpty)
        return choices[Int(below(UInt64(choices.count)))]
    }
}
