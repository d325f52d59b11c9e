import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

/// Settings of a ``WebSocketClient``.
public struct WebSocketClientConfiguration: Sendable {
    /// A PEM file of extra certificates to trust for `wss://` (a private CA or a self-signed relay
    /// certificate). They are added to the system trust store unless `trustSystemRoots` is false.
    public var caFilePath: String?
    /// Trust the operating system's certificate store for `wss://`.
    public var trustSystemRoots: Bool
    /// Give up on a TCP connection attempt after this long.
    public var connectTimeoutSeconds: Int64
    /// Give up when the TLS and HTTP upgrade handshakes have not finished this long after connecting.
    public var handshakeTimeoutSeconds: Int64
    /// The largest inbound message accepted (a larger one closes the connection with 1009).
    public var frameSizeMaxBytes: Int
    /// How many inbound messages ``WebSocketConnection/inbound`` buffers before the client stops
    /// reading from the socket (TCP backpressure then reaches the sender).
    public var inboundBufferMessagesMax: Int
    /// Every connection goes through this SOCKS5 proxy, which gets the relay's host name: the
    /// client then connects to nothing else and resolves no name. nil: straight to the relay.
    public var proxy: SOCKSProxy?
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, most wanted first (none: no header). The
    /// server's choice, if any, is handed to the upgraded channel's set-up; a choice that was not
    /// offered fails the connection (RFC 6455 §4.1).
    public var subprotocols: [String]

    public init(
        caFilePath: String? = nil,
        trustSystemRoots: Bool = true,
        connectTimeoutSeconds: Int64 = 10,
        handshakeTimeoutSeconds: Int64 = 10,
        frameSizeMaxBytes: Int = 1 << 20,
        inboundBufferMessagesMax: Int = 256,
        proxy: SOCKSProxy? = nil,
        subprotocols: [String] = []
    ) {
        precondition(connectTimeoutSeconds > 0 && handshakeTimeoutSeconds > 0, "timeouts must be positive")
        precondition(frameSizeMaxBytes >= 125 && frameSizeMaxBytes <= Int(UInt32.max), "frame cap out of range")
        precondition(inboundBufferMessagesMax >= 2, "the inbound buffer needs room for at least two messages")
        self.caFilePath = caFilePath
        self.trustSystemRoots = trustSystemRoots
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.handshakeTimeoutSeconds = handshakeTimeoutSeconds
        self.frameSizeMaxBytes = frameSizeMaxBytes
        self.inboundBufferMessagesMax = inboundBufferMessagesMax
        self.proxy = proxy
        self.subprotocols = subprotocols
    }
}

/// Why a WebSocket connection could not be opened.
public enum WebSocketClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The server answered the upgrade request without switching protocols.
    case upgradeRefused
    /// TCP connected, but TLS and the HTTP upgrade did not finish in time.
    case handshakeTimeout(seconds: Int64)
    /// The CA file could not be loaded.
    case invalidCAFile(path: String, reason: String)
    /// The connection ended before the upgrade finished.
    case closedDuringHandshake
    /// The server selected a subprotocol the client did not offer.
    case unofferedSubprotocol(String)
    /// wss:// to an IP address through a proxy: NIOSSL would check the certificate against the
    /// address it is connected to, the proxy's, so the relay's identity could not be verified.
    case addressWithTLSThroughProxy
    /// A `.onion` host without a proxy: reachable only through Tor, and never looked up.
    case onionWithoutProxy

    public var description: String {
        switch self {
        case .upgradeRefused: "the server refused the WebSocket upgrade"
        case let .handshakeTimeout(seconds): "the WebSocket handshake did not finish within \(seconds) s"
        case let .invalidCAFile(path, reason): "cannot load CA file \(path): \(reason)"
        case .closedDuringHandshake: "the connection closed during the WebSocket handshake"
        case let .unofferedSubprotocol(name):
            "the server selected the subprotocol \(name.debugDescription), which was not offered"
        case .addressWithTLSThroughProxy:
            "wss:// through a proxy needs the relay's host name (its certificate is checked against it)"
        case .onionWithoutProxy: "a .onion relay is reachable only through Tor (a SOCKS5 proxy)"
        }
    }
}

/// One inbound WebSocket message, as ``WebSocketConnection/inbound`` delivers it.
///
/// Fragmented messages arrive whole; pings are answered and pongs swallowed by the client.
public enum WebSocketMessage: Sendable {
    /// A text message (the relay protocol's JSON frames).
    case text(ByteBuffer)
    /// A binary message.
    case binary(ByteBuffer)
    /// The peer's close frame: its status code (nil when the frame carried none) and reason.
    /// The close is answered automatically and the inbound sequence ends after this element.
    case close(code: WebSocketErrorCode?, reason: String)
}

/// A WebSocket client for `ws://` and `wss://` URLs, on SwiftNIO.
///
/// Create one per configuration (it builds its TLS context once) and open any number of
/// connections with it. Two ways to use a connection:
///
/// - ``withConnection(to:_:)``: structured concurrency. The closure gets a ``WebSocketConnection``
///   with an `AsyncSequence` of inbound messages (bounded, with backpressure) and `send`/`close`;
///   the connection is closed when the closure returns or throws.
/// - ``connect(to:configureUpgradedChannel:)``: the upgraded NIO `Channel`, for callers that want
///   to run their own handlers on the event loop (the load generator does, to measure the relay
///   rather than task switches). The channel's pipeline then carries `WebSocketFrame`s, which the
///   caller must mask (RFC 6455 §5.3: every client frame is masked).
///
/// ```swift
/// let client = try WebSocketClient()
/// try await client.withConnection(to: WebSocketURL("ws://127.0.0.1:8080/")) { connection in
///     try await connection.send(text: #"{"type":"JOIN","room":"ROOM1"}"#)
///     for try await message in connection.inbound {
///         if case let .text(buffer) = message { print(String(buffer: buffer)) }
///     }
/// }
/// ```
public final class WebSocketClient: Sendable {
    public let configuration: WebSocketClientConfiguration
    let eventLoopGroup: any EventLoopGroup
    /// Built once: loading the system trust store is far slower than a handshake.
    let tlsContext: NIOSSLContext

    /// - Parameters:
    ///   - configuration: trust, timeouts and limits.
    ///   - eventLoopGroup: where connections run; NIO's shared singleton group by default.
    public init(
        configuration: WebSocketClientConfiguration = WebSocketClientConfiguration(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if !configuration.trustSystemRoots {
            tls.trustRoots = .certificates([])
        }
        if let path = configuration.caFilePath {
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(path)
                guard !certificates.isEmpty else {
                    throw WebSocketClientError.invalidCAFile(path: path, reason: "no PEM certificate in the file")
                }
                if configuration.trustSystemRoots {
                    tls.additionalTrustRoots = [.certificates(certificates)]
                } else {
                    tls.trustRoots = .certificates(certificates)
                }
            } catch let error as WebSocketClientError {
                throw error
            } catch {
                throw WebSocketClientError.invalidCAFile(path: path, reason: "\(error)")
            }
        }
        self.tlsContext = try NIOSSLContext(configuration: tls)
    }

    /// Open a connection, run `body` with it, and close it when `body` returns or throws.
    ///
    /// The inbound sequence ends when the connection closes; it throws if the connection failed.
    public func withConnection<Result>(
        to url: WebSocketURL,
        _ body: (WebSocketConnection) async throws -> Result
    ) async throws -> Result {
        let bufferMax = configuration.inboundBufferMessagesMax
        let (asyncChannel, subprotocol) = try await connect(to: url) { channel, subprotocol in
            try channel.pipeline.syncOperations.addHandler(WebSocketClientMessageHandler())
            let asyncChannel = try NIOAsyncChannel<WebSocketMessage, WebSocketFrame>(
                wrappingChannelSynchronously: channel,
                configuration: .init(
                    backPressureStrategy: .init(lowWatermark: max(1, bufferMax / 4), highWatermark: bufferMax)
                )
            )
            return (asyncChannel, subprotocol)
        }
        return try await asyncChannel.executeThenClose { inbound, outbound in
            try await body(
                WebSocketConnection(url: url, subprotocol: subprotocol, inbound: inbound, outbound: outbound))
        }
    }

    /// Open a connection and hand the upgraded channel to `configureUpgradedChannel`, which runs
    /// on the channel's event loop and adds the caller's handlers (use `syncOperations`).
    ///
    /// When it runs, the pipeline holds the WebSocket frame encoder and decoder (with the frame
    /// cap), the protocol error handler (closes with 1002/1009 on bad frames) and a frame
    /// aggregator (fragments arrive joined). Control frames reach the caller's handlers.
    public func connect<Output: Sendable>(
        to url: WebSocketURL,
        configureUpgradedChannel: @escaping @Sendable (any Channel) throws -> Output
    ) async throws -> Output {
        try await connect(to: url) { channel, _ in try configureUpgradedChannel(channel) }
    }

    /// As ``connect(to:configureUpgradedChannel:)``, and `configureUpgradedChannel` also gets the
    /// subprotocol the server selected from `configuration.subprotocols` (nil: none).
    public func connect<Output: Sendable>(
        to url: WebSocketURL,
        configureUpgradedChannel: @escaping @Sendable (any Channel, String?) throws -> Output
    ) async throws -> Output {
        let handshakeTimeoutSeconds = configuration.handshakeTimeoutSeconds
        let timedOut = HandshakeTimeout()
        let socks = SOCKSHandshakeRecord()
        do {
            let upgradeResult: EventLoopFuture<Output> = try await openChannel(
                to: url, connectTimeoutSeconds: configuration.connectTimeoutSeconds, socks: socks
            ) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let result = try self.addHandshakeHandlers(to: channel, url: url, configureUpgradedChannel)
                    // Bound the handshake (SOCKS, TLS, HTTP upgrade): a server that accepts TCP and
                    // then says nothing must not hold the caller forever.
                    let timeout = channel.eventLoop.scheduleTask(in: .seconds(handshakeTimeoutSeconds)) {
                        timedOut.fired.store(true, ordering: .relaxed)
                        channel.close(mode: .all, promise: nil)
                    }
                    result.whenComplete { _ in timeout.cancel() }
                    return result
                }
            }
            return try await upgradeResult.get()
        } catch {
            throw handshakeFailure(
                error, timedOut: timedOut.fired.load(ordering: .relaxed), handshakeTimeoutSeconds, socks: socks)
        }
    }

    /// A TCP connection for `url`, with `initializer` run on the new channel. Without a proxy, to
    /// the relay's host (resolved by NIO). With one, to the proxy's numeric address only, with the
    /// SOCKS handlers first in the pipeline and the relay's host name sent to the proxy: nothing
    /// is resolved, and there is no path that reaches the relay without the proxy.
    func openChannel<Output: Sendable>(
        to url: WebSocketURL, connectTimeoutSeconds: Int64, socks: SOCKSHandshakeRecord,
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        let bootstrap = ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(.seconds(connectTimeoutSeconds))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        guard let proxy = configuration.proxy else {
            // Never a lookup or a connection for an onion name outside Tor (the command line refuses
            // it first; this holds for every other caller).
            if url.hostIsOnion { throw WebSocketClientError.onionWithoutProxy }
            return try await bootstrap.connect(host: url.host, port: url.port, channelInitializer: initializer)
        }
        if url.usesTLS && url.hostIsIPAddress { throw WebSocketClientError.addressWithTLSThroughProxy }
        return try await bootstrap.connect(to: proxy.address) { channel in
            do {
                try SOCKSTunnel.addHandlers(
                    to: channel, authentication: proxy.authentication, host: url.host, port: url.port, record: socks)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            return initializer(channel)
        }
    }

    /// TLS (with SNI and certificate verification against the relay's host name, never against the
    /// address the socket is connected to, which may be a proxy's), the HTTP upgrade to WebSocket,
    /// and the caller's handlers once upgraded. Returns the upgrade's result.
    private func addHandshakeHandlers<Output: Sendable>(
        to channel: any Channel, url: WebSocketURL,
        _ configureUpgradedChannel: @escaping @Sendable (any Channel, String?) throws -> Output
    ) throws -> EventLoopFuture<Output> {
        let offered = configuration.subprotocols
        let frameSizeMaxBytes = configuration.frameSizeMaxBytes
        if url.usesTLS {
            let handler = try NIOSSLClientHandler(
                context: tlsContext, serverHostname: url.hostIsIPAddress ? nil : url.host)
            try channel.pipeline.syncOperations.addHandler(handler)
            // Through a proxy the socket's peer is the proxy: only the relay's name may match.
            if configuration.proxy != nil {
                try channel.pipeline.syncOperations.addHandler(RelayNameVerifier(host: url.host))
            }
        }
        let upgrader = NIOTypedWebSocketClientUpgrader<Output>(
            maxFrameSize: frameSizeMaxBytes,
            enableAutomaticErrorHandling: true,
            upgradePipelineHandler: { channel, response in
                channel.eventLoop.makeCompletedFuture {
                    // RFC 6455 §4.1: at most one value, and one the client offered.
                    let selections = response.headers[canonicalForm: "Sec-WebSocket-Protocol"]
                    if selections.count > 1 {
                        throw WebSocketClientError.unofferedSubprotocol(selections.joined(separator: ", "))
                    }
                    let selected = selections.first.map(String.init)
                    if let selected, !offered.contains(selected) {
                        throw WebSocketClientError.unofferedSubprotocol(selected)
                    }
                    // NIO's encoder masks byte by byte: ours writes the same bytes a word at a time.
                    let pipeline = channel.pipeline.syncOperations
                    let nioEncoder = try pipeline.context(handlerType: WebSocketFrameEncoder.self)
                    try pipeline.addHandler(
                        ClientFrameEncoder(writingPast: nioEncoder), position: .after(nioEncoder.handler))
                    try channel.pipeline.syncOperations.addHandler(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0,
                            maxAccumulatedFrameCount: 1024,
                            maxAccumulatedFrameSize: frameSizeMaxBytes
                        )
                    )
                    return try configureUpgradedChannel(channel, selected)
                }
            }
        )
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: url.hostHeader)
        headers.add(name: "Content-Length", value: "0")
        if !offered.isEmpty { headers.add(name: "Sec-WebSocket-Protocol", value: offered.joined(separator: ", ")) }
        let requestHead = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.requestTarget, headers: headers)
        let upgradeConfiguration = NIOTypedHTTPClientUpgradeConfiguration<Output>(
            upgradeRequestHead: requestHead,
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.close(promise: nil)
                return channel.eventLoop.makeFailedFuture(WebSocketClientError.upgradeRefused)
            }
        )
        var pipelineConfiguration = NIOUpgradableHTTPClientPipelineConfiguration(
            upgradeConfiguration: upgradeConfiguration
        )
        // A server may send frames in the same segment as its 101 response (the relay does when it
        // refuses a connection): hand those bytes to the WebSocket decoder instead of dropping them
        // with the HTTP decoder (NIO's default).
        pipelineConfiguration.leftOverBytesStrategy = .forwardBytes
        return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
            configuration: pipelineConfiguration
        )
    }

    /// The error to report for a failed handshake: the proxy's own typed error when it caused it;
    /// ours when the timeout closed the channel (the close fails the upgrade with whatever error
    /// the pipeline saw first) or the connection ended before the upgrade (NIO's upgrade handler
    /// reports that as an inappropriate operation for its state); otherwise the pipeline's own
    /// (TLS, resolution, connection).
    private func handshakeFailure(
        _ error: any Error, timedOut: Bool, _ seconds: Int64, socks: SOCKSHandshakeRecord
    ) -> any Error {
        if let proxyError = socks.error { return proxyError }
        if error is WebSocketClientError || error is SOCKSProxyError { return error }
        let closed = if let error = error as? ChannelError {
            error == .ioOnClosedChannel || error == .alreadyClosed || error == .inappropriateOperationForState
                || error == .eof
        } else {
            false
        }
        if configuration.proxy != nil && !socks.established {
            if timedOut { return SOCKSProxyError.timedOut(seconds: seconds) }
            if closed { return SOCKSProxyError.closedBeforeEstablished }
        }
        if timedOut { return WebSocketClientError.handshakeTimeout(seconds: seconds) }
        if closed { return WebSocketClientError.closedDuringHandshake }
        return error
    }
}

/// Set when the handshake timeout closed the channel, so the failure is reported as a timeout.
private final class HandshakeTimeout: Sendable {
    let fired = Atomic(false)
}

/// An open WebSocket connection, lent to the closure of ``WebSocketClient/withConnection(to:_:)``.
///
/// `inbound` has one consumer; `send` and `close` may be called from any task while the closure runs.
public struct WebSocketConnection: Sendable {
    /// The URL this connection was opened to.
    public let url: WebSocketURL
    /// The subprotocol the server selected from those offered (nil: none).
    public let subprotocol: String?
    /// Inbound messages in arrival order. At most `inboundBufferMessagesMax` wait here; past that
    /// the client stops reading the socket. Ends after a ``WebSocketMessage/close(code:reason:)``
    /// or when the TCP connection ends.
    public let inbound: NIOAsyncChannelInboundStream<WebSocketMessage>
    private let outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>

    init(
        url: WebSocketURL,
        subprotocol: String? = nil,
        inbound: NIOAsyncChannelInboundStream<WebSocketMessage>,
        outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
    ) {
        self.url = url
        self.subprotocol = subprotocol
        self.inbound = inbound
        self.outbound = outbound
    }

    /// Send one text message. Suspends while the socket's write buffer is full.
    public func send(text: String) async throws {
        try await send(textBuffer: ByteBuffer(string: text))
    }

    /// Send one text message from bytes (the caller guarantees UTF-8).
    public func send(textBytes: some Sequence<UInt8>) async throws {
        try await send(textBuffer: ByteBuffer(bytes: textBytes))
    }

    /// Send one text message from a buffer (the caller guarantees UTF-8).
    public func send(textBuffer: ByteBuffer) async throws {
        try await outbound.write(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: textBuffer))
    }

    /// Send one binary message.
    public func send(binary: ByteBuffer) async throws {
        try await outbound.write(WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: binary))
    }

    /// Send a close frame. The server answers with its own close frame, after which `inbound`
    /// ends; the TCP connection is closed when the `withConnection` closure returns.
    public func close(code: WebSocketErrorCode = .normalClosure, reason: String = "") async throws {
        try await outbound.write(WebSocketFrame.close(code: code, reason: reason, masked: true))
    }
}

extension WebSocketFrame {
    /// A close frame carrying `code` and at most 123 bytes of `reason` (RFC 6455 §5.5: control
    /// frame payloads are at most 125 bytes).
    public static func close(code: WebSocketErrorCode, reason: String = "", masked: Bool) -> WebSocketFrame {
        var data = ByteBuffer()
        data.write(webSocketErrorCode: code)
        var reasonBytes = Array(reason.utf8.prefix(123))
        // Do not cut a multi-byte character in half.
        while let last = reasonBytes.last, last & 0xC0 == 0x80 || last >= 0xC0 {
            reasonBytes.removeLast()
            if last >= 0xC0 { break }
        }
        data.writeBytes(reasonBytes)
        return WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: masked ? .random() : nil, data: data)
    }

    /// The status code and reason of a close frame (nil code when the frame carries none).
    public var closeStatus: (code: WebSocketErrorCode?, reason: String) {
        var data = unmaskedData
        guard let code = data.readWebSocketErrorCode() else { return (nil, "") }
        return (code, data.readString(length: data.readableBytes) ?? "")
    }
}

/// Turns the client's inbound frames into ``WebSocketMessage``s: answers pings, swallows pongs,
/// answers a close frame and then closes the channel.
final class WebSocketClientMessageHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketMessage
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var sentClose = false
    private var receivedClose = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard !receivedClose else { return }
        switch frame.opcode {
        case .text:
            context.fireChannelRead(wrapInboundOut(.text(frame.unmaskedData)))
        case .binary:
            context.fireChannelRead(wrapInboundOut(.binary(frame.unmaskedData)))
        case .ping:
            guard !sentClose else { return }
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            break
        case .connectionClose:
            receivedClose = true
            let status = frame.closeStatus
            context.fireChannelRead(wrapInboundOut(.close(code: status.code, reason: status.reason)))
            if sentClose {
                context.close(promise: nil)
            } else {
                // Echo the status (RFC 6455 §5.5.1), then close the TCP connection.
                sentClose = true
                let echo = WebSocketFrame.close(code: status.code ?? .normalClosure, masked: true)
                writeThenClose(context: context, echo)
            }
        default:
            // Continuations never get here (the aggregator joins them); reserved opcodes are
            // protocol errors.
            let close = WebSocketFrame.close(code: .protocolError, masked: true)
            sentClose = true
            writeThenClose(context: context, close)
        }
    }

    private func writeThenClose(context: ChannelHandlerContext, _ frame: WebSocketFrame) {
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(frame), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        if frame.opcode == .connectionClose {
            guard !sentClose else {
                promise?.succeed(())
                return
            }
            sentClose = true
        }
        context.write(data, promise: promise)
    }
}

extension WebSocketErrorCode {
    /// 1013 Try Again Later (IANA WebSocket close code registry): a temporary condition, such as
    /// a full server, that a client may retry after a while. NIO has no named case for it.
    public static let tryAgainLater = WebSocketErrorCode.unknown(1013)
}
