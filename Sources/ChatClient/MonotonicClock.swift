import ChatCore

#if canImport(Glibc)
import Glibc
#endif

/// The shell's clock: CLOCK_MONOTONIC as a ChatCore `Instant` (ChatCore never reads a clock).
enum MonotonicClock {
    static func now() -> Instant {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Instant(nanoseconds: UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec))
    }
}
