/// The retransmission timeout for chat messages, from measured round trips (RFC 6298, the
/// estimator TCP uses: Jacobson/Karels smoothing with Karn's rule applied by the caller).
///
/// Why not a fixed timeout: a relay that rate-limits holds a fast sender's frames and forwards
/// them as its bucket refills, so a round trip can grow from a millisecond to seconds. A fixed
/// 400 ms timeout then fired before the acknowledgements could return, the whole window was sent
/// again into the same queue, and the duplicates used up the rate the originals needed: goodput
/// fell from the relay's 50 frames/s to about 4 messages/s (congestion collapse). Measured round
/// trips make the timeout follow the queue instead.
///
/// Integer arithmetic on `Duration` only: the result is the same on every machine, which the
/// simulator's determinism needs.
public struct RetransmitEstimator: Hashable, Sendable {
    /// The floor (and the timeout before any sample).
    public let minimum: Duration
    /// The cap, also for the backoff.
    public let maximum: Duration
    /// SRTT: the smoothed round trip, nil before the first sample.
    public private(set) var smoothed: Duration?
    /// RTTVAR: the smoothed mean deviation of the round trip.
    public private(set) var variation: Duration = .zero
    /// RTO: the current timeout (doubled by `backOff`, recomputed by each sample).
    public private(set) var timeout: Duration

    /// RFC 6298's clock granularity G: the variance term is at least this.
    static let granularity: Duration = .milliseconds(10)

    public init(minimum: Duration, maximum: Duration) {
        precondition(minimum > .zero && maximum >= minimum, "0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.timeout = minimum
    }

    /// One round trip, from a message sent once to the acknowledgement that covered it (Karn's
    /// rule: the caller never samples a message that was retransmitted, whose acknowledgement
    /// could belong to either copy).
    public mutating func sample(_ roundTrip: Duration) {
        precondition(roundTrip >= .zero, "a negative round trip")
        if let smoothed {
            let deviation = smoothed > roundTrip ? smoothed - roundTrip : roundTrip - smoothed
            variation = (variation * 3 + deviation) / 4
            self.smoothed = (smoothed * 7 + roundTrip) / 8
        } else {
            smoothed = roundTrip
            variation = roundTrip / 2
        }
        let estimate = smoothed! + max(Self.granularity, variation * 4)
        timeout = min(max(estimate, minimum), maximum)
        assert(timeout >= minimum && timeout <= maximum)
    }

    /// A timeout expired: double it, up to the cap (RFC 6298 §5.5), until the next sample.
    public mutating func backOff() {
        timeout = min(timeout * 2, maximum)
    }
}
