import ChatNetworking
import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
import TestSupport
#endif

/// A peer that stops reading must not make the relay buffer without bound, and nothing is lost.
@Suite("relay: backpressure", .heavy)
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

    /// The most bytes waiting unread in any of the relay's established TCP connections on `port`
    /// (the kernel's receive queue, /proc/net/tcp): what it has not read from a client.
    static func unreadBytes(port: Int) throws -> Int {
        let table = try readWhole("/proc/net/tcp")
        var most = 0
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 4, fields[3] == "01",
                  let local = fields[1].split(separator: ":").last, Int(local, radix: 16) == port,
                  let queue = fields[4].split(separator: ":").last, let unread = Int(queue, radix: 16)
            else { continue }
            most = max(most, unread)
        }
        return most
    }

    /// A /proc file read to its end. /proc files report a size of 0 and the kernel makes them a
    /// page per read, so a reader that stops at the reported size or one read sees only the
    /// first page (in a full test run, /proc/net/tcp holds far more sockets than fit).
    static func readWhole(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TestTimeout(what: "open \(path) (errno \(errno))", seconds: 0) }
        defer { close(fd) }
        return String(decoding: readAll(fd, limitBytes: 64 << 20), as: UTF8.self)
    }

    /// Whether every thread of `pid` is sleeping (state S: waiting in epoll, not runnable).
    static func allThreadsSleeping(pid: Int32) -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else {
            return false
        }
        return !tasks.isEmpty && tasks.allSatisfy { task in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            return stat[stat.index(after: close)...].split(separator: " ").first == "S"
        }
    }

    /// A WebSocket sender on a blocking socket: each write returns only once the kernel took every
    /// byte, so what it counts as sent is what left the test process (an NIO channel would queue
    /// the whole workload in the test's own memory and count it sent at once).
    final class BlockingSender: Sendable {
        let fd: Int32

        init(port: Int) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard fd >= 0, connected == 0 else { throw TestTimeout(what: "a connection to the relay", seconds: 0) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            try write(Array(("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\n"
                + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-WebSocket-Version: 13\r\n\r\n").utf8))
            _ = try read(until: "\r\n\r\n")
        }

        deinit { close(fd) }

        /// Write every byte (blocking while the kernel's buffers are full).
        func write(_ bytes: [UInt8]) throws {
            var offset = 0
            // Bounded: every pass writes at least one byte or throws.
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { throw TestTimeout(what: "a write to the relay (errno \(errno))", seconds: 0) }
                offset += written
            }
        }

        /// Read until `marker` has arrived (at most 10 s per read); returns what was read.
        func read(until marker: String) throws -> String {
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            // Bounded by the read timeout and 1 MiB.
            while received.count < 1 << 20 {
                let count = Glibc.read(fd, &chunk, chunk.count)
                guard count > 0 else { break }
                received += chunk[0..<count]
                let text = String(decoding: received, as: UTF8.self)
                if text.contains(marker) { return text }
            }
            throw TestTimeout(what: "\(marker) from the relay", seconds: 10)
        }

        /// `text` as one masked text frame (RFC 6455 §5.2; one mask key for all: any key is valid).
        static func frame(_ text: String) -> [UInt8] {
            let payload = Array(text.utf8)
            let key: [UInt8] = [0x1F, 0x2E, 0x3D, 0x4C]
            var bytes: [UInt8] = [0x81]
            if payload.count < 126 {
                bytes.append(0x80 | UInt8(payload.count))
            } else {
                bytes += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
            }
            bytes += key
            bytes += payload.enumerated().map { $1 ^ key[$0 % 4] }
            return bytes
        }
    }

    /// Wait until the relay has stopped reading from the sender, shown by what it does, not only by
    /// a count standing still (which a relay starved of CPU would also show): its count of frames
    /// received unchanged for a second while the sender's bytes wait unread in its socket and every
    /// relay thread sleeps. A starved relay would be runnable. Returns whether it did (within about
    /// a minute) and the count.
    static func waitUntilReadingStops(_ relay: RelayProcess) async throws -> (Bool, Double) {
        let pid = relay.process.processIdentifier
        var received = -1.0
        for _ in 0..<60 {
            let before = try await relay.metric("relay_frames_received_total") ?? -1
            var sleepingWithBytesWaiting = false
            for _ in 0..<10 {
                try await Task.sleep(for: .milliseconds(100))
                if allThreadsSleeping(pid: pid), try unreadBytes(port: relay.port) > 0 {
                    sleepingWithBytesWaiting = true
                }
            }
            received = try await relay.metric("relay_frames_received_total") ?? -1
            if received == before && received > 2 && sleepingWithBytesWaiting { return (true, received) }
        }
        return (false, received)
    }

    @Test("A reader that stops: the relay stops reading the sender, its memory stays flat under a load it could not hold, nothing is lost")
    func slowReader() async throws {
        let limits = [
            "--messages-per-second", "100000", "--message-burst", "100000",
            "--bytes-per-second", "1073741824", "--byte-burst", "1073741824",
        ]
        try await withRelay(limits) { relay in
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
            let port = relay.port
            let sender = try await offPool {
                let sender = try BlockingSender(port: port)
                try sender.write(BlockingSender.frame(joinFrame("SLOW")))
                _ = try sender.read(until: "PEER_FOUND")
                return sender
            }
            // The reader saw JOINED and PEER_FOUND; now it stops reading from its socket.
            try await reader.setOption(.autoRead, value: false).get()
            let pid = relay.process.processIdentifier
            let baselineMiB = try Self.residentMiB(pid: pid)

            // 40 MB against a bound of 16 MiB of growth. Without backpressure the relay would read
            // all of it and queue it toward the stalled reader: the kernel holds at most a few MB of
            // it (the relay's send buffer grows to tcp_wmem's 4 MB; the reader's receive buffer
            // stays small while nothing is read), so the relay's memory would grow by 35 MB or more.
            let payload = String(repeating: "QUJD", count: 15_000)  // ~60 KB
            let frame = BlockingSender.frame(signalFrame(kind: "MSG", payload: payload))
            let total = 670
            let growthMaxMiB = 16
            let sent = Mutex(0)
            let finished = Mutex(false)
            Thread.detachNewThread {
                for _ in 0..<total {
                    guard (try? sender.write(frame)) != nil else { break }
                    sent.withLock { $0 += 1 }
                }
                finished.withLock { $0 = true }
            }
            let (stoodStill, received) = try await Self.waitUntilReadingStops(relay)
            #expect(stoodStill, "the relay never stopped reading the sender while idle")
            // Two JOINs plus the SIGNALs it took: short of what the sender wrote, which waits in
            // the kernel's buffers between the sender and the relay (the sender's cost).
            let sentSoFar = sent.withLock { $0 }
            #expect(received - 2 < Double(total), "the relay read all \(total) frames while the reader was stalled")
            #expect(received - 2 <= Double(sentSoFar))
            #expect(sentSoFar < total, "the sender was never held back")
            let growthMiB = try Self.residentMiB(pid: pid) - baselineMiB
            #expect(growthMiB < growthMaxMiB, "relay RSS grew \(growthMiB) MiB while a reader was stalled")

            // The reader resumes: every frame arrives, and the sender finishes.
            try await reader.setOption(.autoRead, value: true).get()
            reader.read()
            for _ in 0..<1200 where counter.texts.withLock({ $0 }) < total + 2 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(finished.withLock { $0 } && sent.withLock { $0 } == total)
            // JOINED + PEER_FOUND + every SIGNAL.
            #expect(counter.texts.withLock { $0 } == total + 2)
        }
    }

    @Test("The idle probe tells a sleeping process from a busy one (a starved relay would be runnable)")
    func idleProbeSelfCheck() async throws {
        let sleeper = try TestProcess("sleep", arguments: ["600"], executableURL: URL(fileURLWithPath: "/bin/sleep"))
        let spinner = try TestProcess(
            "sh", arguments: ["-c", "while :; do :; done"], executableURL: URL(fileURLWithPath: "/bin/sh"))
        defer {
            sleeper.send(signal: SIGKILL)
            spinner.send(signal: SIGKILL)
        }
        // Once it has started (a loaded machine may take a while), `sleep` sleeps.
        var asleep = false
        for _ in 0..<100 where !asleep {
            try await Task.sleep(for: .milliseconds(50))
            asleep = Self.allThreadsSleeping(pid: sleeper.processIdentifier)
        }
        #expect(asleep, "sleep \(sleeper.isRunning ? "never slept" : "ended")")
        // A busy loop is running or runnable at every sample.
        var everSleeping = false
        for _ in 0..<5 {
            if Self.allThreadsSleeping(pid: spinner.processIdentifier) { everSleeping = true }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(!everSleeping)
        // A stopped process (SIGSTOP, as a relay given no CPU at all) is not sleeping either.
        sleeper.send(signal: SIGSTOP)
        try await Task.sleep(for: .milliseconds(100))
        #expect(!Self.allThreadsSleeping(pid: sleeper.processIdentifier))
    }
}
