/// When to try the relay again: capped exponential backoff with full jitter, sans-IO.
///
/// The ceiling for attempt `n` (0-based) is `min(maximumDelay, initialDelay * 2^n)`; the delay is
/// drawn uniformly from `0...ceiling` (whole milliseconds) from the injected `EntropySource`. Full
/// jitter (AWS Architecture Blog, "Exponential Backoff and Jitter") spreads clients that lost the
/// relay at the same moment, so a restarted relay is not hit by all of them at once.
///
/// The type reads no clock: the shell adds the delay to its own `now`.
public struct ReconnectBackoff: Hashable, Sendable {
    /// The ceiling of the first delay.
    public let initialDelay: Duration
    /// The largest ceiling, whatever the number of attempts.
    public let maximumDelay: Duration
    /// Consecutive attempts since the last `reset()`.
    public private(set) var attempt: Int = 0

    public init(initialDelay: Duration = .milliseconds(500), maximumDelay: Duration = .seconds(30)) {
        precondition(initialDelay > .zero, "the initial delay must be positive")
        precondition(maximumDelay >= initialDelay, "the maximum delay must be at least the initial delay")
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// The ceiling of the next delay.
    public var nextCeiling: Duration {
        let initialNanoseconds = initialDelay.wholeNanoseconds
        let maximumNanoseconds = maximumDelay.wholeNanoseconds
        // 2^attempt overflows past 63; the cap is reached long before for any sane initial delay.
        let shift = UInt64(min(attempt, 63))
        let (scaled, overflow) = initialNanoseconds.multipliedReportingOverflow(by: 1 << shift)
        let ceiling = overflow ? maximumNanoseconds : min(scaled, maximumNanoseconds)
        return .nanoseconds(Int64(clamping: ceiling))
    }

    /// The delay before the next attempt, uniform in `0...nextCeiling`; counts the attempt.
    public mutating func nextDelay(entropy: some EntropySource) -> Duration {
        let ceilingMilliseconds = nextCeiling.wholeMilliseconds
        let drawn = entropy.uniform(below: ceilingMilliseconds + 1)
        if attempt < Int.max { attempt += 1 }
        return .milliseconds(Int64(clamping: drawn))
    }

    /// A connection succeeded: the next failure starts from the initial ceiling again.
    public mutating func reset() {
        attempt = 0
    }
}
