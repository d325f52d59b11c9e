import ChatCore
import ChatTesting
import Testing

/// An entropy source that always returns the same byte.
private final class ConstantEntropy: EntropySource {
    let byte: UInt8

    init(byte: UInt8) {
        self.byte = byte
    }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        for index in buffer.indices { buffer[index] = byte }
    }
}

@Suite("ReconnectBackoff: capped exponential backoff with full jitter")
struct ReconnectBackoffTests {
    @Test("The ceiling doubles from the initial delay and stops at the maximum")
    func ceilingDoublesThenCaps() {
        var backoff = ReconnectBackoff(initialDelay: .milliseconds(500), maximumDelay: .seconds(5))
        let entropy = SeededEntropy(seed: 1)
        var ceilings: [Duration] = []
        for _ in 0..<7 {
            ceilings.append(backoff.nextCeiling)
            _ = backoff.nextDelay(entropy: entropy)
        }
        #expect(ceilings == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5),
                             .seconds(5)])
        #expect(backoff.attempt == 7)
    }

    @Test("Every delay lies in 0...ceiling, and the draws cover the range")
    func delaysWithinCeiling() {
        var backoff = ReconnectBackoff(initialDelay: .milliseconds(100), maximumDelay: .milliseconds(800))
        let entropy = SeededEntropy(seed: 42)
        var smallest = Duration.seconds(100)
        var largest = Duration.zero
        for _ in 0..<2000 {
            let ceiling = backoff.nextCeiling
            let delay = backoff.nextDelay(entropy: entropy)
            #expect(delay >= .zero && delay <= ceiling)
            if ceiling == .milliseconds(800) {
                smallest = min(smallest, delay)
                largest = max(largest, delay)
            }
        }
        // Full jitter: with ~2000 uniform draws from 0...800 ms both ends are reached closely.
        #expect(smallest < .milliseconds(20))
        #expect(largest > .milliseconds(780))
    }

    @Test("An all-zero draw gives no delay at all (full jitter reaches zero)")
    func zeroDraw() {
        var backoff = ReconnectBackoff(initialDelay: .seconds(1), maximumDelay: .seconds(1))
        #expect(backoff.nextDelay(entropy: ConstantEntropy(byte: 0)) == .zero)
    }

    @Test("reset() starts again from the initial ceiling")
    func resetStartsOver() {
        var backoff = ReconnectBackoff(initialDelay: .milliseconds(250), maximumDelay: .seconds(30))
        let entropy = SeededEntropy(seed: 7)
        for _ in 0..<10 { _ = backoff.nextDelay(entropy: entropy) }
        #expect(backoff.nextCeiling == .seconds(30))
        backoff.reset()
        #expect(backoff.attempt == 0)
        #expect(backoff.nextCeiling == .milliseconds(250))
    }

    @Test("A huge number of attempts neither overflows nor exceeds the maximum")
    func manyAttempts() {
        var backoff = ReconnectBackoff(initialDelay: .seconds(3), maximumDelay: .seconds(60))
        let entropy = SeededEntropy(seed: 9)
        for _ in 0..<200 { _ = backoff.nextDelay(entropy: entropy) }
        #expect(backoff.nextCeiling == .seconds(60))
        #expect(backoff.nextDelay(entropy: entropy) <= .seconds(60))
    }
}
