import Foundation
import ChatCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import RelayCore
import ServiceLifecycle

/// Where a running relay listens (the actual ports when 0 was asked for).
public struct RelayAddresses: Sendable, Hashable, CustomStringConvertible {
    public var webSocketURL: String
    public var metricsURL: String?

    /// The startup line tests and scripts parse.
    public var description: String {
        "relay listening on \(webSocketURL) metrics on \(metricsURL ?? "off")"
    }
}

/// The relay as a swift-service-lifecycle `Service`: binds, serves until graceful shutdown
/// (SIGTERM/SIGINT through the `ServiceGroup`), then says goodbye to every peer with close 1001.
///
/// Why plain SwiftNIO and not hummingbird-websocket: the relay's per-frame work is a synchronous
/// call into RelayCore's `RelayEngine` and a write to the peer's channel, which is exactly a NIO
/// channel handler; hummingbird-websocket hands every connection to an async task with an
/// inbound `AsyncSequence`, which adds a task switch per frame and a task per idle connection,
/// and would still need NIO-level code for read pausing, the handshake timeout and per-address
/// admission at accept time. BENCHMARKS.md records what was and was not measured.
public struct RelayService: Service {
    public let configuration: RelayConfiguration
    /// Socket reads per readable event (NIO's `maxMessagesPerRead`); see where it is set.
    static let readsPerBatch: UInt = 1
    private let logger: Logger
    private let onListening: @Sendable (RelayAddresses) -> Void

    /// - Parameter onListening: called once both listeners are bound (the binary prints the line).
    public init(
        configuration: RelayConfiguration, logger: Logger, onListening: @escaping @Sendable (RelayAddresses) -> Void
    ) throws(InvalidRelaySetting) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let configuration = self.configuration
        let logger = self.logger
        let sslContext = try Self.makeSSLContext(configuration)
        // One event loop for all connections: see RelayHub for why.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let metrics = RelayMetrics()
        let cluster = try Self.clusterSetup(configuration)
        let hub = try await loop.submit {
            NIOLoopBound(
                try RelayHub(
                    configuration: configuration, eventLoop: loop, metrics: metrics, logger: logger, cluster: cluster),
                eventLoop: loop)
        }.get()

        let server: any Channel
        var metricsServer: (any Channel)?
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 4096)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                // One read (at most 64 KiB, NIO's adaptive buffer) per readable event: a read batch
                // is what the engine sees before a pause takes effect, so this bounds what one
                // flooding connection costs between two turns of every other connection (16
                // reads of 6-byte pings were 175,000 frames, a 350 ms stall of a debug build).
                // Reads short of the buffer, the usual case, ended the batch at one read anyway.
                .childChannelOption(.maxMessagesPerRead, value: RelayService.readsPerBatch)
                .childChannelOption(
                    .writeBufferWaterMark,
                    value: .init(
                        low: configuration.limits.outboundQueueLowBytes,
                        high: configuration.limits.outboundQueueHighBytes)
                )
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try Self.initialize(channel, hub: hub.value, sslContext: sslContext)
                    }
                }
                .bind(host: configuration.host, port: configuration.port).get()
            if configuration.metricsPort >= 0 {
                let health: @Sendable () -> EventLoopFuture<RelayHealth> = { [server] in
                    loop.submit {
                        guard server.isActive else { return .shuttingDown }
                        return hub.value.isClusterDegraded ? .degraded : .ok
                    }
                }
                let exposition: @Sendable () -> EventLoopFuture<[UInt8]> = { loop.submit { hub.value.exportMetrics() } }
                metricsServer = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                            try channel.pipeline.syncOperations.addHandler(
                                MetricsHTTPHandler(exposition: exposition, health: health)
                            )
                        }
                    }
                    .bind(host: configuration.metricsHost, port: configuration.metricsPort).get()
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }

        let scheme = configuration.usesTLS ? "wss" : "ws"
        let addresses = RelayAddresses(
            webSocketURL:
                "\(scheme)://\(Self.urlHost(configuration.host)):\(server.localAddress?.port ?? configuration.port)",
            metricsURL: metricsServer.map {
                let port = $0.localAddress?.port ?? configuration.metricsPort
                return "http://\(Self.urlHost(configuration.metricsHost)):\(port)"
            }
        )
        try await loop.submit { hub.value.start() }.get()
        logger.info(
            "relay started",
            metadata: [
                "tls": "\(configuration.usesTLS)", "connections_max": "\(configuration.limits.connectionsMax)",
                "frame_size_max_bytes": "\(configuration.limits.frameSizeMaxBytes)",
            ]
        )
        onListening(addresses)

        // Serve until SIGTERM/SIGINT (graceful) or cancellation.
        try? await gracefulShutdown()

        logger.info("relay shutting down: closing listeners, then every connection with 1001")
        try? await server.close()
        try await loop.flatSubmit { hub.value.shutdown() }.get()
        try await loop.flatSubmit { hub.value.stopCluster() }.get()
        try? await metricsServer?.close()
        let remaining = try await loop.submit { hub.value.engine.openConnectionCount }.get()
        logger.info("relay stopped", metadata: ["connections_left": "\(remaining)"])
        try await group.shutdownGracefully()
    }

    /// Set up an accepted connection: admission (the engine's), TLS, HTTP with the WebSocket
    /// upgrader. The engine times the handshake. Runs on the hub's event loop.
    private static func initialize(_ channel: any Channel, hub: RelayHub, sslContext: NIOSSLContext?) throws {
        guard let handler = hub.accept(channel) else {
            hub.logger.debug("connection dropped: far over the connection caps")
            channel.close(promise: nil)
            return
        }
        if hub.configuration.limits.trustProxy == .proxyProtocol {
            try channel.pipeline.syncOperations.addHandler(ProxyHeaderHandler(hub: hub, id: handler.id))
        }
        if let sslContext {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
        }
        let gate = ReadGate()
        handler.gate = gate
        try channel.pipeline.syncOperations.addHandler(gate)
        let frameSizeMaxBytes = hub.configuration.limits.frameSizeMaxBytes
        let notWebSocket = NIOLoopBound(NotWebSocketHandler(hub: hub, id: handler.id), eventLoop: channel.eventLoop)
        let connection = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        let fragments = NIOLoopBound(FragmentCounter(hub: hub, id: handler.id), eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: frameSizeMaxBytes,
            // The relay answers protocol errors itself: a typed ERROR, then the close code.
            automaticErrorHandling: false,
            shouldUpgrade: { channel, head in
                // Binary SIGNALs when the client offers them (docs/PROTOCOL.md, "Binary SIGNALs").
                var headers = HTTPHeaders()
                if RelayService.offersBinarySignals(head) {
                    headers.add(name: "Sec-WebSocket-Protocol", value: BinarySignal.subprotocol)
                }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    connection.value.binarySignals = RelayService.offersBinarySignals(head)
                    channel.pipeline.syncOperations.removeHandler(notWebSocket.value, promise: nil)
                    try channel.pipeline.syncOperations.addHandler(fragments.value)
                    try channel.pipeline.syncOperations.addHandler(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0,
                            maxAccumulatedFrameCount: 1024,
                            maxAccumulatedFrameSize: frameSizeMaxBytes
                        )
                    )
                    try channel.pipeline.syncOperations.addHandler(connection.value)
                }
            }
        )
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            withErrorHandling: true
        )
        try channel.pipeline.syncOperations.addHandler(notWebSocket.value)
    }

    /// Whether the upgrade request offers `securechat.binary` among its subprotocols (a
    /// comma-separated list, possibly over several `Sec-WebSocket-Protocol` headers).
    static func offersBinarySignals(_ head: HTTPRequestHead) -> Bool {
        head.headers["Sec-WebSocket-Protocol"].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == BinarySignal.subprotocol }
        }
    }

    /// Cluster mode's settings: the endpoint, the password read from its file (one trailing
    /// newline dropped), and this node's identity: its name and a random incarnation, so that a
    /// node restarted under the same name never mistakes the seats of its previous life.
    private static func clusterSetup(_ configuration: RelayConfiguration) throws -> ClusterSetup? {
        guard let url = configuration.redisURL else { return nil }
        let endpoint = try RedisEndpoint(url: url)
        var password: [UInt8]?
        if let file = configuration.redisPasswordFile {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw InvalidRelaySetting(flag: "redis-password-file", reason: "cannot read \(file)")
            }
            var bytes = [UInt8](data)
            if bytes.last == 10 { bytes.removeLast() }
            if bytes.last == 13 { bytes.removeLast() }
            password = bytes
        }
        let entropy = SystemEntropy()
        let name = configuration.nodeName ?? "node-" + String(entropy.nextUInt64() & 0xFFFF_FFFF, radix: 16)
        let incarnation = String(format: "%08x", UInt32(truncatingIfNeeded: entropy.nextUInt64()))
        var sslContext: NIOSSLContext?
        if endpoint.usesTLS {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            if let caFile = configuration.redisCAFile {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            }
            sslContext = try NIOSSLContext(configuration: tls)
        }
        return ClusterSetup(
            endpoint: endpoint, password: password, sslContext: sslContext, identity: name + "." + incarnation)
    }

    private static func makeSSLContext(_ configuration: RelayConfiguration) throws -> NIOSSLContext? {
        guard let certificateFile = configuration.tlsCertificateFile, let keyFile = configuration.tlsKeyFile else {
            return nil
        }
        let chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        guard !chain.isEmpty else {
            throw InvalidRelaySetting(flag: "tls-cert-file", reason: "no PEM certificate in \(certificateFile)")
        }
        let key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        tls.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: tls)
    }

    private static func urlHost(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }
}
