import ChatCore

/// Everything the relay can be told: addresses, TLS files and every limit, each with a safe default.
///
/// The command line (`relay --help`) maps one flag to each field; `validate()` checks that the
/// limits fit together before anything is bound.
public struct RelayConfiguration: Sendable, Hashable {
    // MARK: Addresses

    /// The address the WebSocket listener binds.
    public var host: String = "127.0.0.1"
    /// The WebSocket port (0: the kernel picks one; the startup line prints it).
    public var port: Int = 8080
    /// The address of the `/healthz` and `/metrics` listener.
    public var metricsHost: String = "127.0.0.1"
    /// The metrics port (0: the kernel picks one); -1 turns the metrics listener off.
    public var metricsPort: Int = 9090

    // MARK: TLS

    /// PEM certificate chain for `wss://`; TLS is on when both files are given.
    public var tlsCertificateFile: String?
    /// PEM private key for `wss://`.
    public var tlsKeyFile: String?

    // MARK: Frames and rate limits (per connection)

    /// The largest WebSocket message accepted; a larger one is answered `FRAME_TOO_LARGE` + close 1009.
    public var frameSizeMaxBytes: Int = 64 * 1024
    /// Messages per second a connection may send (token bucket rate).
    public var messagesPerSecond: Int = 50
    /// Messages a connection may send in a burst (token bucket size).
    public var messageBurst: Int = 100
    /// Bytes per second a connection may send (token bucket rate).
    public var bytesPerSecond: Int = 1024 * 1024
    /// Bytes a connection may send in a burst (token bucket size); at least `frameSizeMaxBytes`.
    public var byteBurst: Int = 1024 * 1024

    // MARK: Connection and room caps

    /// Open connections, in every state, across the relay.
    public var connectionsMax: Int = 16_384
    /// Open connections from one IP address.
    public var connectionsPerAddressMax: Int = 64
    /// New room joins per IP address per minute (a token bucket with a burst of the same size).
    public var joinsPerAddressPerMinute: Int = 120
    /// Rooms open at once.
    public var roomsMax: Int = 100_000

    // MARK: Timeouts and liveness

    /// Seconds from TCP accept to a finished TLS + WebSocket upgrade (slowloris on the handshake).
    public var handshakeTimeoutSeconds: Int = 10
    /// Seconds without any inbound frame (pongs count) before a connection is closed.
    public var idleTimeoutSeconds: Int = 75
    /// Seconds between the relay's pings on a quiet connection (a live client's pong keeps it
    /// from going idle; a dead peer stays silent and is closed at the idle timeout).
    public var pingIntervalSeconds: Int = 20
    /// Seconds the relay waits for peers to answer its close frames at shutdown.
    public var shutdownGraceSeconds: Int = 3

    // MARK: Outbound backpressure

    /// Outbound bytes queued on a connection above which its room-mate's reads are paused.
    public var outboundQueueHighBytes: Int = 256 * 1024
    /// Outbound bytes below which the paused room-mate resumes.
    public var outboundQueueLowBytes: Int = 64 * 1024

    public init() {}

    /// Whether `wss://` is configured.
    public var usesTLS: Bool { tlsCertificateFile != nil }

    /// A limit that does not make sense, with the flag that sets it.
    public struct Invalid: Error, Hashable, Sendable, CustomStringConvertible {
        public var flag: String
        public var reason: String
        public var description: String { "--\(flag): \(reason)" }
    }

    /// Check every limit and their relations.
    public func validate() throws(Invalid) {
        func require(_ condition: Bool, _ flag: String, _ reason: String) throws(Invalid) {
            if !condition { throw Invalid(flag: flag, reason: reason) }
        }
        try require((0...65_535).contains(port), "port", "must be 0-65535")
        try require((-1...65_535).contains(metricsPort), "metrics-port", "must be -1 (off) or 0-65535")
        try require(
            (tlsCertificateFile == nil) == (tlsKeyFile == nil), "tls-cert-file",
            "give both --tls-cert-file and --tls-key-file"
        )
        try require(
            (128...(16 << 20)).contains(frameSizeMaxBytes), "frame-size-max-bytes", "must be 128 B to 16 MiB"
        )
        try require((1...(1 << 30)).contains(messagesPerSecond), "messages-per-second", "must be 1 to 2^30")
        try require((1...(1 << 30)).contains(messageBurst), "message-burst", "must be 1 to 2^30")
        try require((1...(1 << 32)).contains(bytesPerSecond), "bytes-per-second", "must be 1 B to 4 GiB")
        try require(
            byteBurst >= frameSizeMaxBytes && byteBurst <= 1 << 32, "byte-burst",
            "must be at least --frame-size-max-bytes (else a full-size frame never passes) and at most 4 GiB"
        )
        try require((1...1_000_000).contains(connectionsMax), "connections-max", "must be 1 to 1,000,000")
        try require(
            (1...connectionsMax).contains(connectionsPerAddressMax), "connections-per-address-max",
            "must be 1 to --connections-max"
        )
        try require(
            (1...1_000_000).contains(joinsPerAddressPerMinute), "joins-per-address-per-minute", "must be 1 to 1,000,000"
        )
        try require((1...10_000_000).contains(roomsMax), "rooms-max", "must be 1 to 10,000,000")
        try require((1...3600).contains(handshakeTimeoutSeconds), "handshake-timeout-seconds", "must be 1 to 3600")
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

    /// The room logic's limits derived from this configuration.
    var roomLimits: RelayRooms<ConnectionID>.Limits {
        RelayRooms<ConnectionID>.Limits(roomsMax: roomsMax, wire: WireLimits(frameSizeMaxBytes: frameSizeMaxBytes))
    }
}
