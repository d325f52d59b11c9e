import ChatCore
import ChatNetworking
import NIOCore
import NIOWebSocket
import RelayCore

/// One upgraded WebSocket connection's end of the shell: reports each frame, the end of each
/// read batch, writability and errors to the hub (and so to the engine), and carries out what
/// the engine decided for this connection: writes, read pausing, the close frame. It decides
/// nothing itself.
final class RelayConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let id: ConnectionID
    /// The connection's channel, for closing it before the upgrade (this handler is added to the
    /// pipeline only once the upgrade is done).
    let channel: any Channel
    private let hub: RelayHub
    private var context: ChannelHandlerContext?
    private var closeSent = false
    /// The engine paused reading; `read` calls are held back meanwhile.
    private var readPaused = false
    private var readHeldBack = false
    /// Set by the hub while this connection is on its flush list.
    var flushPending = false

    init(hub: RelayHub, id: ConnectionID, channel: any Channel) {
        self.hub = hub
        self.id = id
        self.channel = channel
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        hub.upgraded(id)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            hub.receive(.text(frame.unmaskedDataWordWise), from: id)
        case .binary:
            hub.receive(.binary(byteCount: frame.length), from: id)
        case .ping:
            hub.receive(.ping(frame.unmaskedData), from: id)
        case .pong:
            hub.receive(.pong, from: id)
        case .connectionClose:
            let code = frame.closeStatus.code.map { CloseCode(rawValue: UInt16(webSocketErrorCode: $0)) }
            hub.receive(.close(code), from: id)
        default:
            // Continuations never get here (the aggregator joins them); anything else is a
            // reserved opcode.
            hub.receive(.reserved, from: id)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        hub.endOfReadBatch()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        hub.writabilityChanged(id, isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength, NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            hub.fault(.frameTooLarge, on: id)
        case is NIOWebSocketError, is NIOWebSocketFrameAggregator.Error:
            hub.fault(.malformedFrame, on: id)
        case is ByteToMessageDecoderError:
            // Bytes after a decoding error: the close frame is already on its way; ignore.
            break
        default:
            hub.fault(.ioError, on: id)
        }
    }

    /// Hold back the pipeline's `read` while the engine has reading paused.
    func read(context: ChannelHandlerContext) {
        if readPaused {
            readHeldBack = true
        } else {
            context.read()
        }
    }

    // MARK: Carried out for the engine

    /// Write a frame (server frames are not masked); the hub flushes at the end of the batch.
    func write(_ opcode: WebSocketOpcode, _ data: ByteBuffer) {
        guard let context, !closeSent else { return }
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: opcode, data: data)), promise: nil)
    }

    func flushNow() {
        context?.flush()
    }

    func pauseReading() {
        readPaused = true
    }

    func resumeReading() {
        readPaused = false
        if readHeldBack, let context {
            readHeldBack = false
            context.read()
        }
    }

    /// Write an optional `ERROR`, then the close frame, and flush; with `disconnectWhenWritten`,
    /// close TCP once the close frame is written.
    func close(code: CloseCode, error: RelayErrorCode?, disconnectWhenWritten: Bool) {
        guard let context, !closeSent else { return }
        if let error {
            let text = WireCodec.encode(.error(code: error, message: error.defaultMessage))
            write(.text, context.channel.allocator.buffer(bytes: text))
        }
        // Nothing more is written after the close frame.
        closeSent = true
        let closeFrame = WebSocketFrame.close(code: WebSocketErrorCode(codeNumber: Int(code.rawValue)), masked: false)
        guard disconnectWhenWritten else {
            context.writeAndFlush(wrapOutboundOut(closeFrame), promise: nil)
            return
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(closeFrame), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
