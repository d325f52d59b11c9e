import ChatCore
import HeapModule

/// Timers: handshake deadlines, releases of held frames, close-handshake deadlines (one heap),
/// the once-a-second sweep (pings, idle timeouts, pruning of address entries), the shutdown's
/// grace period.
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
            fireTimers(of: first.connection, now: now)
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
            let due = connections.values[index].withServing { serving in
                guard let releaseAt = serving.releaseAt, releaseAt <= now else { return false }
                serving.releaseAt = nil
                return true
            }
            if due == true { releaseHeld(id, now: now) }
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
                // the peer's own idle timeout ends a dead peer, which resumes this one.
                if serving.pauseReasons.contains(.peerBackpressure) {
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

    /// Rebuild the heap from the live deadlines once stale entries outnumber the connections, so
    /// that connections that come and go cannot grow it without bound.
    private mutating func compactTimers() {
        guard timers.count > 2 * connections.count + 64 else { return }
        var live: [TimerEntry] = []
        live.reserveCapacity(connections.count)
        // Dictionary order does not matter: the heap orders entries by (deadline, connection).
        for (id, record) in connections {
            switch record.state {
            case let .upgrading(upgrading): live.append(TimerEntry(deadline: upgrading.deadline, connection: id))
            case let .serving(serving):
                if let at = serving.releaseAt { live.append(TimerEntry(deadline: at, connection: id)) }
            case let .closing(closing): live.append(TimerEntry(deadline: closing.deadline, connection: id))
            case .disconnecting, .modifying: break
            }
        }
        timers = Heap(live)
    }
}

/// What the sweep decided about one served connection.
enum SweepVerdict {
    case alive, ping, idle
}
