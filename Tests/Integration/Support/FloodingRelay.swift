import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// A hostile relay on 127.0.0.1 (a kernel-chosen port): it upgrades the client's WebSocket,
/// answers its first JOIN with JOINED, stops reading, and from then on writes 48 KiB SIGNAL frames,
/// 60 KiB binary frames and pings (125-byte payloads) as fast as the socket takes them, until
/// `stop` or `bytesMax`.
/// What the client sends back (pongs, JOIN retransmissions) is never read, so it can only pile
/// up in the client, unless the client bounds it.
final class FloodingRelay: Sendable {
    let port: Int
    private let channel: any Channel
    private let counters: Counters

    final class Counters: Sendable {
        let bytesWritten = Atomic<Int>(0)
        let pingsWritten = Atomic<Int>(0)
        let stopped = Atomic<Bool>(false)
    }

    /// Every flooded connection stops after this many bytes (a backstop for a test that hangs).
    static let bytesMax = 4 << 30

    /// Bytes of frames written so far, over every connection.
    var bytesWritten: Int { counters.bytesWritten.load(ordering: .relaxed) }
    var pingsWritten: Int { counters.pingsWritten.load(ordering: .relaxed) }
    var url: String { "ws://127.0.0.1:\(port)" }

    static func start() async throws -> FloodingRelay {
        let counters = Counters()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOWebSocketServerUpgrader(
                        maxFrameSize: 1 << 16,
                        shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(FloodHandler(counters: counters))
                            }
                        })
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return FloodingRelay(channel: channel, counters: counters)
    }

    private init(channel: any Channel, counters: Counters) {
        self.channel = channel
        self.counters = counters
        port = channel.localAddress?.port ?? 0
    }

    /// Stop flooding and listening (flooded connections close once their current write is out).
    func stop() async {
        counters.stopped.store(true, ordering: .relaxed)
        try? await channel.close()
    }

    /// One flooded connection.
    private final class FloodHandler: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        let counters: Counters
        private var flooding = false
        private var pumping = false
        private var written = 0
        private var frameCount = 0
        static let signal = Array(#"{"type":"SIGNAL","kind":"MSG","payload":""#.utf8)
            + [UInt8](repeating: UInt8(ascii: "A"), count: 48 * 1024) + Array(#""}"#.utf8)
        static let junk = [UInt8](repeating: 0xFF, count: 60 * 1024)

        init(counters: Counters) {
            self.counters = counters
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            guard !flooding, frame.opcode == .text else { return }
            // The JOIN: answer it with the room it names, then stop reading and flood.
            let text = String(buffer: frame.unmaskedData)
            let room = text.split(separator: "\"").drop { $0 != "room" }.dropFirst(2).first ?? "ROOM"
            let joined = #"{"type":"JOINED","room":"\#(room)","peers":1}"#
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: joined))),
                          promise: nil)
            flooding = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
            pump(context: context)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if flooding { pump(context: context) }
            context.fireChannelWritabilityChanged()
        }

        /// Write frames while the channel takes them (NIO's 64 KiB high watermark stops the loop).
        private func pump(context: ChannelHandlerContext) {
            guard !pumping else { return }
            pumping = true
            defer { pumping = false }
            // Bounded by the watermark, `bytesMax` and `stop`.
            while context.channel.isWritable, written < FloodingRelay.bytesMax,
                !counters.stopped.load(ordering: .relaxed)
            {
                frameCount += 1
                let frame: WebSocketFrame
                switch frameCount % 4 {
                case 0:
                    let payload = ByteBuffer(bytes: [UInt8](repeating: UInt8(frameCount & 0xFF), count: 125))
                    frame = WebSocketFrame(fin: true, opcode: .ping, data: payload)
                    counters.pingsWritten.add(1, ordering: .relaxed)
                case 1:
                    frame = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: Self.signal))
                default:
                    // Cheap for the client to refuse, so the flood outruns its reading.
                    frame = WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: Self.junk))
                }
                written += frame.length
                counters.bytesWritten.add(frame.length, ordering: .relaxed)
                context.write(wrapOutboundOut(frame), promise: nil)
            }
            context.flush()
            if counters.stopped.load(ordering: .relaxed) {
                context.close(promise: nil)
            } else if context.channel.isWritable, written < FloodingRelay.bytesMax {
                // The kernel took it all (the flush made the channel writable again while this
                // loop ignored the news): go on after other work on the loop.
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.execute { bound.value.0.pump(context: bound.value.1) }
            }
        }
    }
}
