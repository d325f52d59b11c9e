import ChatNetworking
import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import Testing

/// A peer that stops reading must not make the relay buffer without bound, and nothing is lost.
@Suite("relay: backpressure")
struct RelayBackpressureTests {
    /// Counts text frames on a connection whose reads the test switches on and off.
    final class CountingHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = WebSocketFrame
        let texts = Mutex(0)

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if unwrapInboundIn(data).opcode == .text { texts.withLock { $0 += 1 } }
        }
    }

    static func residentMiB(pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        let kib = try #require(Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ")[0]))
        return kib / 1024
    }

    @Test("A reader that stops: the relay stops reading the sender, its memory stays flat, nothing is lost")
    func slowReader() async throws {
        let limits = [
            "--messages-per-second", "100000", "--message-burst", "100000",
            "--bytes-per-second", "1073741824", "--byte-burst", "1073741824",
        ]
        try await withRelay(limits) { relay in
            let sender = try await TestWebSocket.connect(relay.url)
            let counter = CountingHandler()
            let client = try WebSocketClient()
            let reader = try await client.connect(to: try WebSocketURL(relay.url)) { channel in
                try channel.pipeline.syncOperations.addHandler(counter)
                return channel
            }
            defer { reader.close(promise: nil) }
            try await reader.writeAndFlush(
                WebSocketFrame(
                    fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: joinFrame("SLOW")))
            )
            try await sender.send(joinFrame("SLOW"))
            try await sender.expect("JOINED")
            try await sender.expect("PEER_FOUND")
            // The reader saw JOINED and PEER_FOUND; now it stops reading from its socket.
            try await reader.setOption(.autoRead, value: false).get()

            let frame = signalFrame(kind: "MSG", payload: String(repeating: "QUJD", count: 15_000))  // ~60 KB
            // ~18 MB: more than the reader's socket and the relay's queue toward it can take, so
            // the relay must stop reading from the sender (the rest may wait in the kernel's
            // buffers between the sender and the relay, which are the sender's cost, not the relay's).
            let total = 300
            let sent = Mutex(0)
            let sending = Task {
                for _ in 0..<total {
                    try await sender.send(frame)
                    sent.withLock { $0 += 1 }
                }
            }
            // Wait until the relay has stopped reading from the sender: its count of received
            // frames stands still for a second (it may first have to work through a backlog).
            var received = -1.0
            for _ in 0..<60 {
                try await Task.sleep(for: .seconds(1))
                let now = try await relay.metric("relay_frames_received_total") ?? -1
                if now == received && now > 2 { break }
                received = now
            }
            // Two JOINs plus the SIGNALs it took: well short of everything the sender wrote (the
            // rest waits in the kernel's buffers between sender and relay, the sender's cost).
            let sentSoFar = sent.withLock { $0 }
            #expect(received - 2 < Double(total), "the relay read all \(total) frames while the reader was stalled")
            #expect(received - 2 <= Double(sentSoFar))
            let rss = try Self.residentMiB(pid: relay.process.processIdentifier)
            #expect(rss < 150, "relay RSS \(rss) MiB while a reader is stalled")

            // The reader resumes: every frame arrives, and the sender finishes.
            try await reader.setOption(.autoRead, value: true).get()
            reader.read()
            try await withTimeout(60, "the sender to finish") { try await sending.value }
            for _ in 0..<600 where counter.texts.withLock({ $0 }) < total + 2 {
                try await Task.sleep(for: .milliseconds(100))
            }
            // JOINED + PEER_FOUND + every SIGNAL.
            #expect(counter.texts.withLock { $0 } == total + 2)
        }
    }
}
