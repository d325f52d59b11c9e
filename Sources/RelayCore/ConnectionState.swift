import ChatCore
import DequeModule

/// Why reads from a connection are paused (TCP backpressure then reaches the client).
struct PauseReasons: OptionSet, Hashable, Sendable {
    let rawValue: UInt8
    /// A token bucket is empty; frames are held until it has refilled.
    static let rateLimited = PauseReasons(rawValue: 1 << 0)
    /// The room-mate's outbound queue is over its high watermark.
    static let peerBackpressure = PauseReasons(rawValue: 1 << 1)
    /// The connection's own outbound queue is over its high watermark: its client is not
    /// reading, so nothing it sends is read either (what it sends would only be answered into
    /// that queue: pongs, ERRORs, JOINEDs).
    static let ownBackpressure = PauseReasons(rawValue: 1 << 2)
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
    /// counted, or dropped, or no address is known), so that its close is taken off exactly the
    /// entry (and the wider IPv6 prefixes) it was added to. Set at accept, or when a PROXY header
    /// names the client.
    var countedUnder: AddressKey?
    /// Counted among its address's room-less connections (until it joins a room, or closes).
    var roomless: Bool
    /// The connection negotiated `securechat.binary` at its upgrade: its binary frames are
    /// SIGNALs, and binary SIGNALs reach it as they are (to any other, as text).
    var binarySignals = false
    var state: ConnectionState<Frame>

    enum Phase {
        case upgrading, serving, closing, disconnecting
    }

    /// A frame other than text arrived (any frame shows the client is alive): charge it to the
    /// buckets (one message, `size` bytes), note it, and say what to do with it.
    mutating func admitControl(size: Int, paired: Bool, now: Instant) -> ControlAdmission {
        switch state {
        case .upgrading:
            return .ignored
        case var .serving(serving):
            state = .modifying
            defer { state = .serving(serving) }
            serving.lastInbound = now
            serving.setPaired(paired, now: now)
            // Keep order with held text: nothing overtakes it, so over the rate means over the rate.
            if serving.held.isEmpty && serving.admit(size, now: now) { return .admitted }
            return serving.overRate(now: now)
        case .closing:
            return discardWhileClosing() ? .closingPause : .closing
        case .disconnecting, .modifying:
            return .ignored
        }
    }

    /// A frame read while the relay waits for the client's close: discarded, and counted. True
    /// for the one past `RelayLimits.closingFramesMax`: reads stop then (the close handshake
    /// timer ends the connection), or a flooder the relay closed would be read at full speed,
    /// every frame decoded for nothing, until the timer.
    mutating func discardWhileClosing() -> Bool {
        guard case var .closing(closing) = state else { return false }
        closing.framesDiscarded += 1
        state = .closing(closing)
        return closing.framesDiscarded == RelayLimits.closingFramesMax + 1
    }

    /// A text frame arrived: admit it, hold it, or ignore it (not serving, or after a close that
    /// waits behind held frames).
    mutating func admitText(
        _ frame: HeldFrame<Frame>, size: Int, charge: Int, paired: Bool, now: Instant
    ) -> TextAdmission {
        guard case var .serving(serving) = state else { return discardWhileClosing() ? .closingPause : .ignored }
        state = .modifying
        defer { state = .serving(serving) }
        serving.lastInbound = now
        serving.setPaired(paired, now: now)
        guard serving.closeAfterHeld == nil else { return .ignored }
        // Keep order: once anything is held, everything after it waits too.
        if serving.held.isEmpty && serving.admit(charge, now: now) { return .admitted }
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

/// What happened to an inbound frame other than text.
enum ControlAdmission {
    /// The buckets paid for it: act on it.
    case admitted
    /// Over the rate: not acted on (a ping over the rate gets no pong, a binary frame no
    /// ERROR), reads pause until the buckets are full again. As `TextAdmission.held`.
    case overRate(answer: Bool, pause: Bool, releaseAt: Instant?)
    /// The relay is closing the connection: only the client's close frame matters.
    case closing
    /// As `closing`, and this frame is one too many to read while closing: stop reading.
    case closingPause
    /// Not served (upgrading, or being dropped).
    case ignored
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
    /// Discarded while closing, and one too many: stop reading.
    case closingPause
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
    /// `--trust-proxy proxy-protocol`: the PROXY header naming the client has not been read yet.
    var awaitsProxyHeader = false
}

/// The rates and bursts of one tier of the per-connection limits (`RelayLimits`: alone in a
/// room or not yet in one, or paired).
struct RateTier: Equatable {
    var messagesPerSecond: UInt64
    var messageBurst: UInt64
    var bytesPerSecond: UInt64
    var byteBurst: UInt64

    static func lone(_ limits: RelayLimits) -> RateTier {
        RateTier(
            messagesPerSecond: UInt64(limits.messagesPerSecond), messageBurst: UInt64(limits.messageBurst),
            bytesPerSecond: UInt64(limits.bytesPerSecond), byteBurst: UInt64(limits.byteBurst))
    }

    /// Each paired field, or its lone value where that is higher (0: none of its own).
    static func paired(_ limits: RelayLimits) -> RateTier {
        RateTier(
            messagesPerSecond: UInt64(max(limits.messagesPerSecond, limits.pairedMessagesPerSecond)),
            messageBurst: UInt64(max(limits.messageBurst, limits.pairedMessageBurst)),
            bytesPerSecond: UInt64(max(limits.bytesPerSecond, limits.pairedBytesPerSecond)),
            byteBurst: UInt64(max(limits.byteBurst, limits.pairedByteBurst)))
    }
}

struct Serving<Frame: RelayFrameBytes> {
    var messageBucket: TokenBucket
    var byteBucket: TokenBucket
    /// The buckets' rates while the connection has no room-mate, and while it has one (the bulk
    /// allowance: a file transfer between two peers should not crawl at a chat's rate).
    let loneTier: RateTier
    let pairedTier: RateTier
    /// Whether the buckets run at the paired tier (the engine says on every frame, so no pairing
    /// path can forget it). A change keeps the tokens held, so pairing gives no fresh burst.
    private(set) var paired = false
    /// Frames read while a bucket was empty, oldest first, sent on in order as the buckets
    /// refill. Reading stops at the first one, so only the rest of the read batch in hand can
    /// follow it (`RelayLimits.heldBytesMax` is the backstop).
    var held = Deque<HeldFrame<Frame>>()
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
    /// When the connection is closed unless it has joined a room (nil once it has).
    var joinDeadline: Instant?
    /// Protocol errors so far (`RelayLimits.protocolErrorsMax` closes the connection).
    var protocolErrors = 0
    /// A pong was handed to the shell and is not written yet: pings read meanwhile owe one pong
    /// (RFC 6455 §5.5.3 allows answering only the latest ping), so pongs to a client that does
    /// not read cannot pile up in the outbound queue, which counts bytes (2 per empty pong) and
    /// not the few hundred each queued write costs.
    var pongInFlight = false
    /// The payload of the latest ping read while a pong was in flight.
    var owedPong: Frame?

    init(limits: RelayLimits, now: Instant) {
        loneTier = .lone(limits)
        pairedTier = .paired(limits)
        messageBucket = TokenBucket(ratePerSecond: loneTier.messagesPerSecond, burst: loneTier.messageBurst, now: now)
        byteBucket = TokenBucket(ratePerSecond: loneTier.bytesPerSecond, burst: loneTier.byteBurst, now: now)
        lastInbound = now
        joinDeadline = now.advanced(by: .seconds(limits.joinTimeoutSeconds))
    }

    /// A ping to answer: true to send its pong now; false when one is in flight (this payload
    /// is then owed, replacing any owed before).
    mutating func answerPing(_ payload: Frame) -> Bool {
        guard pongInFlight else {
            pongInFlight = true
            return true
        }
        owedPong = payload
        return false
    }

    /// The pong in flight was written: the owed one, to send now (it is then in flight), if any.
    mutating func pongWritten() -> Frame? {
        guard let owed = owedPong else {
            pongInFlight = false
            return nil
        }
        owedPong = nil
        return owed
    }

    /// A frame other than text over the rate: as `hold`, without keeping the frame.
    mutating func overRate(now: Instant) -> ControlAdmission {
        let answer = !rateLimitAnswered
        rateLimitAnswered = true
        let pause = pauseReasons.isEmpty
        pauseReasons.insert(.rateLimited)
        return .overRate(answer: answer, pause: pause, releaseAt: armRelease(now: now))
    }

    /// Run the buckets at the paired tier or the lone one from `now`.
    @inline(__always)
    mutating func setPaired(_ paired: Bool, now: Instant) {
        guard paired != self.paired else { return }
        self.paired = paired
        let tier = paired ? pairedTier : loneTier
        guard loneTier != pairedTier else { return }
        messageBucket.retune(ratePerSecond: tier.messagesPerSecond, burst: tier.messageBurst, now: now)
        byteBucket.retune(ratePerSecond: tier.bytesPerSecond, burst: tier.byteBurst, now: now)
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
    mutating func hold(_ frame: HeldFrame<Frame>, size: Int, now: Instant) -> TextAdmission {
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

    /// When both buckets can pay for the oldest held frame; with nothing held (reads paused for
    /// frames over the rate that were not kept), when the message bucket is full again: a client
    /// flooding pings or binary frames then costs one read batch per burst's worth of refill, not
    /// one per token. Nil if never (a bucket that does not refill, or a frame larger than the
    /// byte burst: only possible with limits that skipped validation).
    mutating func releaseTime(now: Instant) -> Instant? {
        guard let first = held.first else { return messageBucket.whenAvailable(messageBucket.burst, now: now) }
        guard let messageReady = messageBucket.whenAvailable(1, now: now),
            let byteReady = byteBucket.whenAvailable(UInt64(first.chargeBytes), now: now)
        else { return nil }
        return max(messageReady, byteReady)
    }
}

/// A protocol frame on its way through the engine (held for the rate limit, or processed): its
/// payload and its form, text or a binary SIGNAL, which decides how it is checked and forwarded.
struct HeldFrame<Frame: RelayFrameBytes> {
    var frame: Frame
    var binary: Bool

    /// What the buckets charge for it and what the frame cap measures: a binary SIGNAL its text
    /// form's size (what a peer without binary is written), so that binary buys no more relay
    /// bandwidth than text; anything else (a malformed binary frame too) its size.
    var chargeBytes: Int {
        guard binary else { return frame.relayByteCount }
        return frame.withRelayBytes { BinarySignal.textCount($0) } ?? frame.relayByteCount
    }
}

struct Closing {
    /// When TCP is closed if the client has not answered the close frame.
    var deadline: Instant
    /// Frames read and discarded since (see `ConnectionRecord.discardWhileClosing`).
    var framesDiscarded = 0
}

/// Per-address accounting. An entry lives while the address has open connections or a join
/// bucket that is not yet full again (so disconnecting does not reset the join rate).
struct AddressEntry {
    var openConnections: Int
    /// Open connections not (yet) in a room.
    var roomlessConnections: Int
    var joinBucket: TokenBucket
}

/// A timer in the engine's heap: a connection's (handshake, JOIN deadline, held-frame release,
/// close handshake) or a reserved seat's expiry. Entries are not removed when a timer is
/// disarmed or its subject goes away: a popped entry only makes the engine look at the subject's
/// current deadlines, and the heap is rebuilt when stale entries outnumber live ones.
struct TimerEntry: Comparable {
    enum Subject: Comparable {
        case connection(ConnectionID)
        case seat(ReconnectToken)
    }

    var deadline: Instant
    var subject: Subject

    init(deadline: Instant, connection: ConnectionID) {
        self.deadline = deadline
        subject = .connection(connection)
    }

    init(deadline: Instant, seat: ReconnectToken) {
        self.deadline = deadline
        subject = .seat(seat)
    }

    static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.deadline != rhs.deadline ? lhs.deadline < rhs.deadline : lhs.subject < rhs.subject
    }
}
