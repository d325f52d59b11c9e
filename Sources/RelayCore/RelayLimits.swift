import ChatCore

/// A setting that does not make sense, named by the command-line flag that sets it.
public struct InvalidRelaySetting: Error, Hashable, Sendable, CustomStringConvertible {
    /// The flag without its leading dashes (`byte-burst`).
    public var flag: String
    public var reason: String

    public init(flag: String, reason: String) {
        self.flag = flag
        self.reason = reason
    }

    public var description: String { "--\(flag): \(reason)" }
}

/// Every limit of the relay, each with its safe default, defined once: the `relay` command line
/// takes its defaults from `RelayLimits.defaults`, `RelayEngine` enforces them, docs/RELAY.md
/// lists them. `validate()` checks each one and how they fit together.
///
/// Each field maps to the command-line flag named in its `validate()` error (`messagesPerSecond`
/// is `--messages-per-second`).
public struct RelayLimits: Hashable, Sendable {
    /// The defaults, as `relay --help` shows them.
    public static let defaults = RelayLimits()

    // MARK: Frames and rate limits (per connection)

    /// The largest WebSocket message accepted; a larger one is answered `FRAME_TOO_LARGE` + close 1009.
    public var frameSizeMaxBytes: Int = 128 * 1024
    /// Messages per second a connection may send (token bucket rate).
    public var messagesPerSecond: Int = 50
    /// Messages a connection may send in a burst (token bucket size).
    public var messageBurst: Int = 100
    /// Bytes per second a connection may send (token bucket rate).
    public var bytesPerSecond: Int = 1024 * 1024
    /// Bytes a connection may send in a burst (token bucket size); at least `frameSizeMaxBytes`.
    public var byteBurst: Int = 1024 * 1024
    /// The paired tier (the bulk allowance): a connection whose room has its peer pays from its own
    /// buckets at these rates (or the lone ones, if higher), so that a file transfer between two
    /// peers is not held to a chat's rate. A stranger alone in a room, or a connection that has not
    /// joined, keeps the lone rates above. Memory stays bounded either way: reads pause on the
    /// room-mate's backpressure. 0 in a field: that field's lone value (`removePairedAllowance`).
    /// Messages per second while paired.
    public var pairedMessagesPerSecond: Int = 16_384
    /// Message burst while paired.
    public var pairedMessageBurst: Int = 4096
    /// Bytes per second while paired.
    public var pairedBytesPerSecond: Int = 512 * 1024 * 1024
    /// Byte burst while paired.
    public var pairedByteBurst: Int = 16 * 1024 * 1024

    // MARK: Connection and room caps

    /// Open connections, in every state, across the relay.
    public var connectionsMax: Int = 16_384
    /// Open connections from one address (an IPv4 address or an IPv6 /64, see `AddressKey`).
    public var connectionsPerAddressMax: Int = 64
    /// Open connections from one IPv6 /56 (256 /64s: a home or small site allocation).
    public var connectionsPerIPv6Prefix56Max: Int = 256
    /// Open connections from one IPv6 /48 (65,536 /64s: a site or customer allocation).
    public var connectionsPerIPv6Prefix48Max: Int = 1024
    /// Open connections from one address that are not in a room (accepted, upgrading, or served
    /// and not yet joined): a connection that never joins costs a slot only this address pays for.
    public var roomlessConnectionsPerAddressMax: Int = 16
    /// New room joins per address per minute (a token bucket with a burst of the same size).
    public var joinsPerAddressPerMinute: Int = 120
    /// Rooms open at once.
    public var roomsMax: Int = 100_000

    // MARK: Timeouts and liveness

    /// Seconds from TCP accept to a finished TLS + WebSocket upgrade (slowloris on the handshake).
    public var handshakeTimeoutSeconds: Int = 10
    /// Seconds from the upgrade to the first JOIN that puts the connection in a room; then
    /// `JOIN_TIMEOUT` and close 1008.
    public var joinTimeoutSeconds: Int = 30
    /// Seconds without any inbound frame (pongs count) before a connection is closed.
    public var idleTimeoutSeconds: Int = 75
    /// Seconds between the relay's pings on a quiet connection (a live client's pong keeps it
    /// from going idle; a dead peer stays silent and is closed at the idle timeout).
    public var pingIntervalSeconds: Int = 20
    /// Seconds the relay waits for peers to answer its close frames at shutdown.
    public var shutdownGraceSeconds: Int = 3

    // MARK: Seats and protocol errors

    /// Seconds a departed peer's seat stays reserved for a JOIN with its reconnect token (a JOIN
    /// without it gets `ROOM_FULL` meanwhile); 0 frees seats at once, as before reservations.
    public var seatGraceSeconds: Int = 30
    /// Protocol errors (frames the relay cannot use: malformed, unknown, binary, a SIGNAL before
    /// JOIN, a second room) a connection may send; the next one closes it with
    /// `TOO_MANY_ERRORS` and 1008.
    public var protocolErrorsMax: Int = 16

    // MARK: Proxies

    /// Where client addresses come from (`--trust-proxy`).
    public var trustProxy: TrustProxy = .none

    // MARK: Outbound backpressure

    /// Outbound bytes queued on a connection above which its room-mate's reads are paused (the
    /// shell measures the queue and reports writability to the engine).
    public var outboundQueueHighBytes: Int = 256 * 1024
    /// Outbound bytes below which the paused room-mate resumes.
    public var outboundQueueLowBytes: Int = 64 * 1024

    // MARK: Fixed (not flags)

    /// Accepted connections beyond `connectionsMax` that still get a typed answer; past this many
    /// more, sockets are closed without one (a flood must not cost a handshake each).
    public static let refusalSlack = 256
    /// The most bytes of frames held for the rate limit on one connection (or one frame, if a
    /// frame is larger). Reads stop at the first held frame, so only the rest of the read batch
    /// in hand can arrive; this is a backstop, and a frame beyond it is dropped.
    public static let heldBytesMax = 1 << 20
    /// Seconds the relay waits for the client's answer to its close frame before dropping TCP.
    public static let closeHandshakeTimeoutSeconds = 2
    /// Frames read and discarded while the relay waits for a client's answer to its close frame,
    /// past which it stops reading (the close handshake timeout then ends the connection). A
    /// client answers at once, behind at most what it had in flight (a session's window is 64).
    public static let closingFramesMax = 1024
    /// Seconds between sweeps of every connection for pings and idle timeouts.
    public static let sweepIntervalSeconds = 1
    /// The largest PROXY protocol v2 header accepted (16 fixed bytes plus addresses and TLVs);
    /// a longer one closes the connection. HAProxy's own headers with TLVs fit in a few hundred.
    public static let proxyHeaderMaxBytes = 16 + 1024
    /// Join tokens one JOIN costs: the join bucket counts tokens per second, so a JOIN costs 60
    /// tokens refilled at `joinsPerAddressPerMinute` tokens per second, exact for any rate.
    public static let joinCostTokens: UInt64 = 60

    public init() {}

    /// The most addresses tracked at once (each costs a few dozen bytes).
    public var addressesTrackedMax: Int { connectionsMax * 4 }

    /// The room logic's limits derived from these.
    public var roomLimits: RelayRooms<ConnectionID>.Limits {
        RelayRooms<ConnectionID>.Limits(roomsMax: roomsMax, wire: WireLimits(frameSizeMaxBytes: frameSizeMaxBytes))
    }

    /// No bulk allowance: a paired connection keeps the lone rates (`relay --no-paired-allowance`).
    public mutating func removePairedAllowance() {
        pairedMessagesPerSecond = 0
        pairedMessageBurst = 0
        pairedBytesPerSecond = 0
        pairedByteBurst = 0
    }

    /// The paired tier's ranges (each is used only where it is above its lone counterpart).
    private func validatePairedTier(
        _ require: (Bool, String, String) throws(InvalidRelaySetting) -> Void
    ) throws(InvalidRelaySetting) {
        try require(
            (0...(1 << 30)).contains(pairedMessagesPerSecond), "paired-messages-per-second", "must be 0 to 2^30")
        try require((0...(1 << 30)).contains(pairedMessageBurst), "paired-message-burst", "must be 0 to 2^30")
        try require(
            (0...(1 << 32)).contains(pairedBytesPerSecond), "paired-bytes-per-second", "must be 0 B to 4 GiB")
        try require((0...(1 << 32)).contains(pairedByteBurst), "paired-byte-burst", "must be 0 B to 4 GiB")
    }

    /// Check every limit and their relations.
    public func validate() throws(InvalidRelaySetting) {
        func require(_ condition: Bool, _ flag: String, _ reason: String) throws(InvalidRelaySetting) {
            if !condition { throw InvalidRelaySetting(flag: flag, reason: reason) }
        }
        try require(
            (128...(16 << 20)).contains(frameSizeMaxBytes), "frame-size-max-bytes", "must be 128 B to 16 MiB"
        )
        try require((1...(1 << 30)).contains(messagesPerSecond), "messages-per-second", "must be 1 to 2^30")
        try validatePairedTier(require)
        try require((1...(1 << 30)).contains(messageBurst), "message-burst", "must be 1 to 2^30")
        try require((1...(1 << 32)).contains(bytesPerSecond), "bytes-per-second", "must be 1 B to 4 GiB")
        try require(
            byteBurst >= frameSizeMaxBytes && byteBurst <= 1 << 32, "byte-burst",
            "must be at least --frame-size-max-bytes (else a full-size frame never passes) and at most 4 GiB"
        )
        try require((1...1_000_000).contains(connectionsMax), "connections-max", "must be 1 to 1,000,000")
        try validateAddressCaps(require)
        try require(
            (1...1_000_000).contains(joinsPerAddressPerMinute), "joins-per-address-per-minute", "must be 1 to 1,000,000"
        )
        try require((1...10_000_000).contains(roomsMax), "rooms-max", "must be 1 to 10,000,000")
        try require((1...3600).contains(handshakeTimeoutSeconds), "handshake-timeout-seconds", "must be 1 to 3600")
        try require((1...3600).contains(joinTimeoutSeconds), "join-timeout-seconds", "must be 1 to 3600")
        try require((0...3600).contains(seatGraceSeconds), "seat-grace-seconds", "must be 0 to 3600")
        try require((1...1_000_000).contains(protocolErrorsMax), "protocol-errors-max", "must be 1 to 1,000,000")
        try require((1...86_400).contains(pingIntervalSeconds), "ping-interval-seconds", "must be 1 to 86400")
        try require(
            idleTimeoutSeconds > pingIntervalSeconds && idleTimeoutSeconds <= 86_400, "idle-timeout-seconds",
            "must be longer than --ping-interval-seconds (a live client needs a ping to answer) and at most 86400"
        )
        try require((0...60).contains(shutdownGraceSeconds), "shutdown-grace-seconds", "must be 0 to 60")
        try require(
            outboundQueueLowBytes >= 1 && outboundQueueLowBytes < outboundQueueHighBytes
                && outboundQueueHighBytes <= 64 << 20,
            "outbound-queue-high-bytes", "need 1 <= low < high <= 64 MiB"
        )
    }

    /// Each per-address cap on its own: the tiers need not nest (the smallest that applies is
    /// what binds), so raising one flag never makes another's default invalid.
    private func validateAddressCaps(
        _ require: (Bool, String, String) throws(InvalidRelaySetting) -> Void
    ) throws(InvalidRelaySetting) {
        try require(
            (1...connectionsMax).contains(connectionsPerAddressMax), "connections-per-address-max",
            "must be 1 to --connections-max"
        )
        for (value, flag) in [
            (connectionsPerIPv6Prefix56Max, "connections-per-ipv6-56-max"),
            (connectionsPerIPv6Prefix48Max, "connections-per-ipv6-48-max"),
            (roomlessConnectionsPerAddressMax, "roomless-connections-per-address-max"),
        ] {
            try require((1...1_000_000).contains(value), flag, "must be 1 to 1,000,000")
        }
    }
}

/// Where the relay learns a client's address, for the per-address caps (`--trust-proxy`).
public enum TrustProxy: String, CaseIterable, Hashable, Sendable {
    /// Clients connect directly: the socket's peer address is the client's.
    case none
    /// Every client arrives through a proxy that hides its address (a Tor onion service, a
    /// reverse proxy without the PROXY protocol): the per-address caps and join rate are off;
    /// the global caps, the per-connection limits and the JOIN deadline still hold.
    case sharedAddress = "shared-address"
    /// The proxy sends a PROXY protocol v2 header first (HAProxy `send-proxy-v2`, nginx
    /// `proxy_protocol on`): the caps are keyed on the source address it reports. A connection
    /// without a valid header is closed.
    case proxyProtocol = "proxy-protocol"
}
