import ChatCore
import HeapModule

/// Timers: handshake deadlines, JOIN deadlines, releases of held frames, close-handshake
/// deadlines and reserved seats' expiries (one heap), the once-a-second sweep (pings, idle
/// timeouts, pruning of address entries), the shutdown's grace period.
extension RelayEngine {
    /// When `handleTimeout(now:)` is next due (nil: never). It may be early (a timer that was
    /// disarmed since); calling `handleTimeout` then does nothing.
    public func pollTimeout() -> Instant? {
        let earliest = timers.min?.deadline
        switch phase {
        case let .running(nextSweep): return min(earliest ?? nextSweep, nextSweep)
        case let .shuttingDown(deadline): return min(earliest ?? deadline, deadline)
        case .stopped: return earliest
        }
    }

    /// Fire every timer due at `now`.
    public mutating func handleTimeout(now: Instant) {
        // Bounded: timers armed while firing are due later and wait for the next call.
        var budget = timers.count
        while budget > 0, let first = timers.min, first.deadline <= now {
            budget -= 1
            _ = timers.removeMin()
            switch first.subject {
            case let .connection(id): fireTimers(of: id, now: now)
            case let .seat(token): expireSeat(token, now: now)
            }
        }
        switch phase {
        case let .running(nextSweep) where nextSweep <= now:
            phase = .running(nextSweep: now.advanced(by: .seconds(RelayLimits.sweepIntervalSeconds)))
            sweep(now: now)
        case let .shuttingDown(deadline) where deadline <= now:
            finishShutdown()
        default:
            break
        }
        compactTimers()
    }

    /// A heap entry for `id` came due: act on whichever of its deadlines has passed.
    private mutating func fireTimers(of id: ConnectionID, now: Instant) {
        guard let index = connections.index(forKey: id) else { return }
        switch connections.values[index].state {
        case let .upgrading(upgrading) where upgrading.deadline <= now:
            // Slowloris on the handshake: TLS and the HTTP upgrade must finish within the timeout.
            storedCounters.reject(.handshakeTimeout)
            disconnect(id)
        case .serving:
            let due = connections.values[index].withServing { serving -> (release: Bool, joinLate: Bool) in
                let release = serving.releaseAt.map { $0 <= now } ?? false
                if release { serving.releaseAt = nil }
                return (release, serving.joinDeadline.map { $0 <= now } ?? false)
            }
            if due?.joinLate == true {
                // Joined no room in time: a connection that never joins holds a slot for nothing.
                storedCounters.reject(.joinTimeout)
                close(id, .policyViolation, error: .joinTimeout, now: now)
            } else if due?.release == true {
                releaseHeld(id, now: now)
            }
        case let .closing(closing) where closing.deadline <= now:
            disconnect(id)
        default:
            break
        }
    }

    /// Pings and idle timeouts for every served connection, in `ConnectionID` order.
    private mutating func sweep(now: Instant) {
        let pingNanoseconds = UInt64(limits.pingIntervalSeconds) * 1_000_000_000
        let idleNanoseconds = UInt64(limits.idleTimeoutSeconds) * 1_000_000_000
        for id in connections.keys.sorted() {
            guard let index = connections.index(forKey: id) else { continue }
            let verdict = connections.values[index].withServing { serving -> SweepVerdict in
                // A connection paused for its peer's backpressure cannot read its client's pongs;
                // the peer's own idle timeout ends a dead peer, which resumes this one. One paused
                // for its own backpressure is not spared: its client reads nothing, and the idle
                // timeout is what ends a client that never reads.
                let reasons = serving.pauseReasons
                if reasons.contains(.peerBackpressure) && !reasons.contains(.ownBackpressure) {
                    serving.lastInbound = now
                    return .alive
                }
                let quietNanoseconds = now.duration(since: serving.lastInbound).wholeNanoseconds
                if quietNanoseconds >= idleNanoseconds { return .idle }
                let pingDue = serving.lastPing.map { now.duration(since: $0).wholeNanoseconds >= pingNanoseconds }
                if quietNanoseconds >= pingNanoseconds && pingDue ?? true {
                    serving.lastPing = now
                    return .ping
                }
                return .alive
            }
            switch verdict {
            case .idle?:
                storedCounters.reject(.idleTimeout)
                close(id, .policyViolation, error: .idleTimeout, now: now)
            case .ping?:
                storedCounters.pingsSent += 1
                actions.append(.ping(id))
            case .alive?, nil:
                break
            }
        }
        pruneAddresses(now: now)
    }

    /// Forget addresses with no open connection whose join bucket is full again.
    private mutating func pruneAddresses(now: Instant) {
        let burst = UInt64(limits.joinsPerAddressPerMinute) * RelayLimits.joinCostTokens
        addresses = addresses.filter { _, entry in
            var bucket = entry.joinBucket
            return entry.openConnections > 0 || bucket.available(now: now) < burst
        }
    }

    /// Rebuild the heap from the live deadlines once stale entries outnumber the live subjects,
    /// so that connections and seats that come and go cannot grow it without bound.
    private mutating func compactTimers() {
        let seats = rooms.reservedSeatCount
        guard timers.count > 2 * (connections.count + seats) + 64 else { return }
        var live: [TimerEntry] = []
        live.reserveCapacity(connections.count + seats)
        // Dictionary order does not matter: the heap orders entries by (deadline, subject).
        for (id, record) in connections {
            switch record.state {
            case let .upgrading(upgrading): live.append(TimerEntry(deadline: upgrading.deadline, connection: id))
            case let .serving(serving):
                for at in [serving.releaseAt, serving.joinDeadline].compactMap({ $0 }) {
                    live.append(TimerEntry(deadline: at, connection: id))
                }
            case let .closing(closing): live.append(TimerEntry(deadline: closing.deadline, connection: id))
            case .disconnecting, .modifying: break
            }
        }
        for seat in rooms.reservedSeats { live.append(TimerEntry(deadline: seat.until, seat: seat.token)) }
        timers = Heap(live)
    }
}

/// What the sweep decided about one served connection.
enum SweepVerdict {
    case alive, ping, idle
}
