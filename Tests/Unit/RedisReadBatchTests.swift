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
    static func message(_ payload: String) -> String {
        "*3\r\n$8\r\nsmessage\r\n$7\r\nsc:ch:b\r\n$\(payload.utf8.count)\r\n\(payload)\r\n"
    }

    @Test("Three messages and half of a fourth in one read: three values, then one end; the rest: the fourth, an end")
    func valuesThenEnd() throws {
        var log: [String] = []
        let handler = RedisValueHandler(
            onValue: { value in log.append(String(decoding: value.elements?.last?.bytes ?? [], as: UTF8.self)) },
            onReadComplete: { log.append("end") },
            onClose: { log.append("closed") })
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder(bulkMaxBytes: 1024)))
        try channel.pipeline.syncOperations.addHandler(handler)

        let fourth = Self.message("S 4 1 a.00000000\nfour")
        let split = fourth.utf8.count / 2
        let first = Self.message("S 4 1 a.00000000\none") + Self.message("S 4 1 a.00000000\ntwo")
            + Self.message("S 4 1 a.00000000\nthree") + String(fourth.prefix(split))
        try channel.writeInbound(channel.allocator.buffer(string: first))
        #expect(log == ["S 4 1 a.00000000\none", "S 4 1 a.00000000\ntwo", "S 4 1 a.00000000\nthree", "end"])

        log.removeAll()
        try channel.writeInbound(channel.allocator.buffer(string: String(fourth.dropFirst(split))))
        #expect(log == ["S 4 1 a.00000000\nfour", "end"])

        log.removeAll()
        _ = try channel.finish()
        #expect(log.last == "closed")
    }
}
