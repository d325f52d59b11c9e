import ChatCore
import NIOCore
import ChatNetworking
import NIOWebSocket

/// One upgraded WebSocket connection: frame handling, the connection's token buckets, liveness,
/// read pausing (rate limits and backpressure) and the close handshake. Everything about rooms
/// is the hub's (`RelayRooms`); this type only moves frames and applies connection policy.
final class RelayConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Why reads from this connection are paused (TCP backpressure then reaches the client).
    struct PauseReasons: OptionSet {
        let rawValue: UInt8
        /// A token bucket is empty; a timer resumes reading when it has refilled.
        static let rateLimited = PauseReasons(rawValue: 1 << 0)
        /// The room-mate's outbound queue is over its high watermark.
        static let peerBackpressure = PauseReasons(rawValue: 1 << 1)
    }

    private let hub: RelayHub
    let address: String
    private let admission: RelayHub.Admission
    private(set) var id: ConnectionID?
    private var context: ChannelHandlerContext?
    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    private var messageBucket: TokenBucket
    private var byteBucket: TokenBucket
    /// Frames read after a token bucket ran dry, oldest first, released as the buckets refill.
    /// Rate limiting is backpressure, not loss: while frames are held, reads from this client
    /// stop, so a flooding client is slowed by TCP to its allowed rate and the relay spends
    /// nothing on its excess (the frames already in the last read batch are all it holds).
    private var held = CircularBuffer<WebSocketFrame>()
    private var heldBytes = 0
    /// Set when the client was told `RATE_LIMITED`; cleared once everything held has been sent on.
    private var rateLimitAnswered = false
    private var pauseReasons: PauseReasons = []
    private var readHeldBack = false
    private var resumeTask: Scheduled<Void>?

    private var lastInboundNanoseconds: UInt64
    private var lastPingNanoseconds: UInt64 = 0
    private var closeSent = false
    /// The client's close frame arrived while frames were held for the rate limit: the close is
    /// answered once they have been sent on (its status code is kept to echo).
    private var closeReceivedWhileHolding: WebSocketErrorCode?
    private var closeTimeout: Scheduled<Void>?
    /// Set by the hub while this connection is on its flush list.
    var flushPending = false

    /// Seconds the relay waits for the client's answer to its close frame before dropping TCP.
    static let closeHandshakeTimeoutSeconds: Int64 = 2

    init(hub: RelayHub, address: String, admission: RelayHub.Admission) {
        self.hub = hub
        self.address = address
        self.admission = admission
        let now = hub.now
        let configuration = hub.configuration
        messageBucket = TokenBucket(
            ratePerSecond: UInt64(configuration.messagesPerSecond), burst: UInt64(configuration.messageBurst), now: now
        )
        byteBucket = TokenBucket(
            ratePerSecond: UInt64(configuration.bytesPerSecond), burst: UInt64(configuration.byteBurst), now: now
        )
        lastInboundNanoseconds = now.nanoseconds
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        switch admission {
        case .admit:
            guard !hub.isShuttingDown else {
                close(code: .goingAway, error: .shuttingDown)
                return
            }
            id = hub.register(self)
        case let .refuse(code, reason):
            hub.metrics.reject(reason)
            close(code: .tryAgainLater, error: code)
        case .drop:
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        resumeTask?.cancel()
        closeTimeout?.cancel()
        if let id {
            // The client is gone, but the frames it sent before leaving that the relay read and
            // held for the rate limit still go to the peer (at most `heldBytesMax`): the limit
            // paces a live sender; it must not drop a departed one's last acknowledgements.
            if !closeSent && !held.isEmpty {
                while let first = held.popFirst() { process(first, from: id) }
                heldBytes = 0
                hub.flushPending()
            }
            self.id = nil
            hub.unregister(id)
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let id {
            self.id = nil
            hub.unregister(id)
        }
        self.context = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastInboundNanoseconds = NIODeadline.now().uptimeNanoseconds
        switch frame.opcode {
        case .text:
            guard !closeSent, closeReceivedWhileHolding == nil, let id else { return }
            receiveText(frame, from: id)
        case .binary:
            guard !closeSent, let id else { return }
            hub.metrics.reject(.malformed)
            hub.send(
                .error(code: .malformedJSON, message: "binary frames are not part of the protocol; send JSON text"),
                to: id
            )
        case .ping:
            guard !closeSent else { return }
            context.write(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            hub.markForFlush(self)
        case .pong:
            break
        case .connectionClose:
            if closeSent {
                // The client answered our close frame: the handshake is complete.
                context.close(promise: nil)
            } else if !held.isEmpty {
                // Keep order: the frames the client sent before its close (its last
                // acknowledgements, say) still go to the peer, as the rate allows; then the close.
                closeReceivedWhileHolding = closeReceivedWhileHolding ?? frame.closeStatus.code ?? .normalClosure
            } else {
                // Echo the client's status code (RFC 6455 §5.5.1); the handshake is then complete
                // and the server closes TCP first (§7.1.1).
                let code = frame.closeStatus.code ?? .normalClosure
                close(code: code, error: nil, closeWhenWritten: true)
            }
        default:
            // Continuations never get here (the aggregator joins them); anything else is a
            // reserved opcode.
            close(code: .protocolError, error: nil)
        }
    }

    private func receiveText(_ frame: WebSocketFrame, from id: ConnectionID) {
        hub.metrics.framesReceived.increment()
        hub.metrics.bytesReceived.increment(by: Int64(frame.length))
        // Keep order: once anything is held, everything after it waits too.
        if held.isEmpty && admit(frame, now: Instant(nanoseconds: lastInboundNanoseconds)) {
            process(frame, from: id)
            return
        }
        hold(frame, from: id)
    }

    /// Charge both token buckets for `frame` if both have the tokens (a refused frame costs nothing).
    private func admit(_ frame: WebSocketFrame, now: Instant) -> Bool {
        let size = UInt64(frame.length)
        guard messageBucket.available(now: now) >= 1, byteBucket.available(now: now) >= size else { return false }
        _ = messageBucket.tryConsume(1, now: now)
        _ = byteBucket.tryConsume(size, now: now)
        return true
    }

    /// Hand an admitted frame to the room logic.
    private func process(_ frame: WebSocketFrame, from id: ConnectionID) {
        let forwardedTo = hub.receive(frame: frame.unmaskedDataWordWise, from: id)
        // Stop reading while the peer's outbound queue is over its high watermark: the relay
        // then holds at most the watermark plus one read batch for a slow reader, and TCP
        // backpressure reaches the sender.
        if let forwardedTo, !forwardedTo.isWritable {
            pause(.peerBackpressure)
        }
    }

    private func hold(_ frame: WebSocketFrame, from id: ConnectionID) {
        hub.metrics.reject(.rateLimited)
        if !rateLimitAnswered {
            rateLimitAnswered = true
            hub.send(.error(code: .rateLimited, message: RelayErrorCode.rateLimited.defaultMessage), to: id)
        }
        pause(.rateLimited)
        // Reads stop at once, so only the rest of the current read batch can arrive; the bound
        // is a backstop (a frame beyond it is dropped, and the client was told RATE_LIMITED).
        if heldBytes + frame.length <= Self.heldBytesMax {
            held.append(frame)
            heldBytes += frame.length
        }
        scheduleRelease()
    }

    /// The most bytes of frames held for the rate limit on one connection.
    static let heldBytesMax = 1 << 20

    /// Release held frames when the buckets can pay for the oldest.
    private func scheduleRelease() {
        guard resumeTask == nil, let context, let first = held.first else { return }
        let now = hub.now
        let size = UInt64(first.length)
        let messageReady = messageBucket.whenAvailable(1, now: now) ?? now
        let byteReady = byteBucket.whenAvailable(min(size, byteBucket.burst), now: now) ?? now
        let waitNanoseconds = max(messageReady, byteReady).nanoseconds &- now.nanoseconds
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        resumeTask = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(clamping: waitNanoseconds))) {
            handler.value.resumeTask = nil
            handler.value.releaseHeld()
        }
    }

    /// Send on every held frame the buckets can pay for; resume reading once none is left.
    private func releaseHeld() {
        guard let id, !closeSent else {
            held.removeAll()
            heldBytes = 0
            return
        }
        let now = hub.now
        // Bounded by the frames held; stops early for the buckets or the peer's backpressure.
        while let first = held.first, !pauseReasons.contains(.peerBackpressure), admit(first, now: now) {
            held.removeFirst()
            heldBytes -= first.length
            process(first, from: id)
        }
        hub.flushPending()
        if held.isEmpty, let code = closeReceivedWhileHolding {
            closeReceivedWhileHolding = nil
            close(code: code, error: nil, closeWhenWritten: true)
        } else if held.isEmpty {
            rateLimitAnswered = false
            resume(.rateLimited)
        } else if !pauseReasons.contains(.peerBackpressure) {
            scheduleRelease()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        hub.flushPending()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let id, let peer = hub.peerHandler(of: id) {
            peer.resumeAfterBackpressure()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength, NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            hub.metrics.reject(.frameTooLarge)
            close(code: .messageTooLarge, error: .frameTooLarge)
        case is NIOWebSocketError, is NIOWebSocketFrameAggregator.Error:
            hub.metrics.reject(.malformed)
            close(code: .protocolError, error: nil)
        case is ByteToMessageDecoderError:
            // Bytes after a decoding error: the close frame is already on its way; ignore.
            break
        default:
            context.close(promise: nil)
        }
    }

    // MARK: Outbound

    var isWritable: Bool { context?.channel.isWritable ?? true }

    /// Write a text frame (server frames are not masked); the hub flushes at the end of the batch.
    func writeText(_ buffer: ByteBuffer) {
        guard let context, !closeSent else { return }
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
    }

    func flushNow() {
        context?.flush()
    }

    /// Hold back the pipeline's `read` while paused.
    func read(context: ChannelHandlerContext) {
        if pauseReasons.isEmpty {
            context.read()
        } else {
            readHeldBack = true
        }
    }

    private func pause(_ reason: PauseReasons) {
        pauseReasons.insert(reason)
    }

    private func resume(_ reason: PauseReasons) {
        pauseReasons.remove(reason)
        if pauseReasons.isEmpty, readHeldBack, let context {
            readHeldBack = false
            context.read()
        }
    }

    func resumeAfterBackpressure() {
        guard pauseReasons.contains(.peerBackpressure) else { return }
        resume(.peerBackpressure)
        // Frames held for the rate limit were waiting on the peer too.
        if !held.isEmpty { scheduleRelease() }
    }

    // MARK: Liveness and closing

    /// Called by the hub's once-a-second sweep.
    func tick(now: Instant, pingIntervalNanoseconds: UInt64, idleNanoseconds: UInt64) {
        guard let context, !closeSent else { return }
        // A connection paused for its peer's backpressure cannot read its client's pongs; the
        // peer's own idle timeout ends a dead peer, which resumes this one.
        if pauseReasons.contains(.peerBackpressure) {
            lastInboundNanoseconds = now.nanoseconds
            return
        }
        let quietNanoseconds = now.nanoseconds &- lastInboundNanoseconds
        if quietNanoseconds >= idleNanoseconds {
            hub.logger.debug("closing an idle connection", metadata: ["quiet_ms": "\(quietNanoseconds / 1_000_000)"])
            hub.metrics.reject(.idleTimeout)
            close(code: .policyViolation, error: .idleTimeout)
            return
        }
        if quietNanoseconds >= pingIntervalNanoseconds
            && now.nanoseconds &- lastPingNanoseconds >= pingIntervalNanoseconds
        {
            lastPingNanoseconds = now.nanoseconds
            hub.metrics.pingsSent.increment()
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
            hub.markForFlush(self)
        }
    }

    /// Start the close handshake: an optional `ERROR`, then a close frame with `code`; the TCP
    /// connection closes when the client answers or after `closeHandshakeTimeoutSeconds`.
    /// Frames that arrive meanwhile are ignored.
    func close(code: WebSocketErrorCode, error: RelayErrorCode?, closeWhenWritten: Bool = false) {
        guard let context, !closeSent else { return }
        if let error {
            let text = WireCodec.encode(.error(code: error, message: error.defaultMessage))
            context.write(
                wrapOutboundOut(
                    WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(bytes: text))),
                promise: nil
            )
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame.close(code: code, masked: false)), promise: written)
        if closeWhenWritten {
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
        closeSent = true
        // Stop serving this connection now: its room-mate learns at once that it left.
        if let id {
            self.id = nil
            hub.unregister(id)
        }
        held.removeAll()
        heldBytes = 0
        // Keep reading (and discarding) so that the client's close answer is seen, and so the
        // kernel does not reset the connection over unread bytes before the client has our close.
        pauseReasons = []
        if readHeldBack {
            readHeldBack = false
            context.read()
        }
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        closeTimeout = context.eventLoop.scheduleTask(in: .seconds(Self.closeHandshakeTimeoutSeconds)) {
            loopBoundContext.value.close(promise: nil)
        }
    }
}
