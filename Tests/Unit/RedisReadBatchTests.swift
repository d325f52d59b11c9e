import NIOCore
import NIOEmbedded
import RelayCore
@testable import RelayServer
import Testing

/// The cluster node's Redis connections in NIOEmbedded: every value decoded from one read reaches
/// the link before the read's end does, and the end is reported once per read. The hub flushes
/// the SIGNALs a subscriber read delivered at that end (one flush per receiving connection, not
/// one per SIGNAL), so a missing end would leave them unflushed until the next timer.
@Suite("Cluster: Redis values of one read, then one end of the read")
struct RedisReadBatchTests {
    /// What the handler reported, in order (a class: the handler's closures append to it).
    final class Log {
        var lines: [String] = []
    }

    static func message(_ payload: String) -> String {
        "*3\r\n$8\r\nsmessage\r\n$7\r\nsc:ch:b\r\n$\(payload.utf8.count)\r\n\(payload)\r\n"
    }

    @Test("Three messages and half of a fourth in one read: three values, then one end; the rest: the fourth, an end")
    func valuesThenEnd() throws {
        let log = Log()
        let handler = RedisValueHandler(
            onValue: { value in log.lines.append(String(decoding: value.elements?.last?.bytes ?? [], as: UTF8.self)) },
            onReadComplete: { log.lines.append("end") },
            onClose: { log.lines.append("closed") })
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder(bulkMaxBytes: 1024)))
        try channel.pipeline.syncOperations.addHandler(handler)
        try Self.feed(channel, log: log)
    }

    @Test("The subscriber's decoder: messages through its fast path, in order with other values, one end per read")
    func fastPathThenEnd() throws {
        let log = Log()
        let handler = RedisValueHandler(
            onValue: { value in log.lines.append("value \(value)") },
            onMessage: { payload in log.lines.append(String(decoding: payload.readableBytesView, as: UTF8.self)) },
            onReadComplete: { log.lines.append("end") },
            onClose: { log.lines.append("closed") })
        let channel = EmbeddedChannel()
        let decoder = RESPDecoder(bulkMaxBytes: 1024, pubSubMessages: true)
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.writeInbound(channel.allocator.buffer(string: ":1\r\n" + Self.message("S 4 1 a.00000000\nzero")))
        #expect(log.lines == ["value integer(1)", "S 4 1 a.00000000\nzero", "end"])
        log.lines.removeAll()
        try Self.feed(channel, log: log)
    }

    @Test("The subscriber's decoder closes the connection on a malformed message, after the messages before it")
    func fastPathMalformed() throws {
        let log = Log()
        let handler = RedisValueHandler(
            onValue: { value in log.lines.append("value \(value)") },
            onMessage: { payload in log.lines.append(String(decoding: payload.readableBytesView, as: UTF8.self)) },
            onReadComplete: { log.lines.append("end") },
            onClose: { log.lines.append("closed") })
        let channel = EmbeddedChannel()
        let decoder = RESPDecoder(bulkMaxBytes: 1024, pubSubMessages: true)
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
        try channel.pipeline.syncOperations.addHandler(handler)
        let bad = "*3\r\n$8\r\nsmessage\r\n$7\r\nsc:ch:b\r\n$3\r\nabcd\r\n"
        // The decoder's error reaches the handler, which closes (EmbeddedChannel may rethrow it too).
        _ = try? channel.writeInbound(channel.allocator.buffer(string: Self.message("S 4 1 a.00000000\none") + bad))
        #expect(log.lines.first == "S 4 1 a.00000000\none")
        #expect(log.lines.contains("closed") && !channel.isActive, "\(log.lines)")
    }

    /// Three messages and half of a fourth in one read, then the rest; then the close.
    static func feed(_ channel: EmbeddedChannel, log: Log) throws {
        let fourth = Self.message("S 4 1 a.00000000\nfour")
        let split = fourth.utf8.count / 2
        let first = Self.message("S 4 1 a.00000000\none") + Self.message("S 4 1 a.00000000\ntwo")
            + Self.message("S 4 1 a.00000000\nthree") + String(fourth.prefix(split))
        try channel.writeInbound(channel.allocator.buffer(string: first))
        #expect(log.lines == ["S 4 1 a.00000000\none", "S 4 1 a.00000000\ntwo", "S 4 1 a.00000000\nthree", "end"])

        log.lines.removeAll()
        try channel.writeInbound(channel.allocator.buffer(string: String(fourth.dropFirst(split))))
        #expect(log.lines == ["S 4 1 a.00000000\nfour", "end"])

        log.lines.removeAll()
        _ = try channel.finish()
        #expect(log.lines.last == "closed")
    }
}
