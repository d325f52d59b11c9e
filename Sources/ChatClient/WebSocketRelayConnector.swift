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
/// system trust store plus an optional CA file), with a small handler that turns WebSocket
/// frames into mailbox events and carries out the driver's pings, pongs and closes.
public final class WebSocketRelayConnector: RelayConnector {
    private let client: WebSocketClient
    private let url: WebSocketURL

    /// - Throws: `WebSocketClientError.invalidCAFile` when the CA file cannot be used.
    public init(url: WebSocketURL, caFilePath: String?, frameSizeMaxBytes: Int) throws {
        self.url = url
        self.client = try WebSocketClient(configuration: WebSocketClientConfiguration(
            caFilePath: caFilePath, frameSizeMaxBytes: frameSizeMaxBytes))
    }

    public func open(_ id: ConnectionID, mailbox: Mailbox) -> any RelayLink {
        let link = ChannelRelayLink()
        let client = self.client
        let url = self.url
        Task {
            do {
                _ = try await client.connect(to: url) { channel in
                    let handler = RelayFrameHandler(id: id, mailbox: mailbox)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    link.attach(channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    // Posted from the pipeline set-up, so it precedes every frame and the close.
                    mailbox.post(.transportUp(id))
                    return true
                }
            } catch {
                mailbox.post(.transportFailed(id, Self.classify(error)))
            }
        }
        return link
    }

    /// Which failures retrying cannot fix: TLS (an untrusted or mismatched certificate, no
    /// common protocol) and a server that is not a WebSocket endpoint. Refused connections,
    /// timeouts and resets are transient: the relay may be restarting.
    static func classify(_ error: any Error) -> TransportFailure {
        switch error {
        case let error as WebSocketClientError:
            switch error {
            case .upgradeRefused, .invalidCAFile: return TransportFailure(reason: "\(error)", permanent: true)
            case .handshakeTimeout, .closedDuringHandshake: return TransportFailure(reason: "\(error)", permanent: false)
            }
        case let error as NIOSSLError:
            return TransportFailure(reason: "TLS: \(error)", permanent: true)
        case let error as BoringSSLError:
            return TransportFailure(reason: "TLS: \(error)", permanent: true)
        default:
            return TransportFailure(reason: Self.shortReason(error), permanent: false)
        }
    }

    /// A one-line reason (NIO's descriptions are long and repeat the address).
    private static func shortReason(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let ioError = error.connectionErrors.last?.error as? IOError {
                return String(cString: strerror(ioError.errnoCode)).lowercased()
            }
            if error.connectionErrors.isEmpty { return "cannot resolve the relay's host name" }
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return "connection timed out"
        }
        let text = "\(error)"
        return text.count <= 160 ? text : String(text.prefix(157)) + "..."
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

    func ping() {
        write(.ping, ByteBuffer())
    }

    func pong(_ payload: [UInt8]) {
        write(.pong, ByteBuffer(bytes: payload))
    }

    private func write(_ opcode: WebSocketOpcode, _ data: ByteBuffer) {
        guard let channel = state.withLock({ $0.closed ? nil : $0.channel }) else { return }
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
/// this handler only runs the WebSocket closing handshake it is asked for.
final class RelayFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let id: ConnectionID
    private let mailbox: Mailbox
    private var closeReason = "closed by the relay"
    private var context: ChannelHandlerContext?
    /// This client sent its close frame and waits for the relay's.
    private var closing = false
    /// How long to wait for the relay's close frame before closing TCP anyway. The relay answers
    /// once it has read and sent on everything before the close, which a rate-limited burst can
    /// hold back for seconds; a relay that answers nothing costs a leaving client this much.
    static let closingHandshakeSeconds: Int64 = 5

    init(id: ConnectionID, mailbox: Mailbox) {
        self.id = id
        self.mailbox = mailbox
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
        closeReason = "closed by this client"
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
        case .text, .binary:
            var payload = frame.unmaskedData
            mailbox.post(.transportFrame(id, payload.readBytes(length: payload.readableBytes) ?? []))
        case .ping:
            var payload = frame.unmaskedData
            mailbox.post(.transportPing(id, payload.readBytes(length: payload.readableBytes) ?? []))
        case .pong:
            mailbox.post(.transportPong(id))
        case .connectionClose:
            let status = frame.closeStatus
            closeReason = "the relay closed the connection" + (status.code.map { " (\($0))" } ?? "")
            let echo = WebSocketFrame.close(code: status.code ?? .normalClosure, masked: true)
            context.writeAndFlush(wrapOutboundOut(echo)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        default:
            break  // Continuations are joined by the aggregator before they get here.
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeReason = "\(error)"
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        mailbox.post(.transportClosed(id, reason: closeReason))
        context.fireChannelInactive()
    }
}
