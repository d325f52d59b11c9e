import DequeModule
import NIOCore
import NIOPosix
import NIOSSL
import RelayCore

/// One command connection to one Redis server (the single Redis, or one master of a Redis
/// Cluster): commands pipelined in order, each answered by the next reply. Confined to the hub's
/// event loop; `ClusterLink` decides where each command goes and what a closed connection means.
final class RedisConnection {
    struct Waiter {
        var deadline: NIODeadline
        var callback: (RESPValue?) -> Void
    }

    let address: RedisServerAddress
    private(set) var channel: (any Channel)?
    /// Connected and past its handshake (AUTH): commands may go.
    var ready = false
    var backoffMilliseconds = ClusterTiming.reconnectFirstMilliseconds
    private(set) var waiting = Deque<Waiter>()
    private var flushScheduled = false
    private let eventLoop: any EventLoop

    init(address: RedisServerAddress, eventLoop: any EventLoop) {
        self.address = address
        self.eventLoop = eventLoop
    }

    /// The oldest command's deadline has passed: Redis is not answering.
    var isOverdue: Bool { waiting.first.map { $0.deadline < .now() } ?? false }

    func attach(_ channel: any Channel) {
        self.channel = channel
    }

    /// Send one command; `callback` gets its reply, or nil (no connection, too many waiting, or
    /// the connection closed before the reply).
    func send(_ arguments: [[UInt8]], _ callback: @escaping (RESPValue?) -> Void) {
        guard let channel, waiting.count < ClusterTiming.waitingMax else { return callback(nil) }
        let deadline = NIODeadline.now() + .milliseconds(ClusterTiming.commandTimeoutMilliseconds)
        waiting.append(Waiter(deadline: deadline, callback: callback))
        channel.write(channel.allocator.buffer(bytes: RESPEncoding.command(arguments)), promise: nil)
        scheduleFlush()
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
        guard let waiter = waiting.popFirst() else {
            channel?.close(promise: nil)
            return
        }
        waiter.callback(value)
    }

    /// The channel closed: every waiter is answered nil (a callback may send again: it fails at
    /// once, there is no channel).
    func closed() {
        channel = nil
        ready = false
        while let waiter = waiting.popFirst() { waiter.callback(nil) }
    }

    func close() {
        channel?.close(promise: nil)
    }

    /// A TCP (or TLS) connection to `address` whose RESP values go to `onValue`.
    static func connect(
        to address: RedisServerAddress, sslContext: NIOSSLContext?, bulkMaxBytes: Int, eventLoop: any EventLoop,
        onValue: @escaping (RESPValue) -> Void, readComplete: @escaping () -> Void = {}, closed: @escaping () -> Void
    ) -> EventLoopFuture<any Channel> {
        let handler = NIOLoopBound(
            RedisValueHandler(onValue: onValue, onReadComplete: readComplete, onClose: closed), eventLoop: eventLoop)
        // SNI and the name check want a host name; an IP address is checked against the
        // certificate's IP addresses instead (NIOSSL does that when no name is given).
        let host = address.host
        let serverHostname = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
        return ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.milliseconds(ClusterTiming.commandTimeoutMilliseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                    }
                    let decoder = RESPDecoder(bulkMaxBytes: bulkMaxBytes)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
                    try channel.pipeline.syncOperations.addHandler(handler.value)
                }
            }
            .connect(host: host, port: address.port)
    }
}

/// Bytes from Redis to `RESPValue`s (`RESPParser`, bounded; a stream that is not RESP is an
/// error, which closes the connection).
final class RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    struct Invalid: Error {
        var failure: RESPParser.Failure
    }

    private let parser: RESPParser

    /// `bulkMaxBytes`: a SIGNAL is at most the relay's largest frame plus its header; a cap below
    /// that would drop the subscriber connection for one SIGNAL the relay itself accepted.
    init(bulkMaxBytes: Int) {
        parser = RESPParser(bulkMaxBytes: bulkMaxBytes)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch buffer.withUnsafeReadableBytes({ parser.parse($0) }) {
        case .incomplete:
            return .needMoreData
        case let .value(value, length):
            buffer.moveReaderIndex(forwardBy: length)
            context.fireChannelRead(wrapInboundOut(value))
            return .continue
        case let .invalid(failure):
            throw Invalid(failure: failure)
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Hands each value to the link; reports the end of each read batch and the close; closes on any error.
final class RedisValueHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue

    private let onValue: (RESPValue) -> Void
    private let onReadComplete: () -> Void
    private let onClose: () -> Void

    init(onValue: @escaping (RESPValue) -> Void, onReadComplete: @escaping () -> Void, onClose: @escaping () -> Void) {
        self.onValue = onValue
        self.onReadComplete = onReadComplete
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onValue(unwrapInboundIn(data))
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
