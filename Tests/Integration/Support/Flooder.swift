import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A WebSocket client that never reads: a small receive buffer, the upgrade request, the 101
/// answer read, and from then on only writes, as fast as the kernel takes them. What the relay
/// sends it piles up in the relay (or would, without the relay's defences).
final class Flooder: Sendable {
    let fd: Int32

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// How a flood ended.
    struct Outcome {
        /// Whole frames the kernel took.
        var framesSent: Int
        /// The relay closed the connection (a write failed).
        var ended: Bool
    }

    init(port: Int, prefix: [UInt8] = []) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        // Set before connecting, so the window it advertises stays small: the relay's writes to it
        // stall at once and stay in the relay.
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw Failure(description: "connect: errno \(errno)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = prefix + Array(("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\n"
            + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + "Sec-WebSocket-Version: 13\r\n\r\n").utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
        else {
            close(fd)
            throw Failure(description: "the upgrade request was not sent")
        }
        // Read the 101 answer byte by byte, so that nothing after it is read.
        var answer: [UInt8] = []
        var byte: UInt8 = 0
        // Bounded by the read timeout and 4 KiB.
        while answer.count < 4096, !answer.ends(with: Array("\r\n\r\n".utf8)) {
            guard read(fd, &byte, 1) == 1 else { break }
            answer.append(byte)
        }
        guard String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 101") else {
            close(fd)
            throw Failure(description: "no 101 answer: \(String(decoding: answer, as: UTF8.self))")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(fd) }

    /// `payload` as one masked frame with `opcode` (RFC 6455 §5.2; payloads under 64 KiB).
    static func frame(_ opcode: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        let key: [UInt8] = [0x1F, 0x2E, 0x3D, 0x4C]
        var bytes: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            bytes.append(0x80 | UInt8(payload.count))
        } else {
            bytes += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        return bytes + key + payload.enumerated().map { $1 ^ key[$0 % 4] }
    }

    static func text(_ text: String) -> [UInt8] { frame(0x1, Array(text.utf8)) }

    /// Write `frames` over and over, `count` frames in all, as fast as the kernel takes them;
    /// stop early when nothing was taken for `stallSeconds` (the relay stopped reading), at
    /// `deadline`, or when the relay closed the connection.
    func flood(_ frames: [UInt8], frameCount: Int, count: Int, stallSeconds: Double, deadline: ContinuousClock.Instant)
        -> Outcome
    {
        // Many frames per write: the kernel, not the loop, is the limit.
        let repeats = max(1, 65536 / frames.count)
        let batch = [UInt8]((0..<repeats).flatMap { _ in frames })
        let total = count / frameCount * frames.count
        var written = 0
        var offset = 0
        var lastProgress = ContinuousClock.now
        // Bounded by `count`, the stall and the deadline.
        while written < total, ContinuousClock.now < deadline {
            let length = min(batch.count - offset, total - written)
            let result = batch[offset..<(offset + length)].withUnsafeBytes {
                send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if result > 0 {
                written += result
                offset = (offset + result) % batch.count
                lastProgress = ContinuousClock.now
            } else if result < 0 && (errno == EAGAIN || errno == EINTR) {
                if ContinuousClock.now - lastProgress > .milliseconds(Int(stallSeconds * 1000)) { break }
                usleep(1000)
            } else {
                return Outcome(framesSent: written / frames.count * frameCount, ended: true)
            }
        }
        return Outcome(framesSent: written / frames.count * frameCount, ended: false)
    }
}

extension Array where Element: Equatable {
    func ends(with suffix: [Element]) -> Bool {
        count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix
    }
}
