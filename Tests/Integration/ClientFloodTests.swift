import Foundation
import Testing
import TestSupport

/// The client's side of issue 14 ("Done when" (d)): a malicious relay pushes frames and pings as
/// fast as the socket takes them and reads nothing back; the client's memory stays bounded (its
/// inbound queue is bounded in bytes with backpressure on the socket, and it keeps at most one
/// pong queued), and it stays up.
@Suite("securechat: a relay that floods the client", .serialized, .heavy)
struct ClientFloodTests {
    /// The client's peak resident memory (VmHWM), in KiB.
    static func peakKiB(pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return try #require(Int(line.dropFirst("VmHWM:".count).split(whereSeparator: \.isWhitespace)[0]))
    }

    @Test("(d) A relay floods 48 KiB text, 60 KiB binary frames and pings for 10 s and reads nothing: the client's RSS stays under 64 MiB and it stays up")
    func relayFloodsTheClient() async throws {
        let relay = try await FloodingRelay.start()
        let client = try ClientProcess("alice", [uniqueRoom("FLOOD"), "--relay", relay.url, "--json"])
        let pid = client.processIdentifier
        // The flood starts with the relay's JOINED.
        try await client.notice("joined", timeoutSeconds: 30)
        try await Task.sleep(for: .seconds(10))
        let peakMiB = Double(try Self.peakKiB(pid: pid)) / 1024
        let pushedMiB = relay.bytesWritten >> 20
        let pings = relay.pingsWritten
        await relay.stop()
        let summary = "client peak RSS \(peakMiB) MiB; the relay pushed \(pushedMiB) MiB and \(pings) pings"
        // Without the bounds, the client's mailbox held up to 8,192 frames of 64 KiB (512 MiB).
        #expect(peakMiB < 64, "\(summary)")
        // The flood was more than the bound: a client that held what it was sent would be over it.
        #expect(pushedMiB > 64, "\(summary)")
        #expect(pings > 200, "\(summary)")
        // Still up: a flood is not a reason to crash (it may have given up on the relay since).
        #expect(client.isRunning, "\(summary); stderr: \(client.stderr.all.suffix(10))")
        await client.kill()
    }
}
