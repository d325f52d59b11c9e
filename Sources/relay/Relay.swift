import ArgumentParser
import CBuildInfo
import ChatNetworking
import Logging
import RelayCore
import RelayServer
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// `relay`: the blind WebSocket relay of securechat.
@main
struct Relay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "The blind WebSocket relay: pairs two peers per room and forwards their SIGNALs unread.",
        discussion: """
            Serves the original protocol (JOIN, PEER_FOUND, SIGNAL; JSON text frames) plus JOINED, \
            PEER_LEFT and typed ERRORs. Prints one line when ready:
              relay listening on ws://HOST:PORT metrics on http://HOST:PORT
            /healthz and /metrics (Prometheus, counts only) are served on the metrics port. \
            Nothing is written to disk; at the default log level no room code, payload or address \
            is logged. SIGTERM or SIGINT: every peer gets SHUTTING_DOWN and close 1001, then exit.
            """,
        version: "relay " + String(cString: securechat_build_description())
    )

    @Option(help: "Address to bind the WebSocket listener to.")
    var host = RelayConfiguration.defaults.host
    @Option(help: "WebSocket port (0: any free port, printed at startup).")
    var port = RelayConfiguration.defaults.port
    @Option(help: "PEM certificate chain; with --tls-key-file the relay serves wss://.")
    var tlsCertFile: String?
    @Option(help: "PEM private key for --tls-cert-file.")
    var tlsKeyFile: String?
    @Option(help: "Address of the /healthz and /metrics listener.")
    var metricsHost = RelayConfiguration.defaults.metricsHost
    @Option(help: "Metrics port (0: any free port; --metrics-port=-1: no metrics listener).")
    var metricsPort = RelayConfiguration.defaults.metricsPort

    @Option(help: "Cluster mode: the Redis holding every node's rooms, redis[s]://HOST:PORT (default: none, one node).")
    var redis: String?
    @Option(help: "PEM certificates to trust for a rediss:// Redis (default: the system's roots).")
    var redisCaFile: String?
    @Option(help: "A file holding the Redis password (never put it on the command line).")
    var redisPasswordFile: String?
    @Option(help: "This node's name in logs, metrics and Redis (with --redis; default: random).")
    var nodeId: String?

    @Option(help: "Largest WebSocket message accepted; larger ones get FRAME_TOO_LARGE and close 1009.")
    var frameSizeMaxBytes = RelayLimits.defaults.frameSizeMaxBytes
    @Option(help: "Messages per second per connection (token bucket rate); over it: RATE_LIMITED.")
    var messagesPerSecond = RelayLimits.defaults.messagesPerSecond
    @Option(help: "Message burst per connection (token bucket size).")
    var messageBurst = RelayLimits.defaults.messageBurst
    @Option(help: "Bytes per second per connection (token bucket rate).")
    var bytesPerSecond = RelayLimits.defaults.bytesPerSecond
    @Option(help: "Byte burst per connection (token bucket size; at least --frame-size-max-bytes).")
    var byteBurst = RelayLimits.defaults.byteBurst
    @Option(help: "Messages per second per connection while its room has both peers (a file transfer).")
    var pairedMessagesPerSecond = RelayLimits.defaults.pairedMessagesPerSecond
    @Option(help: "Message burst per connection while paired.")
    var pairedMessageBurst = RelayLimits.defaults.pairedMessageBurst
    @Option(help: "Bytes per second per connection while paired (lower it to cap file transfers).")
    var pairedBytesPerSecond = RelayLimits.defaults.pairedBytesPerSecond
    @Option(help: "Byte burst per connection while paired.")
    var pairedByteBurst = RelayLimits.defaults.pairedByteBurst
    @Flag(help: "No bulk allowance: a paired connection keeps the rates above (as --paired-… 0).")
    var noPairedAllowance = false

    @Option(help: "Open connections across the relay; over it: TOO_MANY_CONNECTIONS and close 1013.")
    var connectionsMax = RelayLimits.defaults.connectionsMax
    @Option(help: "Open connections per IPv4 address or IPv6 /64; over it: TOO_MANY_CONNECTIONS and close 1013.")
    var connectionsPerAddressMax = RelayLimits.defaults.connectionsPerAddressMax
    @Option(name: .customLong("connections-per-ipv6-56-max"), help: "Open connections per IPv6 /56; over it: as above.")
    var connectionsPerIPv6Prefix56Max = RelayLimits.defaults.connectionsPerIPv6Prefix56Max
    @Option(name: .customLong("connections-per-ipv6-48-max"), help: "Open connections per IPv6 /48; over it: as above.")
    var connectionsPerIPv6Prefix48Max = RelayLimits.defaults.connectionsPerIPv6Prefix48Max
    @Option(help: "Open connections not (yet) in a room per address; over it: as above.")
    var roomlessConnectionsPerAddressMax = RelayLimits.defaults.roomlessConnectionsPerAddressMax
    @Option(
        help: ArgumentHelp(
            "Where client addresses come from: none (direct), shared-address (behind a Tor onion service or a "
                + "proxy that hides them: per-address caps off), proxy-protocol (a PROXY v2 header names them).",
            valueName: "mode"))
    var trustProxy = RelayLimits.defaults.trustProxy
    @Option(help: "New room joins per IPv4 address or IPv6 /64 per minute; over it: JOIN_RATE_LIMITED.")
    var joinsPerAddressPerMinute = RelayLimits.defaults.joinsPerAddressPerMinute
    @Option(help: "Rooms open at once; over it: TOO_MANY_ROOMS.")
    var roomsMax = RelayLimits.defaults.roomsMax

    @Option(help: "Seconds from accept to a finished TLS and WebSocket handshake; then the socket is closed.")
    var handshakeTimeoutSeconds = RelayLimits.defaults.handshakeTimeoutSeconds
    @Option(help: "Seconds without any inbound frame (pongs count); then IDLE_TIMEOUT and close 1008.")
    var idleTimeoutSeconds = RelayLimits.defaults.idleTimeoutSeconds
    @Option(help: "Seconds of quiet after which the relay pings a connection (must be below the idle timeout).")
    var pingIntervalSeconds = RelayLimits.defaults.pingIntervalSeconds
    @Option(help: "Seconds to wait at shutdown for peers to answer the close frame.")
    var shutdownGraceSeconds = RelayLimits.defaults.shutdownGraceSeconds
    @Option(help: "Seconds from the upgrade to joining a room; then JOIN_TIMEOUT and close 1008.")
    var joinTimeoutSeconds = RelayLimits.defaults.joinTimeoutSeconds
    @Option(help: "Seconds a departed peer's seat waits for its reconnect token (0: freed at once).")
    var seatGraceSeconds = RelayLimits.defaults.seatGraceSeconds
    @Option(help: "Protocol errors a connection may make; the next one gets TOO_MANY_ERRORS and close 1008.")
    var protocolErrorsMax = RelayLimits.defaults.protocolErrorsMax
    @Option(help: "Outbound bytes queued to a peer above which the sender's reads pause.")
    var outboundQueueHighBytes = RelayLimits.defaults.outboundQueueHighBytes
    @Option(help: "Outbound bytes below which the paused sender resumes.")
    var outboundQueueLowBytes = RelayLimits.defaults.outboundQueueLowBytes

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    // Every default above comes from its one definition (RelayConfiguration for the addresses,
    // RelayLimits for the limits), so `--help` shows what the relay does without the flag.

    func makeConfiguration() -> RelayConfiguration {
        var configuration = RelayConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.tlsCertificateFile = tlsCertFile
        configuration.tlsKeyFile = tlsKeyFile
        configuration.metricsHost = metricsHost
        configuration.metricsPort = metricsPort
        configuration.redisURL = redis
        configuration.redisPasswordFile = redisPasswordFile
        configuration.redisCAFile = redisCaFile
        configuration.nodeName = nodeId
        configuration.limits.frameSizeMaxBytes = frameSizeMaxBytes
        configuration.limits.messagesPerSecond = messagesPerSecond
        configuration.limits.messageBurst = messageBurst
        configuration.limits.bytesPerSecond = bytesPerSecond
        configuration.limits.byteBurst = byteBurst
        configuration.limits.pairedMessagesPerSecond = pairedMessagesPerSecond
        configuration.limits.pairedMessageBurst = pairedMessageBurst
        configuration.limits.pairedBytesPerSecond = pairedBytesPerSecond
        configuration.limits.pairedByteBurst = pairedByteBurst
        if noPairedAllowance { configuration.limits.removePairedAllowance() }
        configuration.limits.connectionsMax = connectionsMax
        configuration.limits.connectionsPerAddressMax = connectionsPerAddressMax
        configuration.limits.connectionsPerIPv6Prefix56Max = connectionsPerIPv6Prefix56Max
        configuration.limits.connectionsPerIPv6Prefix48Max = connectionsPerIPv6Prefix48Max
        configuration.limits.roomlessConnectionsPerAddressMax = roomlessConnectionsPerAddressMax
        configuration.limits.trustProxy = trustProxy
        configuration.limits.joinsPerAddressPerMinute = joinsPerAddressPerMinute
        configuration.limits.roomsMax = roomsMax
        configuration.limits.handshakeTimeoutSeconds = handshakeTimeoutSeconds
        configuration.limits.idleTimeoutSeconds = idleTimeoutSeconds
        configuration.limits.pingIntervalSeconds = pingIntervalSeconds
        configuration.limits.shutdownGraceSeconds = shutdownGraceSeconds
        configuration.limits.joinTimeoutSeconds = joinTimeoutSeconds
        configuration.limits.seatGraceSeconds = seatGraceSeconds
        configuration.limits.protocolErrorsMax = protocolErrorsMax
        configuration.limits.outboundQueueHighBytes = outboundQueueHighBytes
        configuration.limits.outboundQueueLowBytes = outboundQueueLowBytes
        return configuration
    }

    func validate() throws {
        do {
            try makeConfiguration().validate()
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "relay")
        do {
            let limits = try FileDescriptorLimit.raise()
            logger.debug("open-files limit raised", metadata: ["soft": "\(limits.soft)", "hard": "\(limits.hard)"])
        } catch {
            logger.warning("could not raise the open-files limit", metadata: ["error": "\(error)"])
        }
        let service = try RelayService(configuration: makeConfiguration(), logger: logger) { addresses in
            print(addresses.description)
            fflush(nil)  // stdout is a pipe in tests and scripts: make the line visible now
        }
        let group = ServiceGroup(
            services: [service], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger
        )
        try await group.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension TrustProxy: ExpressibleByArgument {}
