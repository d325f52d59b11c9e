import NIOCore
import RelayCore
@testable import RelayServer
import Testing

/// What a cluster node writes to Redis per cross-node SIGNAL, in place: the SIGNAL header
/// (`ClusterWire.writeSignalHeader`) and the RESP commands written straight into a `ByteBuffer`,
/// each against the reference form it replaces (`ClusterWire.signalHeader`'s text,
/// `RESPEncoding.command`).
@Suite("Cluster: SIGNAL headers and Redis commands written in place")
struct RESPWriterTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test("The SIGNAL header written in place is S <to> <from> <node> and a newline, for the extreme numbers too")
    func signalHeader() {
        let cases: [(UInt64, UInt64, String)] = [(0, 0, "a.0"), (7, 5, "n1.0a"), (.max, 1234, "node-x.1a2b3c4d")]
        for (to, from, node) in cases {
            let header = ClusterWire.signalHeader(
                to: ClusterPeer(node: "other.1", connection: to), from: ClusterPeer(node: node, connection: from))
            #expect(header == Self.bytes("S \(to) \(from) \(node)\n"))
            #expect(header.count == ClusterWire.signalHeaderLength(
                to: ClusterPeer(node: "other.1", connection: to), from: ClusterPeer(node: node, connection: from)))
        }
        var short = [UInt8](repeating: 0, count: 8)
        let written = short.withUnsafeMutableBytes {
            ClusterWire.writeSignalHeader(
                to: ClusterPeer(node: "b.1", connection: 10), from: ClusterPeer(node: "a.1", connection: 10), into: $0)
        }
        #expect(!written && short == [UInt8](repeating: 0, count: 8), "a short buffer: nothing written")
    }

    @Test("Commands written into a ByteBuffer are RESPEncoding.command's bytes, sized exactly")
    func commands() {
        let cases: [[[UInt8]]] = [
            [Self.bytes("SET"), Self.bytes("k"), []],
            [Self.bytes("EVALSHA"), [UInt8](repeating: 0x61, count: 40), Self.bytes("1"), [0, 13, 10, 255]],
            [Self.bytes("PING")],
            (0..<12).map { [UInt8](repeating: UInt8($0), count: $0 * 37) },
        ]
        for arguments in cases {
            var buffer = ByteBuffer()
            buffer.writeRESPCommand(arguments)
            #expect(Array(buffer.readableBytesView) == RESPEncoding.command(arguments))
            #expect(buffer.readableBytes == ByteBuffer.respCommandBytes(argumentBytes: arguments.map(\.count)))
        }
    }

    @Test("An SPUBLISH written in place is RESPEncoding.command of SPUBLISH, the channel and the payload")
    func spublish() {
        for payload in [[], Self.bytes("E 7"), [UInt8](repeating: 0x5A, count: 70_000)] {
            var buffer = ByteBuffer()
            buffer.writeSPUBLISHHeader(channelPrefix: "sc:ch:", name: "n1.0a0b0c0d", payloadBytes: payload.count)
            buffer.writeBytes(payload)
            buffer.writeRESPLineEnd()
            let expected = RESPEncoding.command([Self.bytes("SPUBLISH"), Self.bytes("sc:ch:n1.0a0b0c0d"), payload])
            #expect(Array(buffer.readableBytesView) == expected)
        }
    }
}
