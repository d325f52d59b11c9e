/// A point on a monotonic clock that ChatCore never reads itself.
///
/// Every time-dependent type in ChatCore takes `now: Instant` as an argument (the sans-IO rule):
/// the binaries pass a reading of their monotonic clock, the simulator passes its virtual clock.
/// The origin is arbitrary; only differences between instants mean anything.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since an arbitrary, per-process origin.
    public var nanoseconds: UInt64

    @inlinable
    public init(nanoseconds: UInt64) {
        self.nanoseconds = nanoseconds
    }

    /// The origin of the clock.
    public static let zero = Instant(nanoseconds: 0)

    @inlinable
    public static func milliseconds(_ value: UInt64) -> Instant {
        Instant(nanoseconds: value &* 1_000_000)
    }

    @inlinable
    public static func < (lhs: Instant, rhs: Instant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    /// Whole milliseconds since the origin (rounded down).
    public var milliseconds: UInt64 { nanoseconds / 1_000_000 }

    /// `self + duration`, saturating at the largest representable instant.
    @inlinable
    public func advanced(by duration: Duration) -> Instant {
        let (sum, overflow) = nanoseconds.addingReportingOverflow(duration.wholeNanoseconds)
        return Instant(nanoseconds: overflow ? UInt64.max : sum)
    }

    /// The non-negative duration from `earlier` to `self`; zero when `earlier` is later.
    @inlinable
    public func duration(since earlier: Instant) -> Duration {
        guard nanoseconds > earlier.nanoseconds else { return .zero }
        return .nanoseconds(Int64(clamping: nanoseconds - earlier.nanoseconds))
    }

    public var description: String { "t+\(nanoseconds / 1_000_000)ms" }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `0...UInt64.max` (negative durations are 0).
    @inlinable
    public var wholeNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 || (seconds == 0 && attoseconds < 0) { return 0 }
        let (secondsPart, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return UInt64.max }
        let (sum, overflow2) = secondsPart.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
        return overflow2 ? UInt64.max : sum
    }

    /// The duration in whole milliseconds (rounded down, clamped at zero).
    @inlinable
    public var wholeMilliseconds: UInt64 { wholeNanoseconds / 1_000_000 }
}
