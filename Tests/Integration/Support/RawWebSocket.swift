import ChatNetworking
import NIOCore
import NIOWebSocket

/// A WebSocket client at the frame level, on `WebSocketClient.connect(to:configureUpgradedChannel:)`:
/// it answers nothing by itself (no pongs, no close echo), so tests can play a dead or
/// misbehaving peer, and it can send fragmented messages.
final class RawWebSocket: Sendable {
    private let outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
    private let inbox: TestInbox<WebSocketFrame>

    private init(outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>, inbox: TestInbox<WebSocketFrame>) {
        self.outbound = outbound
        self.inbox = inbox
    }

    /// Connect to `url`, run `body`, then close the TCP connection.
    static func withConnection<T: Sendable>(
        _ url: String, caFile: String? = nil, _ body: @escaping @Sendable (RawWebSocket) async throws -> T
    ) async throws -> T {
        let client = try WebSocketClient(configuration: WebSocketClientConfiguration(caFilePath: caFile))
        let channel = try await client.connect(to: try WebSocketURL(url)) { channel in
            try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(wrappingChannelSynchronously: channel)
        }
        return try await channel.executeThenClose { inbound, outbound in
            let inbox = TestInbox<WebSocketFrame>()
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    do {
                        for try await frame in inbound { inbox.push(frame) }
                        inbox.end(nil)
                    } catch {
                        inbox.end(error)
                    }
                    return nil
                }
                let result = try await body(RawWebSocket(outbound: outbound, inbox: inbox))
                group.cancelAll()
                return result
            }
        }
    }

    /// Send a masked text frame.
    func send(_ text: String) async throws {
        try await outbound.write(
            WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text)))
    }

    /// Send `bytes` as one text message split into continuation frames of `fragmentSize`.
    func sendFragmented(_ bytes: [UInt8], fragmentSize: Int) async throws {
        precondition(fragmentSize > 0)
        let chunks = stride(from: 0, to: bytes.count, by: fragmentSize).map {
            Array(bytes[$0..<min($0 + fragmentSize, bytes.count)])
        }
        for (index, chunk) in chunks.enumerated() {
            let frame = WebSocketFrame(
                fin: index == chunks.count - 1, opcode: index == 0 ? .text : .continuation, maskKey: .random(),
                data: ByteBuffer(bytes: chunk)
            )
            try await outbound.write(frame)
        }
    }

    /// The next frame of any kind; nil when the connection has ended.
    func nextFrame(timeoutSeconds: Double = 10) async throws -> WebSocketFrame? {
        try await withTimeout(timeoutSeconds, "a frame") { await self.inbox.next() }
    }

    /// The next text frame (pings and pongs are skipped, not answered).
    func nextText(timeoutSeconds: Double = 10) async throws -> String {
        for _ in 0..<10_000 {
            guard let frame = try await nextFrame(timeoutSeconds: timeoutSeconds) else {
                throw TestWebSocket.Ended(expected: "a text frame")
            }
            switch frame.opcode {
            case .text: return String(buffer: frame.unmaskedData)
            case .ping, .pong: continue
            default: throw TestWebSocket.Unexpected(expected: "a text frame", got: "\(frame.opcode)")
            }
        }
        throw TestWebSocket.Unexpected(expected: "a text frame", got: "10000 control frames")
    }
}
