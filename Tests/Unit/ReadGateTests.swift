import NIOCore
import NIOEmbedded
@testable import RelayServer
import Testing

/// The relay's `ReadGate` (between the socket and the WebSocket decoders), in NIOEmbedded: once the
/// engine pauses a connection nothing more of a read is handed to the decoders, the socket is not
/// read again while anything is kept, and a resume hands on the rest and lets the held-back read
/// through.
@Suite("Relay: the read gate stops decoding at a pause")
struct ReadGateTests {
    /// The decoders' stand-in: counts what it is handed and pauses the gate after `pauseAfterBytes`.
    final class Decoders: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let gate: ReadGate
        var pauseAfterBytes: Int
        var bytes = 0
        var slices: [Int] = []

        init(gate: ReadGate, pauseAfterBytes: Int) {
            self.gate = gate
            self.pauseAfterBytes = pauseAfterBytes
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let slice = unwrapInboundIn(data)
            bytes += slice.readableBytes
            slices.append(slice.readableBytes)
            if bytes >= pauseAfterBytes { gate.pause() }
        }
    }

    /// The socket's stand-in: counts the reads that reach it.
    final class Socket: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var reads = 0

        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    static func pipeline(pauseAfterBytes: Int) throws -> (EmbeddedChannel, ReadGate, Decoders, Socket) {
        let gate = ReadGate()
        let decoders = Decoders(gate: gate, pauseAfterBytes: pauseAfterBytes)
        let socket = Socket()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([socket, gate, decoders])
        return (channel, gate, decoders, socket)
    }

    static func read(_ count: Int) -> ByteBuffer {
        ByteBuffer(bytes: [UInt8](repeating: 0x89, count: count))
    }

    @Test("A 64 KiB read and a pause after the first bytes: one 4 KiB slice decoded, the rest kept")
    func pauseStopsBetweenSlices() throws {
        let (channel, gate, decoders, socket) = try Self.pipeline(pauseAfterBytes: 1)
        try channel.writeInbound(Self.read(65_536))
        #expect(decoders.slices == [ReadGate.sliceBytes])
        // While the gate keeps bytes, the socket is not read again.
        let readsBefore = socket.reads
        channel.read()
        #expect(socket.reads == readsBefore)

        decoders.pauseAfterBytes = .max
        gate.resume()
        channel.embeddedEventLoop.run()
        #expect(decoders.bytes == 65_536)
        #expect(decoders.slices.allSatisfy { $0 <= ReadGate.sliceBytes })
        // The held-back read goes through once nothing is kept.
        #expect(socket.reads == readsBefore + 1)
        _ = try channel.finish()
    }

    @Test("Unpaused: every byte handed on in order, in slices of at most 4 KiB; reads pass straight through")
    func unpausedPassesEverything() throws {
        let (channel, _, decoders, socket) = try Self.pipeline(pauseAfterBytes: .max)
        try channel.writeInbound(Self.read(10_000))
        #expect(decoders.slices == [4_096, 4_096, 1_808])
        let readsBefore = socket.reads
        channel.read()
        #expect(socket.reads == readsBefore + 1)
        _ = try channel.finish()
    }

    @Test("A read arriving while paused is kept behind the first, and a resume while paused again keeps it")
    func pausedAcrossReads() throws {
        let (channel, gate, decoders, _) = try Self.pipeline(pauseAfterBytes: 1)
        try channel.writeInbound(Self.read(8_192))
        try channel.writeInbound(Self.read(8_192))
        #expect(decoders.bytes == ReadGate.sliceBytes)
        // Resumed, the decoders take one more slice and pause again: one slice per resume.
        gate.resume()
        channel.embeddedEventLoop.run()
        #expect(decoders.bytes == 2 * ReadGate.sliceBytes)
        decoders.pauseAfterBytes = .max
        gate.resume()
        channel.embeddedEventLoop.run()
        #expect(decoders.bytes == 16_384)
        _ = try channel.finish()
    }
}
