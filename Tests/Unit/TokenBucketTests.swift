import ChatCore
import Testing

@Suite("TokenBucket on the injected clock")
struct TokenBucketTests {
    /// Attempts to take `tokens` at each instant (milliseconds) and returns the admissions.
    static func admissions(_ bucket: inout TokenBucket, _ tokens: UInt64 = 1, at times: [UInt64]) -> [Bool] {
        times.map { bucket.tryConsume(tokens, now: .milliseconds($0)) }
    }

    @Test("A full bucket admits its burst, then refills at the rate")
    func burstThenRate() {
        var bucket = TokenBucket(ratePerSecond: 10, burst: 5, now: .zero)
        let burst = Self.admissions(&bucket, at: [0, 0, 0, 0, 0, 0])
        #expect(burst == [true, true, true, true, true, false])
        // 100 ms at 10 tokens/s is exactly one token.
        let refill = Self.admissions(&bucket, at: [99, 100, 100])
        #expect(refill == [false, true, false])
        // A long idle period refills only up to the burst.
        let available = bucket.available(now: .milliseconds(100_000))
        #expect(available == 5)
    }

    @Test("Multi-token costs and whenAvailable")
    func costs() {
        var bucket = TokenBucket(ratePerSecond: 1000, burst: 1000, now: .zero)
        let taken = Self.admissions(&bucket, 600, at: [0, 0])
        #expect(taken == [true, false])
        let when600 = bucket.whenAvailable(600, now: .zero)
        let whenTooMany = bucket.whenAvailable(1001, now: .zero)
        #expect(when600 == .milliseconds(200))
        #expect(whenTooMany == nil)
        let overBurst = Self.admissions(&bucket, 1001, at: [10_000])
        #expect(overBurst == [false])
    }

    @Test("A clock that goes backwards neither adds nor removes tokens")
    func backwardsClock() {
        var bucket = TokenBucket(ratePerSecond: 1, burst: 1, now: .milliseconds(5000))
        let taken = Self.admissions(&bucket, at: [5000, 1000, 6000])
        #expect(taken == [true, false, true])
    }

    @Test("Rate zero never refills")
    func rateZero() {
        var bucket = TokenBucket(ratePerSecond: 0, burst: 2, now: .zero)
        let taken = Self.admissions(&bucket, 2, at: [0])
        let later = Self.admissions(&bucket, at: [UInt64(1) << 40])
        let when = bucket.whenAvailable(now: .zero)
        #expect(taken == [true])
        #expect(later == [false])
        #expect(when == nil)
    }
}
