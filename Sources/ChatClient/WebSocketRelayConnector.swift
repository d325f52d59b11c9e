import ChatCore
import ChatNetworking
import ClientCore
import NIOCore
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The production `RelayConnector`: ChatNetworking's WebSocket client (ws:// and wss://, the
/// system trust store plus an optional CA file, optionally through a SOCKS5 proxy), with a small
/// handler that turns WebSocket frames into mailbox events and carries out the driver's pings,
/// pongs and closes.
public final class WebSocketRelayConnector: RelayConnector {
    private let client: WebSocketClient
    private let url: WebSocketURL
    /// Straight to the relay, or through which proxy: the words of failures depend on it.
    private let route: RelayRoute
    /// Failures carry NIO's raw error after the words for people (`--verbose`).
    private let verbose: Bool

    /// How long the SOCKS, TLS and WebSocket handshakes may take through a proxy: Tor builds a
    /// circuit, and reaching an onion service takes several round trips of a second or more each.
    public static let proxiedHandshakeTimeoutSeconds: Int64 = 60

    /// - Parameter proxy: every connection (and the certificate probe) goes through it; none is
    ///   made to anything else, and no name is resolved.
    /// - Parameter binarySignals: offer `securechat.binary` (binary SIGNALs where the relay selects it).
    /// - Throws: `RelayProblem.caFileUnusable` when the CA file cannot be used.
    public init(
        url: WebSocketURL, caFilePath: String?, frameSizeMaxBytes: Int, proxy: SOCKSProxy? = nil, verbose: Bool = false,
        binarySignals: Bool = true
    ) throws {
        self.url = url
        self.verbose = verbose
        self.route = proxy.map { $0.isTor ? .tor(endpoint: $0.endpoint) : .proxy(endpoint: $0.endpoint) } ?? .direct
        do {
            self.client = try WebSocketClient(configuration: WebSocketClientConfiguration(
                caFilePath: caFilePath,
                handshakeTimeoutSeconds: proxy == nil ? 10 : Self.proxiedHandshakeTimeoutSeconds,
                frameSizeMaxBytes: frameSizeMaxBytes, proxy: proxy,
                subprotocols: binarySignals ? [BinarySignal.subprotocol] : []))
        } catch {
            throw SetupFailure(problem: Self.classify(error, url: url), detail: verbose ? "\(error)" : nil)
        }
    }

    /// Why the connector could not be made: worded for people, the raw error with --verbose.
    public struct SetupFailure: Error, CustomStringConvertible {
        /// What went wrong (the CA file, in practice).
        public var problem: RelayProblem
        /// The raw error, with --verbose.
        public var detail: String?
        public var description: String { ClientNotice.withDetail(ClientNotice.describe(problem), detail) }
    }

    /// The outbound buffer's watermarks: over `high` the link is unwritable (the driver sends no file
    /// chunk, other frames are dropped), under `low` writable again. High enough for a transfer's
    /// window of chunks in flight (770 KB), so that a fast relay never makes the link
    /// unwritable; the rest of the backpressure is the relay's reading.
    static let outboundWatermark = ChannelOptions.Types.WriteBufferWaterMark(low: 512 * 1024, high: 2 * 1024 * 1024)

    public func open(_ id: ConnectionID, mailbox: Mailbox) -> any RelayLink {
        let link = ChannelRelayLink()
        let client = self.client
        let url = self.url
        let route = self.route
        let verbose = self.verbose
        Task {
            do {
                _ = try await client.connect(to: url) { channel, subprotocol in
                    let handler = RelayFrameHandler(id: id, mailbox: mailbox, verbose: verbose)
                    try channel.syncOptions?.setOption(.writeBufferWaterMark, value: Self.outboundWatermark)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    link.attach(channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    // Posted from the pipeline set-up, so it precedes every frame and the close.
                    mailbox.post(.transportUp(id))
                    if subprotocol == BinarySignal.subprotocol { mailbox.post(.transportBinarySignals(id)) }
                    return true
                }
            } catch {
                var problem = Self.classify(error, url: url, route: route)
                if problem == .certificateUntrusted {
                    problem = Self.certificateProblem(await client.presentedCertificateValidity(url))
                }
                mailbox.post(.transportFailed(id, TransportFailure(problem, detail: verbose ? "\(error)" : nil)))
            }
        }
        return link
    }

    /// What a failure to connect means (ClientCore decides from it whether to retry, and words it).
    /// NIO's and BoringSSL's errors are matched by type and code, never shown (but with --verbose).
    /// Through a proxy, a failure to open the TCP connection is the proxy's: it is the only
    /// address the client connects to.
    static func classify(_ error: any Error, url: WebSocketURL, route: RelayRoute = .direct) -> RelayProblem {
        let endpoint = url.host.contains(":") ? "[\(url.host)]:\(url.port)" : "\(url.host):\(url.port)"
        if route != .direct, let problem = proxyProblem(error) {
            return .proxy(problem, route: route, relay: endpoint)
        }
        switch error {
        case let error as WebSocketClientError:
            switch error {
            case .upgradeRefused: return .notWebSocket(endpoint: endpoint)
            case let .handshakeTimeout(seconds): return .timedOut(endpoint: endpoint, seconds: Int(seconds))
            case let .invalidCAFile(path, _): return .caFileUnusable(path: path)
            case .closedDuringHandshake: return .closedDuringHandshake(endpoint: endpoint, usesTLS: url.usesTLS)
            case .unofferedSubprotocol: return .unexpected
            case .addressWithTLSThroughProxy: return .tlsFailed  // Refused on the command line before this.
            case .onionWithoutProxy: return .onionWithoutTor(host: url.host)  // Also refused there first.
            }
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            return .certificateWrongHost(host: url.host)
        case let error as NIOSSLError:
            if case let .handshakeFailed(boringSSL) = error { return tlsProblem(boringSSL, endpoint: endpoint) }
            return .tlsFailed
        case let error as BoringSSLError:
            return tlsProblem(error, endpoint: endpoint)
        case let error as NIOConnectionError:
            if let failure = error.connectionErrors.last?.error { return classify(failure, url: url) }
            return .hostNotFound(host: url.host)
        case let error as IOError:
            return socketProblem(error.errnoCode, endpoint: endpoint)
        case let error as ChannelError:
            switch error {
            case let .connectTimeout(amount):
                return .timedOut(endpoint: endpoint, seconds: Int(amount.nanoseconds / 1_000_000_000))
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return .closedDuringHandshake(endpoint: endpoint, usesTLS: url.usesTLS)
            default:
                return .unexpected
            }
        default:
            // NIOHTTP1's parser error (the answer was not HTTP), without importing NIOHTTP1 for one name.
            if String(describing: type(of: error)) == "HTTPParserError" { return .notHTTP(endpoint: endpoint) }
            return .unexpected
        }
    }

    /// A failure that is the proxy's: its typed SOCKS errors, and not reaching it at all.
    private static func proxyProblem(_ error: any Error) -> ProxyProblem? {
        switch error {
        case let error as SOCKSProxyError:
            switch error {
            case let .connectionFailed(reply): return .refusedRelay(reply: reply)
            case .authenticationFailed: return .authenticationFailed
            case .noAcceptableMethod: return .noAcceptableMethod
            case .unexpectedMethod, .notSOCKS5, .malformedReply: return .notSOCKS5
            case .closedBeforeEstablished: return .closed
            case let .timedOut(seconds): return .timedOut(seconds: Int(seconds))
            case .targetNotRepresentable: return nil
            }
        case let error as IOError where [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT].contains(error.errnoCode):
            return .unreachable
        case let error as ChannelError:
            if case .connectTimeout = error { return .unreachable }
            return nil
        default:
            return nil
        }
    }

    /// A failed TLS handshake, from BoringSSL's error stack (its reason names are stable).
    private static func tlsProblem(_ error: BoringSSLError, endpoint: String) -> RelayProblem {
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") { return .certificateUntrusted }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("eofDuringHandshake") {
            return .notTLS(endpoint: endpoint)
        }
        return .tlsFailed
    }

    /// A socket's errno, for people.
    static func socketProblem(_ code: Int32, endpoint: String) -> RelayProblem {
        switch code {
        case ECONNREFUSED: .refused(endpoint: endpoint)
        case ENETUNREACH, EHOSTUNREACH: .unreachable(endpoint: endpoint)
        case ETIMEDOUT: .timedOut(endpoint: endpoint, seconds: 0)
        case ECONNRESET, EPIPE, ECONNABORTED: .reset
        default: .unexpected
        }
    }

    /// An unverifiable certificate, told apart by its dates (BoringSSL reports them all alike).
    static func certificateProblem(_ validity: CertificateValidity?, now: Int = time(nil)) -> RelayProblem {
        guard let validity else { return .certificateUntrusted }
        if validity.notAfter < now { return .certificateExpired }
        if validity.notBefore > now { return .certificateNotYetValid }
        return .certificateUntrusted
    }
}

/// A connection's channel, once the upgrade finished; `close` before then closes it on arrival.
final class ChannelRelayLink: RelayLink {
    private struct State {
        var channel: (any Channel)?
        var handler: NIOLoopBound<RelayFrameHandler>?
        var closed = false
    }

    private let state = Mutex(State())

    func attach(_ channel: any Channel, handler: NIOLoopBound<RelayFrameHandler>) {
        let closeNow = state.withLock { state -> Bool in
            state.channel = channel
            state.handler = handler
            return state.closed
        }
        if closeNow { channel.close(mode: .all, promise: nil) }
    }

    func send(_ frame: [UInt8]) {
        write(.text, ByteBuffer(bytes: frame))
    }

    func sendBinary(_ frame: [UInt8]) {
        write(.binary, ByteBuffer(bytes: frame))
    }

    func sendFileSignal(_ frame: [UInt8], binary: Bool) {
        write(binary ? .binary : .text, ByteBuffer(bytes: frame), overWatermark: true)
    }

    func ping() {
        write(.ping, ByteBuffer())
    }

    /// Answered on the event loop, at most one pong queued (see `RelayFrameHandler.pong`).
    func pong(_ payload: [UInt8]) {
        guard let (channel, handler) = state.withLock({ state -> ((any Channel), NIOLoopBound<RelayFrameHandler>)? in
            guard !state.closed, let channel = state.channel, let handler = state.handler else { return nil }
            return (channel, handler)
        }) else { return }
        let data = ByteBuffer(bytes: payload)
        channel.eventLoop.execute { handler.value.pong(data) }
    }

    /// Frames are dropped, not queued, while the connection's outbound buffer is over its high
    /// watermark (`outboundWatermark`): a relay that reads nothing cannot make this process hold
    /// what the session writes (its retransmissions would pile up), and every frame the session
    /// sends is retransmitted until acknowledged anyway. File chunks (`overWatermark`) are queued:
    /// the driver sends none once it hears the link is unwritable, so at most the one window sent
    /// before it heard goes over the mark.
    private func write(_ opcode: WebSocketOpcode, _ data: ByteBuffer, overWatermark: Bool = false) {
        guard let channel = state.withLock({ $0.closed ? nil : $0.channel }), overWatermark || channel.isWritable
        else { return }
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data), promise: nil)
    }

    func close() {
        let (channel, handler) = state.withLock { state -> ((any Channel)?, NIOLoopBound<RelayFrameHandler>?) in
            let wasClosed = state.closed
            state.closed = true
            return wasClosed ? (nil, nil) : (state.channel, state.handler)
        }
        guard let channel, let handler else { return }
        // After every frame sent before (the event loop runs its tasks in order).
        channel.eventLoop.execute { handler.value.startClosingHandshake() }
    }
}

/// On the upgraded channel: text frames, pings and pongs to the mailbox, a close frame answered
/// and the connection closed, the end of the channel reported once. It decides nothing: the
/// driver answers pings, pings a quiet relay and closes a silent one (`ClientDriver.Keepalive`);
/// this handler only runs the WebSocket closing handshake it is asked for, stops reading while
/// the mailbox is full (TCP backpressure then reaches the relay), and keeps at most one pong
/// queued.
final class RelayFrameHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let id: ConnectionID
    private let mailbox: Mailbox
    private let verbose: Bool
    private var closeReason = ClientNotice.linkClosed(closeFrame: false, closeCode: nil)
    private var context: ChannelHandlerContext?
    /// This client sent its close frame and waits for the relay's.
    private var closing = false
    /// The mailbox is full: `read` calls are held back until the shell has processed it.
    private var readPaused = false
    private var readHeldBack = false
    /// A pong is written and not yet out (or the channel is over its watermark): the latest
    /// ping's payload waits here instead of queueing behind it (RFC 6455 §5.5.3 allows answering
    /// only the latest ping), so a relay that floods pings and reads nothing gets one pong.
    private var pongInFlight = false
    private var owedPong: ByteBuffer?
    /// How long to wait for the relay's close frame before closing TCP anyway. The relay answers
    /// once it has read and sent on everything before the close, which a rate-limited burst can
    /// hold back for seconds; a relay that answers nothing costs a leaving client this much.
    static let closingHandshakeSeconds: Int64 = 5

    init(id: ConnectionID, mailbox: Mailbox, verbose: Bool) {
        self.id = id
        self.mailbox = mailbox
        self.verbose = verbose
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Leave: a close frame after everything already written, then wait for the relay's close frame
    /// (RFC 6455 §7.1.1: the server closes TCP first), reading meanwhile.
    ///
    /// Why wait: closing at once would drop what the relay has not read yet. A relay that
    /// rate-limits holds this client's last frames (the acknowledgements of the peer's last
    /// messages, say) and reads the rest only as its bucket refills; and a socket closed with
    /// unread data is reset by the kernel, which discards what the relay had received but not
    /// read. The peer would then report as undelivered messages that were shown here.
    func startClosingHandshake() {
        guard let context, !closing else { return }
        closing = true
        closeReason = "closed by this client"  // Never shown: the driver has moved on.
        let goodbye = WebSocketFrame.close(code: .normalClosure, masked: true)
        context.writeAndFlush(wrapOutboundOut(goodbye), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(Self.closingHandshakeSeconds)) {
            bound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if closing {
            // Read and discard until the relay's close frame: then the handshake is complete.
            if frame.opcode == .connectionClose { context.close(promise: nil) }
            return
        }
        switch frame.opcode {
        case .text:
            var payload = frame.unmaskedData
            post(.transportFrame(id, payload.readBytes(length: payload.readableBytes) ?? []), context: context)
        case .binary:
            var payload = frame.unmaskedData
            post(.transportBinaryFrame(id, payload.readBytes(length: payload.readableBytes) ?? []), context: context)
        case .ping:
            var payload = frame.unmaskedData
            post(.transportPing(id, payload.readBytes(length: payload.readableBytes) ?? []), context: context)
        case .pong:
            post(.transportPong(id), context: context)
        case .connectionClose:
            let status = frame.closeStatus
            let code = status.code.map { Int(UInt16(webSocketErrorCode: $0)) }
            closeReason = ClientNotice.withDetail(
                ClientNotice.linkClosed(closeFrame: true, closeCode: code),
                verbose ? "close code \(code.map(String.init) ?? "none")" : nil)
            let echo = WebSocketFrame.close(code: status.code ?? .normalClosure, masked: true)
            context.writeAndFlush(wrapOutboundOut(echo)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        default:
            break  // Continuations are joined by the aggregator before they get here.
        }
    }

    /// Hand a relay event to the mailbox; stop reading when it says it is full.
    private func post(_ event: ClientEvent, context: ChannelHandlerContext) {
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let resume: (@Sendable () -> Void)? = readPaused ? nil : { @Sendable in
            bound.eventLoop.execute { bound.value.resumeReading() }
        }
        if !mailbox.postFromRelay(event, resume: resume) { readPaused = true }
    }

    func read(context: ChannelHandlerContext) {
        if readPaused {
            readHeldBack = true
        } else {
            context.read()
        }
    }

    private func resumeReading() {
        readPaused = false
        guard readHeldBack, let context else { return }
        readHeldBack = false
        context.read()
    }

    /// Answer a ping the driver decided to answer: now if nothing is in the way, else owed.
    func pong(_ payload: ByteBuffer) {
        guard let context, !closing else { return }
        guard !pongInFlight, context.channel.isWritable else {
            owedPong = payload
            return
        }
        pongInFlight = true
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(
            wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: payload)),
            promise: written)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in bound.value.pongWritten() }
    }

    private func pongWritten() {
        pongInFlight = false
        if let owed = owedPong {
            owedPong = nil
            pong(owed)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        mailbox.post(.transportWritable(id, context.channel.isWritable))
        if context.channel.isWritable, !pongInFlight, let owed = owedPong {
            owedPong = nil
            pong(owed)
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let problem: RelayProblem = if let error = error as? IOError {
            WebSocketRelayConnector.socketProblem(error.errnoCode, endpoint: "the relay")
        } else {
            .unexpected
        }
        closeReason = ClientNotice.withDetail(ClientNotice.describe(problem), verbose ? "\(error)" : nil)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        mailbox.post(.transportClosed(id, reason: closeReason))
        context.fireChannelInactive()
    }
}
