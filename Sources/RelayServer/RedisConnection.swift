import DequeModule
import NIOCore
import NIOPosix
import NIOSSL
import RelayCore

/// One command connection to one Redis server (the single Redis, or one master of a Redis
/// Cluster): commands pipelined in order, each answered by the next reply. Confined to the hub's
/// event loop; `ClusterLink` decides where each command goes and what a closed connection means.
///
/// Replies are read at once while a command with a callback waits (a script, the heartbeat: an
/// answer someone waits for). Replies to `SPUBLISH`es alone are read in batches, at most
/// `publishReplyReadMilliseconds` late: nothing waits on them (a count of receivers, or a rare
/// `-MOVED` to follow), and reading each as it came woke the node once more per cross-node
/// SIGNAL, a fifth of the wakeups on its path (client, node, Redis, node, client).
final class RedisConnection {
    struct Waiter {
        var deadline: NIODeadline
        var reply: Reply
    }

    /// Who gets a command's reply.
    enum Reply {
        case callback((RESPValue?) -> Void)
        /// An `SPUBLISH` (`sendPublish`): `publishAnswered` gets the reply and the command, kept
        /// for a redirection, so a cross-node SIGNAL carries no closure of its own.
        case publish(ByteBuffer, redirected: Bool)
    }

    let address: RedisServerAddress
    private(set) var channel: (any Channel)?
    /// Connected and past its handshake (AUTH): commands may go.
    var ready = false
    var backoffMilliseconds = ClusterTiming.reconnectFirstMilliseconds
    private(set) var waiting = Deque<Waiter>()
    /// Waiters with a callback (`send`): while any waits, replies are read at once.
    private var callbacksWaiting = 0
    private var flushScheduled = false
    /// Holds back the socket's reads while only publishes wait (one per channel, nil without one).
    private var gate: ReplyReadGate?
    /// The batch read of publish replies, scheduled while publishes wait.
    private var publishRepliesRead: Scheduled<Void>?
    /// The batch read is due: replies are read until this read ends.
    private var publishRepliesDue = false
    /// Every reply read at once, publishes' too: while the link refreshes a Redis Cluster's map,
    /// and after it until the publishes sent before the new map are answered (`readInBatches`).
    private(set) var readsAtOnce = false
    /// `readsAtOnce` ends when no publish waits any more.
    private var batchesOnceDrained = false
    /// Closing: read to the end (a TLS peer's close_notify is waited for).
    private var closing = false
    private let eventLoop: any EventLoop
    /// The reply to every `sendPublish` (nil: the connection closed, or too many waiting), with
    /// the command and whether it was already redirected once.
    var publishAnswered: (RedisConnection, RESPValue?, ByteBuffer, Bool) -> Void = { _, _, _, _ in }

    init(address: RedisServerAddress, eventLoop: any EventLoop) {
        self.address = address
        self.eventLoop = eventLoop
    }

    /// The oldest command's deadline has passed: Redis is not answering.
    var isOverdue: Bool { waiting.first.map { $0.deadline < .now() } ?? false }

    func attach(_ channel: any Channel) {
        self.channel = channel
    }

    /// The read gate of the next channel (`connect(..., gate:)`), closed until something waits.
    func makeGate() -> ReplyReadGate {
        let gate = ReplyReadGate()
        self.gate = gate
        closing = false
        updateReading()
        return gate
    }

    /// Send one command; `callback` gets its reply, or nil (no connection, too many waiting, or
    /// the connection closed before the reply).
    func send(_ arguments: [[UInt8]], _ callback: @escaping (RESPValue?) -> Void) {
        guard let channel, waiting.count < ClusterTiming.waitingMax else { return callback(nil) }
        let deadline = NIODeadline.now() + .milliseconds(ClusterTiming.commandTimeoutMilliseconds)
        waiting.append(Waiter(deadline: deadline, reply: .callback(callback)))
        callbacksWaiting += 1
        updateReading()
        var command = channel.allocator.buffer(
            capacity: ByteBuffer.respCommandBytes(argumentBytes: arguments.lazy.map(\.count)))
        command.writeRESPCommand(arguments)
        channel.write(command, promise: nil)
        scheduleFlush()
    }

    /// Send an `SPUBLISH` already encoded (`ClusterLink.spublish`); its reply goes to
    /// `publishAnswered`.
    func sendPublish(_ command: ByteBuffer, redirected: Bool) {
        guard let channel, waiting.count < ClusterTiming.waitingMax else {
            return publishAnswered(self, nil, command, redirected)
        }
        let deadline = NIODeadline.now() + .milliseconds(ClusterTiming.commandTimeoutMilliseconds)
        waiting.append(Waiter(deadline: deadline, reply: .publish(command, redirected: redirected)))
        channel.write(command, promise: nil)
        scheduleFlush()
        schedulePublishRepliesRead()
    }

    /// Read every reply at once (a slot-map refresh is under way).
    func readAtOnce() {
        readsAtOnce = true
        batchesOnceDrained = false
        updateReading()
    }

    /// Back to batches once the publishes waiting now are answered: a `-MOVED` to one sent before
    /// the new map is then seen (and redirected) within a round trip, not a batch later.
    func readInBatches() {
        batchesOnceDrained = true
        endReadsAtOnceIfDrained()
    }

    private func endReadsAtOnceIfDrained() {
        guard batchesOnceDrained, waiting.count == callbacksWaiting else { return }
        batchesOnceDrained = false
        readsAtOnce = false
        updateReading()
    }

    /// Open the gate while a callback waits or the batch read of publish replies is due.
    private func updateReading() {
        gate?.isOpen = callbacksWaiting > 0 || publishRepliesDue || readsAtOnce || closing
    }

    private func schedulePublishRepliesRead() {
        guard publishRepliesRead == nil, !publishRepliesDue, channel != nil else { return }
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        publishRepliesRead = eventLoop.scheduleTask(in: .milliseconds(ClusterTiming.publishReplyReadMilliseconds)) {
            connection.value.publishRepliesRead = nil
            connection.value.publishRepliesDue = true
            connection.value.updateReading()
        }
    }

    /// A read from Redis ended: the batch read (if it was due) is done; publishes whose replies
    /// were not in it get the next one.
    func readCompleted() {
        publishRepliesDue = false
        endReadsAtOnceIfDrained()
        if waiting.count > callbacksWaiting {
            schedulePublishRepliesRead()
        } else {
            // Their replies came with a callback's: no batch read for nothing.
            publishRepliesRead?.cancel()
            publishRepliesRead = nil
        }
        updateReading()
    }

    /// One flush per event-loop turn for everything written in it (many PUBLISHes per read batch).
    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.execute {
            connection.value.flushScheduled = false
            connection.value.channel?.flush()
        }
    }

    /// A reply: the oldest waiter's. One nobody asked for means the stream is out of step: close.
    func received(_ value: RESPValue) {
        guard let waiter = waiting.popFirst() else { return close() }
        answer(waiter, value)
    }

    private func answer(_ waiter: Waiter, _ value: RESPValue?) {
        switch waiter.reply {
        case let .callback(callback):
            callbacksWaiting -= 1
            callback(value)
        case let .publish(command, redirected): publishAnswered(self, value, command, redirected)
        }
    }

    /// The channel closed: every waiter is answered nil (a callback may send again: it fails at
    /// once, there is no channel).
    func closed() {
        channel = nil
        ready = false
        gate = nil
        closing = false
        publishRepliesRead?.cancel()
        publishRepliesRead = nil
        publishRepliesDue = false
        while let waiter = waiting.popFirst() { answer(waiter, nil) }
    }

    func close() {
        guard let channel else { return }
        closing = true
        updateReading()
        channel.close(promise: nil)
    }

    /// A TCP (or TLS) connection to `address` whose RESP values go to `onValue`; with `onMessage`
    /// (the subscriber), each `smessage`'s payload goes there instead, found without building a
    /// value (`RESPParser.pubSubMessage`): a view of the read buffer, valid during the call. A
    /// `gate` (command connections) decides when the socket is read.
    static func connect(
        to address: RedisServerAddress, sslContext: NIOSSLContext?, bulkMaxBytes: Int, eventLoop: any EventLoop,
        gate: ReplyReadGate? = nil, onValue: @escaping (RESPValue) -> Void, onMessage: ((ByteBuffer) -> Void)? = nil,
        readComplete: @escaping () -> Void = {}, closed: @escaping () -> Void
    ) -> EventLoopFuture<any Channel> {
        let handler = NIOLoopBound(
            RedisValueHandler(onValue: onValue, onMessage: onMessage, onReadComplete: readComplete, onClose: closed),
            eventLoop: eventLoop)
        let gate = gate.map { NIOLoopBound($0, eventLoop: eventLoop) }
        let messages = onMessage != nil
        // SNI and the name check want a host name; an IP address is checked against the
        // certificate's IP addresses instead (NIOSSL does that when no name is given).
        let host = address.host
        let serverHostname = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
        return ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.milliseconds(ClusterTiming.commandTimeoutMilliseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Next to the socket: it holds back every read, TLS's included.
                    if let gate { try channel.pipeline.syncOperations.addHandler(gate.value) }
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                    }
                    let decoder = RESPDecoder(bulkMaxBytes: bulkMaxBytes, pubSubMessages: messages)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
                    try channel.pipeline.syncOperations.addHandler(handler.value)
                }
            }
            .connect(host: host, port: address.port)
    }
}

/// What the decoder hands on: a value, or (on the subscriber) a sharded pub/sub message's payload.
enum RedisInbound {
    case value(RESPValue)
    /// An `smessage`'s payload: a slice of the read buffer (no copy; whoever keeps bytes of it
    /// past the read copies them, so that a queued frame never holds a whole read buffer).
    case message(ByteBuffer)
}

/// Bytes from Redis to `RESPValue`s (`RESPParser`, bounded; a stream that is not RESP is an
/// error, which closes the connection). With `pubSubMessages` (the subscriber) an `smessage` is
/// found first without building a value (`RESPParser.pubSubMessage`, which reads exactly what
/// `parse` would): every cross-node SIGNAL is one.
final class RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RedisInbound

    struct Invalid: Error {
        var failure: RESPParser.Failure
    }

    private let parser: RESPParser
    private let pubSubMessages: Bool

    /// `bulkMaxBytes`: a SIGNAL is at most the relay's largest frame plus its header; a cap below
    /// that would drop the subscriber connection for one SIGNAL the relay itself accepted.
    init(bulkMaxBytes: Int, pubSubMessages: Bool = false) {
        parser = RESPParser(bulkMaxBytes: bulkMaxBytes)
        self.pubSubMessages = pubSubMessages
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if pubSubMessages, let message = buffer.withUnsafeReadableBytes({ parser.pubSubMessage($0) }),
            let payload = buffer.getSlice(
                at: buffer.readerIndex + message.payload.lowerBound, length: message.payload.count)
        {
            buffer.moveReaderIndex(forwardBy: message.length)
            context.fireChannelRead(wrapInboundOut(.message(payload)))
            return .continue
        }
        switch buffer.withUnsafeReadableBytes({ parser.parse($0) }) {
        case .incomplete:
            return .needMoreData
        case let .value(value, length):
            buffer.moveReaderIndex(forwardBy: length)
            context.fireChannelRead(wrapInboundOut(.value(value)))
            return .continue
        case let .invalid(failure):
            throw Invalid(failure: failure)
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Hands each value (or message) to the link; reports the end of each read batch and the close;
/// closes on any error.
final class RedisValueHandler: ChannelInboundHandler {
    typealias InboundIn = RedisInbound

    private let onValue: (RESPValue) -> Void
    private let onMessage: ((ByteBuffer) -> Void)?
    private let onReadComplete: () -> Void
    private let onClose: () -> Void

    init(
        onValue: @escaping (RESPValue) -> Void, onMessage: ((ByteBuffer) -> Void)? = nil,
        onReadComplete: @escaping () -> Void, onClose: @escaping () -> Void
    ) {
        self.onValue = onValue
        self.onMessage = onMessage
        self.onReadComplete = onReadComplete
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .value(value):
            onValue(value)
        case let .message(payload):
            // Only a decoder made for a subscriber finds messages; anything else is out of step.
            guard let onMessage else { return context.close(promise: nil) }
            onMessage(payload)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        onReadComplete()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Holds back the pipeline's socket reads while closed, and lets one through when it opens. With
/// no read asked for, NIO takes the socket out of the event loop's read interest, so a reply that
/// arrives then wakes nobody; a close is still seen (NIO watches for the peer's EOF and for
/// errors apart from reads).
final class ReplyReadGate: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny

    private var context: ChannelHandlerContext?
    private var readHeldBack = false

    /// Closed until the connection has a reply to wait for.
    var isOpen = false {
        didSet {
            guard isOpen, readHeldBack, let context else { return }
            readHeldBack = false
            context.read()
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func read(context: ChannelHandlerContext) {
        if isOpen {
            context.read()
        } else {
            readHeldBack = true
        }
    }
}
