import NIOCore
import NIOEmbedded
import RelayCore
@testable import RelayServer
import Testing

/// A node's command connection to Redis in NIOEmbedded: the socket is read at once while a
/// command with a callback waits, and replies to `SPUBLISH`es alone wait for the batch read
/// `publishReplyReadMilliseconds` later (each read of them one wakeup of the node fewer per
/// cross-node SIGNAL); every reply still reaches its waiter, in order.
@Suite("Cluster: publish replies are read in batches, callbacks' replies at once")
struct ReplyReadGateTests {
    /// The socket's stand-in: counts the reads that reach it (NIO's read interest).
    typealias Socket = ReadGateTests.Socket

    final class Log {
        var lines: [String] = []
    }

    static let batch = TimeAmount.milliseconds(ClusterTiming.publishReplyReadMilliseconds)

    static func connection() throws -> (EmbeddedChannel, RedisConnection, Socket, Log) {
        let channel = EmbeddedChannel()
        let connection = RedisConnection(
            address: .init(host: "127.0.0.1", port: 6379), eventLoop: channel.embeddedEventLoop)
        let log = Log()
        connection.publishAnswered = { _, reply, command, _ in
            let text = String(decoding: command.readableBytesView, as: UTF8.self)
            log.lines.append("\(text) \(reply.map { "\($0)" } ?? "nil")")
        }
        let socket = Socket()
        let handler = RedisValueHandler(
            onValue: { connection.received($0) }, onReadComplete: { connection.readCompleted() },
            onClose: { connection.closed() })
        try channel.pipeline.syncOperations.addHandlers([
            socket, connection.makeGate(), ByteToMessageHandler(RESPDecoder(bulkMaxBytes: 1024)), handler,
        ])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        connection.attach(channel)
        return (channel, connection, socket, log)
    }

    /// What NIO does after every read with auto-read on: ask for the next one.
    static func rearm(_ channel: EmbeddedChannel) {
        channel.read()
    }

    @Test("Nothing waits: no read; a callback's command: read at once; its reply read, the gate closes again")
    func callbacksReadAtOnce() throws {
        let (channel, connection, socket, log) = try Self.connection()
        Self.rearm(channel)
        #expect(socket.reads == 0, "nothing waits for a reply: the socket is not read")
        connection.send([Array("PING".utf8)]) { log.lines.append("ping \($0.map { "\($0)" } ?? "nil")") }
        #expect(socket.reads == 1, "a callback waits: the held-back read goes at once")
        try channel.writeInbound(ByteBuffer(string: "+PONG\r\n"))
        #expect(log.lines == ["ping simpleString([80, 79, 78, 71])"])
        Self.rearm(channel)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(socket.reads == 1, "nothing waits any more: the socket is not read again")
    }

    @Test("Publishes alone: no read until the batch read; then every reply in order, and no read after")
    func publishRepliesInBatches() throws {
        let (channel, connection, socket, log) = try Self.connection()
        Self.rearm(channel)
        for name in ["a", "b", "c"] { connection.sendPublish(ByteBuffer(string: name), redirected: false) }
        channel.embeddedEventLoop.advanceTime(by: Self.batch - .milliseconds(1))
        #expect(socket.reads == 0, "publishes alone wait: no read before the batch read")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(socket.reads == 1, "the batch read")
        // Two replies in this read; the third has not come yet: the next batch read is for it.
        try channel.writeInbound(ByteBuffer(string: ":1\r\n:0\r\n"))
        #expect(log.lines == ["a integer(1)", "b integer(0)"])
        Self.rearm(channel)
        #expect(socket.reads == 1)
        channel.embeddedEventLoop.advanceTime(by: Self.batch)
        #expect(socket.reads == 2, "a publish still waits: another batch read")
        try channel.writeInbound(ByteBuffer(string: "-MOVED 1 127.0.0.1:7001\r\n"))
        #expect(log.lines.last == "c \(RESPValue.error(Array("MOVED 1 127.0.0.1:7001".utf8)))")
        Self.rearm(channel)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(socket.reads == 2, "nothing waits: no more reads")
    }

    @Test("A callback behind publishes: read at once, the publishes' replies with it, in order")
    func callbackBehindPublishes() throws {
        let (channel, connection, socket, log) = try Self.connection()
        Self.rearm(channel)
        connection.sendPublish(ByteBuffer(string: "a"), redirected: false)
        connection.send([Array("EVALSHA".utf8)]) { log.lines.append("script \($0.map { "\($0)" } ?? "nil")") }
        #expect(socket.reads == 1, "the callback opens the gate before the batch read")
        try channel.writeInbound(ByteBuffer(string: ":2\r\n:7\r\n"))
        #expect(log.lines == ["a integer(2)", "script integer(7)"])
        Self.rearm(channel)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(socket.reads == 1)
    }

    @Test("During a slot-map refresh every reply is read at once; after it, until the publishes before are answered")
    func readsAtOnceDuringMapRefresh() throws {
        let (channel, connection, socket, log) = try Self.connection()
        Self.rearm(channel)
        connection.sendPublish(ByteBuffer(string: "a"), redirected: false)
        #expect(socket.reads == 0)
        connection.readAtOnce()
        #expect(socket.reads == 1, "a refresh under way: the publish's reply is read at once")
        try channel.writeInbound(ByteBuffer(string: "-MOVED 1 127.0.0.1:7001\r\n"))
        Self.rearm(channel)
        #expect(socket.reads == 2, "still refreshing: the next read goes at once")
        connection.sendPublish(ByteBuffer(string: "b"), redirected: false)
        // The new map is in, but b (sent before it) is not answered yet: still at once.
        connection.readInBatches()
        #expect(connection.readsAtOnce)
        try channel.writeInbound(ByteBuffer(string: ":1\r\n"))
        #expect(log.lines.count == 2 && !connection.readsAtOnce, "b answered: back to batches")
        Self.rearm(channel)
        #expect(socket.reads == 2, "nothing waits: no read")
        connection.sendPublish(ByteBuffer(string: "c"), redirected: false)
        #expect(socket.reads == 2, "publishes alone wait for the batch read again")
        channel.embeddedEventLoop.advanceTime(by: Self.batch)
        #expect(socket.reads == 3)
    }

    @Test("Closing with nothing waiting: the socket is read to its end (a TLS peer's close_notify)")
    func closeReadsToTheEnd() throws {
        let (channel, connection, socket, _) = try Self.connection()
        Self.rearm(channel)
        #expect(socket.reads == 0)
        connection.close()
        #expect(socket.reads == 1)
    }

    @Test("The connection closes with publishes waiting: each answered nil, the batch read cancelled")
    func closeAnswersPublishes() throws {
        let (channel, connection, socket, log) = try Self.connection()
        Self.rearm(channel)
        connection.sendPublish(ByteBuffer(string: "a"), redirected: false)
        connection.sendPublish(ByteBuffer(string: "b"), redirected: false)
        try channel.close().wait()
        #expect(log.lines == ["a nil", "b nil"])
        #expect(connection.waiting.isEmpty)
        // The next connection (same object, its own gate): the old batch read does not open it.
        let next = Socket()
        let nextChannel = EmbeddedChannel(handlers: [next, connection.makeGate()], loop: channel.embeddedEventLoop)
        try nextChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        connection.attach(nextChannel)
        nextChannel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(socket.reads == 0 && next.reads == 0, "the batch read was cancelled with the connection")
    }
}
