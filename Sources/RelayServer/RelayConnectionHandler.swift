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
    /// The client offered `securechat.binary` and the upgrade selected it (set before the handler
    /// is added, which reports the upgrade to the engine).
    var binarySignals = false
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
    /// Stops decoding the rest of a read once reading is paused (set when the pipeline is built).
    var gate: ReadGate?

    init(hub: RelayHub, id: ConnectionID, channel: any Channel) {
        self.hub = hub
        self.id = id
        self.channel = channel
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        hub.upgraded(id, binarySignals: binarySignals)
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
            hub.receive(.binary(frame.unmaskedDataWordWise), from: id)
        case .ping:
            hub.receive(.ping(frame.unmaskedData), from: id)
        case .pong:
            hub.receive(.pong, from: id)
        case .connectionClose:
            let code = frame.closeStatus.code.map { CloseCode(rawValue: UInt16(webSocketErrorCode: $0)) }
            hub.receive(.close(code), from: id)
        case .continuation:
            // Only a fragment the aggregator let through unjoined (it joins every message).
            hub.receive(.fragment, from: id)
        default:
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

    /// Write a pong and report when it has left for the socket: the engine keeps one pong in
    /// flight per connection, so a client that floods pings and never reads cannot make the relay
    /// queue pongs (each costs a queued write, far more than its 2 counted bytes).
    func writePong(_ data: ByteBuffer) {
        guard let context, !closeSent else { return }
        let written = context.eventLoop.makePromise(of: Void.self)
        let hub = self.hub
        let id = self.id
        written.futureResult.assumeIsolated().whenComplete { _ in hub.pongWritten(id) }
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: data)), promise: written)
    }

    func flushNow() {
        context?.flush()
    }

    func pauseReading() {
        readPaused = true
        gate?.pause()
    }

    func resumeReading() {
        readPaused = false
        gate?.resume()
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

/// In front of the frame aggregator: charges every fragment of a message but the last (the
/// aggregator then delivers the whole message, charged as one more) to the engine's buckets, so a
/// message split into a thousand empty fragments costs its sender a thousand messages.
final class FragmentCounter: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame

    private let hub: RelayHub
    private let id: ConnectionID

    init(hub: RelayHub, id: ConnectionID) {
        self.hub = hub
        self.id = id
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !unwrapInboundIn(data).fin { hub.receive(.fragment, from: id) }
        context.fireChannelRead(data)
    }
}

/// `--trust-proxy proxy-protocol`: first in the pipeline, before TLS and HTTP see a byte. Reads
/// the PROXY protocol v2 header (RelayCore's `ProxyProtocolV2` judges it), reports the client's
/// address to the engine, then passes every later byte on untouched. A connection that does not
/// begin with a valid header is reported (the engine closes it). It buffers at most
/// `RelayLimits.proxyHeaderMaxBytes` plus one read.
final class ProxyHeaderHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let hub: RelayHub
    private let id: ConnectionID
    private var buffered: ByteBuffer?
    private var decided = false

    init(hub: RelayHub, id: ConnectionID) {
        self.hub = hub
        self.id = id
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else {
            context.fireChannelRead(data)
            return
        }
        var incoming = unwrapInboundIn(data)
        var bytes = buffered ?? context.channel.allocator.buffer(capacity: incoming.readableBytes)
        bytes.writeBuffer(&incoming)
        switch bytes.withUnsafeReadableBytes({ ProxyProtocolV2.parse($0) }) {
        case .incomplete where bytes.readableBytes < RelayLimits.proxyHeaderMaxBytes:
            buffered = bytes
        case .incomplete, .invalid:
            decided = true
            buffered = nil
            hub.fault(.badProxyHeader, on: id)
        case let .header(length, client):
            decided = true
            buffered = nil
            hub.proxyHeaderRead(id, client: client)
            bytes.moveReaderIndex(forwardBy: length)
            // Pass on what followed the header first: once removed, this handler's context no
            // longer reaches the rest of the pipeline, and a proxy sends the header and the
            // client's first bytes together (they were lost, and the upgrade never came).
            if bytes.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(bytes)) }
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
    }
}

/// Between the socket (after TLS) and the decoders: hands each read on in small slices and stops
/// between two slices as soon as the engine pauses the connection, keeping the rest of the read,
/// undecoded, until it resumes. Pausing otherwise takes effect only at the next socket read, and
/// the rest of a 64 KiB read of 6-byte pings is 10,000 frames decoded and refused for nothing,
/// once per refill of the rate limit, on the event loop every connection shares. What it keeps is
/// one read at most: it holds back the socket read while it keeps anything.
final class ReadGate: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny

    /// Bytes handed on at a time: what can still be decoded after the engine paused.
    static let sliceBytes = 4096

    private var pending: ByteBuffer?
    private var paused = false
    private var handingOn = false
    private var readHeldBack = false
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if pending == nil {
            pending = incoming
        } else {
            pending?.writeBuffer(&incoming)
        }
        handOn(context: context)
    }

    /// Hold back the socket read while anything read before is kept.
    func read(context: ChannelHandlerContext) {
        if pending != nil {
            readHeldBack = true
        } else {
            context.read()
        }
    }

    func pause() {
        paused = true
    }

    /// Hand on what was kept, after whatever the event loop is doing now (the engine's action
    /// that resumed this connection must not be re-entered).
    func resume() {
        paused = false
        guard pending != nil, let context else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (gate, context) = bound.value
            guard gate.context != nil else { return }
            gate.handOn(context: context)
            context.fireChannelReadComplete()
        }
    }

    private func handOn(context: ChannelHandlerContext) {
        guard !handingOn else { return }
        handingOn = true
        defer { handingOn = false }
        // Bounded by the bytes kept: each pass hands on a slice.
        while !paused, var bytes = pending {
            let slice = bytes.readSlice(length: min(Self.sliceBytes, bytes.readableBytes)) ?? ByteBuffer()
            pending = bytes.readableBytes > 0 ? bytes : nil
            context.fireChannelRead(wrapInboundOut(slice))
        }
        if pending == nil, readHeldBack {
            readHeldBack = false
            context.read()
        }
    }
}
