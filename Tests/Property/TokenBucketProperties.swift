import ChatCore
import PropertyBased
import Testing

@Suite("Token bucket properties", .shrinking)
struct TokenBucketProperties {
    /// (rate per second, burst, arrivals as (gap in ms, tokens asked)).
    static let scenario = zip(Gen<UInt64>.value(in: 0...1_000), Gen<UInt64>.value(in: 1...100),
                              zip(Gen<UInt64>.value(in: 0...3_000), Gen<UInt64>.value(in: 1...8)).array(of: 1...80))

    @Test("Over every interval it admits at most burst + rate × length, for any arrival pattern")
    func neverOverAdmits() async {
        await propertyCheck(count: 300, input: Self.scenario) { rate, burst, arrivals in
            var bucket = TokenBucket(ratePerSecond: rate, burst: burst, now: .zero)
            var now = Instant.zero
            var admitted: [(at: UInt64, tokens: UInt64)] = []
            for (gapMilliseconds, tokens) in arrivals {
                now = now.advanced(by: .milliseconds(gapMilliseconds))
                if bucket.tryConsume(tokens, now: now) { admitted.append((now.nanoseconds, tokens)) }
                #expect(bucket.available(now: now) <= burst)
            }
            // Every window [admitted[i], admitted[j]], in nano-tokens (exact integer arithmetic).
            for i in admitted.indices {
                var sum: UInt64 = 0
                for j in i..<admitted.count {
                    sum += admitted[j].tokens
                    let elapsed = admitted[j].at - admitted[i].at
                    #expect(sum * 1_000_000_000 <= burst * 1_000_000_000 + rate * elapsed,
                            "admitted \(sum) tokens in \(elapsed) ns at \(rate)/s with burst \(burst)")
                }
            }
        }
    }

    @Test("After resting long enough to refill, a request within the burst is admitted; whenAvailable is exact")
    func refillsAndPredicts() async {
        await propertyCheck(count: 300, input: Self.scenario) { rate, burst, arrivals in
            var bucket = TokenBucket(ratePerSecond: rate, burst: burst, now: .zero)
            var now = Instant.zero
            for (gapMilliseconds, tokens) in arrivals {
                now = now.advanced(by: .milliseconds(gapMilliseconds))
                var probe = bucket
                if let when = probe.whenAvailable(tokens, now: now) {
                    var atTime = bucket
                    let admittedThen = atTime.tryConsume(tokens, now: when)
                    #expect(admittedThen, "whenAvailable said \(when)")
                    if when > now {
                        var justBefore = bucket
                        let admittedEarlier = justBefore.tryConsume(tokens, now: Instant(nanoseconds: when.nanoseconds - 1))
                        #expect(!admittedEarlier, "admitted before whenAvailable's \(when)")
                    }
                } else {
                    #expect(tokens > burst || rate == 0)
                }
                _ = bucket.tryConsume(tokens, now: now)
            }
            guard rate > 0 else { return }
            let refillSeconds = (burst + rate - 1) / rate
            now = now.advanced(by: .seconds(refillSeconds))
            #expect(bucket.available(now: now) == burst)
            let admittedFull = bucket.tryConsume(burst, now: now)
            #expect(admittedFull)
        }
    }
}
