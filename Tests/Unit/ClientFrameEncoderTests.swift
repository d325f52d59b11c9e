import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import ChatNetworking

/// The client's frame encoder must put on the wire exactly what NIO's `WebSocketFrameEncoder` does.
@Suite("Client frame encoder: NIO's bytes, masked a word at a time")
struct ClientFrameEncoderTests {
    /// Everything NIO's encoder, with ours in front of it or not, writes for `frame`, concatenated.
    static func wire(_ frame: WebSocketFrame, ours: Bool) throws -> [UInt8] {
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        if ours {
            let nioEncoder = try channel.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
            try channel.pipeline.syncOperations.addHandler(ClientFrameEncoder(writingPast: nioEncoder))
        }
        try channel.writeOutbound(frame)
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            bytes += Array(buffer: buffer)
        }
        _ = try channel.finish()
        return bytes
    }

    @Test("Same bytes as NIO's encoder for each length class, opcode, flag and key")
    func sameBytesAsNIO() throws {
        var generator = SystemRandomNumberGenerator()
        let lengths = Array(0..<70) + [125, 126, 127, 65_535, 65_536, 70_001]
        for length in lengths {
            let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for (opcode, masked) in [(WebSocketOpcode.text, true), (.binary, true), (.ping, false)] {
                let key = masked ? WebSocketMaskingKey.random(using: &generator) : nil
                let frame = WebSocketFrame(
                    fin: length % 2 == 0, rsv1: length % 3 == 0, opcode: opcode, maskKey: key,
                    data: ByteBuffer(bytes: payload))
                let ours = try Self.wire(frame, ours: true)
                let nio = try Self.wire(frame, ours: false)
                #expect(ours == nio, "length \(length), \(opcode)")
            }
        }
    }
}
