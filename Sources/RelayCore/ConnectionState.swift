import ChatCore
import DequeModule

/// Why reads from a connection are paused (TCP backpressure then reaches the client).
struct PauseReasons: OptionSet, Hashable, Sendable {
    let rawValue: UInt8
    /// A token bucket is empty; frames are held until it has refilled.
    static let rateLimited = PauseReasons(rawValue: 1 << 0)
    /// The room-mate's outbound queue is over its high watermark.
    static let peerBackpressure = PauseReasons(rawValue: 1 << 1)
    // Issue 14 adds `ownBackpressure` here: the connection's own outbound queue is over the mark.
}

/// One accepted TCP connection, from accept to the shell's report that it closed.
struct ConnectionRecord<Frame: RelayFrameBytes> {
    /// The per-address entry this connection is counted in (nil when it was refused before being
    /// counted, or dropped), so that its close is taken off exactly the entry it was added to.
    let countedUnder: AddressKey?
    /// What the shell last reported: false while its outbound queue is over the high watermark.
    var isWritable = true
    var state: ConnectionState<Frame>
}

/// A connection's state; each case carries the data valid in it.
enum ConnectionState<Frame: RelayFrameBytes> {
    /// TCP accepted; the TLS and WebSocket upgrade is under way.
    case upgrading(Upgrading)
    /// WebSocket open, registered, served (in a room or not).
    case serving(Serving<Frame>)
    /// The relay sent its close frame and waits for the client's answer (reading and discarding).
    case closing(Closing)
    /// The shell was told to close the socket (or to drop it at accept); waiting for `closed`.
    case disconnecting
    /// Only while a case's data is being changed in place (so it is not copied on write).
    case modifying
}

struct Upgrading {
    /// When an unfinished handshake is cut off (slowloris).
    var deadline: Instant
    /// Set when admission refused it: told why (and closed) once the upgrade is done.
    var refusal: (code: RelayErrorCode, reason: RejectionReason)?
}

struct Serving<Frame: RelayFrameBytes> {
    var messageBucket: TokenBucket
    var byteBucket: TokenBucket
    /// Frames read while a bucket was empty, oldest first, sent on in order as the buckets
    /// refill. Reading stops at the first one, so only the rest of the read batch in hand can
    /// follow it (`RelayLimits.heldBytesMax` is the backstop).
    var held = Deque<Frame>()
    var heldBytes = 0
    /// When the held frames are next tried (a timer is armed for it); nil when none is armed.
    var releaseAt: Instant?
    /// Set when the client was told `RATE_LIMITED`; cleared once everything held has been sent on.
    var rateLimitAnswered = false
    /// The client's close frame arrived while frames were held: the close is answered (with this
    /// code echoed) once they have been sent on. Later text frames are ignored.
    var closeAfterHeld: CloseCode?
    var pauseReasons: PauseReasons = []
    /// The last inbound frame of any kind (pongs included).
    var lastInbound: Instant
    /// The last ping the relay sent.
    var lastPing: Instant?

    init(limits: RelayLimits, now: Instant) {
        messageBucket = TokenBucket(
            ratePerSecond: UInt64(limits.messagesPerSecond), burst: UInt64(limits.messageBurst), now: now)
        byteBucket = TokenBucket(
            ratePerSecond: UInt64(limits.bytesPerSecond), burst: UInt64(limits.byteBurst), now: now)
        lastInbound = now
    }

    /// Charge both token buckets for a frame of `size` bytes if both have the tokens (a refused
    /// frame costs nothing).
    @inline(__always)
    mutating func admit(_ size: Int, now: Instant) -> Bool {
        let bytes = UInt64(size)
        guard messageBucket.available(now: now) >= 1, byteBucket.available(now: now) >= bytes else { return false }
        _ = messageBucket.tryConsume(1, now: now)
        _ = byteBucket.tryConsume(bytes, now: now)
        return true
    }

    /// When both buckets can pay for the oldest held frame; nil if nothing is held or never (a
    /// bucket that does not refill, or a frame larger than the byte burst: only possible with
    /// limits that skipped validation).
    mutating func releaseTime(now: Instant) -> Instant? {
        guard let first = held.first else { return nil }
        guard let messageReady = messageBucket.whenAvailable(1, now: now),
            let byteReady = byteBucket.whenAvailable(UInt64(first.relayByteCount), now: now)
        else { return nil }
        return max(messageReady, byteReady)
    }
}

struct Closing {
    /// When TCP is closed if the client has not answered the close frame.
    var deadline: Instant
}

/// Per-address accounting. An entry lives while the address has open connections or a join
/// bucket that is not yet full again (so disconnecting does not reset the join rate).
struct AddressEntry {
    var openConnections: Int
    var joinBucket: TokenBucket
}

/// A connection's timer in the engine's heap. Entries are not removed when a timer is disarmed
/// or the connection closes: a popped entry only makes the engine look at the connection's
/// current deadlines, and the heap is rebuilt when stale entries outnumber live connections.
struct TimerEntry: Comparable {
    var deadline: Instant
    var connection: ConnectionID

    static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        (lhs.deadline, lhs.connection) < (rhs.deadline, rhs.connection)
    }
}
