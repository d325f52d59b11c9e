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
///
/// The per-frame path reaches a record only through its mutating methods, called on
/// `connections.values[index]`: that access is in place, while reading `values[index]` copies
/// the whole record (a profile showed the copy). Inside them, the `Serving` data is taken out of
/// its enum case, the case is set to `.modifying`, and the data is put back: without the
/// placeholder, the copy in hand and the one in the case would share the held-frames buffer,
/// and the first change to it would copy it.
struct ConnectionRecord<Frame: RelayFrameBytes> {
    /// The per-address entry this connection is counted in (nil when it was refused before being
    /// counted, or dropped), so that its close is taken off exactly the entry it was added to.
    let countedUnder: AddressKey?
    var state: ConnectionState<Frame>

    enum Phase {
        case upgrading, serving, closing, disconnecting
    }

    /// An inbound frame arrived (any frame shows the client is alive): note it, and say which
    /// phase the connection is in.
    mutating func noteInbound(now: Instant) -> Phase {
        switch state {
        case .upgrading:
            return .upgrading
        case var .serving(serving):
            state = .modifying
            serving.lastInbound = now
            state = .serving(serving)
            return .serving
        case .closing:
            return .closing
        case .disconnecting, .modifying:
            return .disconnecting
        }
    }

    /// A text frame arrived: admit it, hold it, or ignore it (not serving, or after a close that
    /// waits behind held frames).
    mutating func admitText(_ frame: Frame, size: Int, now: Instant) -> TextAdmission {
        guard case var .serving(serving) = state else { return .ignored }
        state = .modifying
        defer { state = .serving(serving) }
        serving.lastInbound = now
        guard serving.closeAfterHeld == nil else { return .ignored }
        // Keep order: once anything is held, everything after it waits too.
        if serving.held.isEmpty && serving.admit(size, now: now) { return .admitted }
        return serving.hold(frame, size: size, now: now)
    }

    /// Change the serving data in place; nil (and `body` is not called) unless serving.
    mutating func withServing<Result>(_ body: (inout Serving<Frame>) -> Result) -> Result? {
        guard case var .serving(serving) = state else { return nil }
        state = .modifying
        defer { state = .serving(serving) }
        return body(&serving)
    }
}

/// What happened to an inbound text frame.
enum TextAdmission {
    /// Both buckets paid for it: hand it to the room logic.
    case admitted
    /// Held for the rate limit. `answer`: tell the client `RATE_LIMITED` (once per episode);
    /// `pause`: reading was not paused yet; `releaseAt`: a release timer to arm.
    case held(answer: Bool, pause: Bool, releaseAt: Instant?)
    /// Not counted, not answered.
    case ignored
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

    /// Hold a frame over the rate: answer `RATE_LIMITED` once, stop reading, keep the frame until
    /// the buckets can pay for it. A flooding client is slowed by TCP to its allowed rate and the
    /// relay spends nothing on its excess (the rest of the read batch in hand is all it holds).
    mutating func hold(_ frame: Frame, size: Int, now: Instant) -> TextAdmission {
        let answer = !rateLimitAnswered
        rateLimitAnswered = true
        let pause = pauseReasons.isEmpty
        pauseReasons.insert(.rateLimited)
        // The bound is a backstop (a frame beyond it is dropped; the client was told RATE_LIMITED);
        // the first frame is always held, so reading always resumes.
        if held.isEmpty || heldBytes + size <= RelayLimits.heldBytesMax {
            held.append(frame)
            heldBytes += size
        }
        return .held(answer: answer, pause: pause, releaseAt: armRelease(now: now))
    }

    /// Arm the release for when the buckets can pay for the oldest held frame, unless armed:
    /// returns the time to set a timer for.
    mutating func armRelease(now: Instant) -> Instant? {
        guard releaseAt == nil, let at = releaseTime(now: now) else { return nil }
        releaseAt = at
        return at
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
