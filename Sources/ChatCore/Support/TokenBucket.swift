/// A token bucket on the injected clock: `burst` tokens at most, refilled at `ratePerSecond`.
///
/// Integer arithmetic in nano-tokens (1 token = 10^9 nano-tokens; at `r` tokens/s a bucket gains
/// `r` nano-tokens per nanosecond), so admission is exact and identical on every machine: over
/// any interval of length `t` it admits at most `burst + rate × t` tokens.
public struct TokenBucket: Hashable, Sendable {
    private static let nanoPerToken: UInt64 = 1_000_000_000

    /// Tokens added per second.
    public private(set) var ratePerSecond: UInt64
    /// The bucket's capacity in tokens (the largest burst).
    public private(set) var burst: UInt64
    private var nanoTokens: UInt64
    private var lastRefill: Instant

    /// A full bucket at `now`.
    public init(ratePerSecond: UInt64, burst: UInt64, now: Instant) {
        precondition(burst >= 1 && burst <= 1 << 32, "burst must be in 1...2^32 tokens")
        precondition(ratePerSecond <= 1 << 32, "rate must be at most 2^32 tokens/s")
        self.ratePerSecond = ratePerSecond
        self.burst = burst
        self.nanoTokens = burst * Self.nanoPerToken
        self.lastRefill = now
    }

    /// Change the rate and the capacity at `now`, keeping the tokens it holds (at most the new
    /// capacity): what was earned at the old rate stays earned, nothing more is given.
    public mutating func retune(ratePerSecond: UInt64, burst: UInt64, now: Instant) {
        precondition(burst >= 1 && burst <= 1 << 32, "burst must be in 1...2^32 tokens")
        precondition(ratePerSecond <= 1 << 32, "rate must be at most 2^32 tokens/s")
        refill(now: now)
        self.ratePerSecond = ratePerSecond
        self.burst = burst
        nanoTokens = min(nanoTokens, burst * Self.nanoPerToken)
    }

    /// Whole tokens available at `now`.
    public mutating func available(now: Instant) -> UInt64 {
        refill(now: now)
        return nanoTokens / Self.nanoPerToken
    }

    /// Take `tokens` if the bucket has them at `now`; otherwise take nothing and return false.
    public mutating func tryConsume(_ tokens: UInt64 = 1, now: Instant) -> Bool {
        refill(now: now)
        guard tokens <= burst else { return false }
        let cost = tokens * Self.nanoPerToken
        guard nanoTokens >= cost else { return false }
        nanoTokens -= cost
        return true
    }

    /// When at least `tokens` will be available (nil if never: more than the burst, or rate 0).
    public mutating func whenAvailable(_ tokens: UInt64 = 1, now: Instant) -> Instant? {
        refill(now: now)
        guard tokens <= burst else { return nil }
        let cost = tokens * Self.nanoPerToken
        if nanoTokens >= cost { return now }
        guard ratePerSecond > 0 else { return nil }
        let missing = cost - nanoTokens
        let waitNanoseconds = (missing + ratePerSecond - 1) / ratePerSecond
        return Instant(nanoseconds: now.nanoseconds &+ waitNanoseconds)
    }

    private mutating func refill(now: Instant) {
        // A clock reading earlier than the last one adds nothing (and never removes anything).
        guard now > lastRefill else { return }
        let capacity = burst * Self.nanoPerToken
        let elapsed = now.nanoseconds - lastRefill.nanoseconds
        lastRefill = now
        guard ratePerSecond > 0 else { return }
        // Cap the elapsed time at what fills an empty bucket, so the product cannot overflow.
        let fillTime = capacity / ratePerSecond + 1
        let gained = min(elapsed, fillTime) * ratePerSecond
        nanoTokens = min(capacity, nanoTokens + gained)
    }
}
