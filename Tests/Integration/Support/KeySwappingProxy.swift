import ChatCore
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A man in the middle that runs no protocol of its own: a TCP proxy in front of a real relay that
/// swaps the `key` of every PAKE and KEY_EXCHANGE the relay sends to a client for a valid key of
/// its own (issue 12, finding 1). The base64 of a 32-byte key keeps its length, so the WebSocket
/// framing is unchanged. Blocking sockets on threads: a test fixture, not a relay.
final class KeySwappingProxy: Sendable {
    /// The port clients connect to (`ws://127.0.0.1:PORT`).
    let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    private let impostor: [UInt8]
    private let swapCount = Mutex(0)

    /// Keys swapped so far.
    var swaps: Int { swapCount.withLock { $0 } }

    init(upstreamPort: Int, impostorKey: [UInt8]) throws {
        self.upstreamPort = upstreamPort
        impostor = Base64.encode(impostorKey)
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard socketFD >= 0, bound == 0, listen(socketFD, 16) == 0 else {
            throw ClientTestFailure("proxy: cannot listen")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) }
        }
        listener = socketFD
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in
            while true {
                let client = accept(socketFD, nil, nil)
                guard client >= 0 else { return }  // Closed by `stop`.
                serve(client)
            }
        }.start()
    }

    /// Stop accepting (connections already open end when their processes do).
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    private func serve(_ client: Int32) {
        let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: upstreamPort)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(client)
            close(upstream)
            return
        }
        Thread {  // Client to relay: unchanged.
            var buffer = [UInt8](repeating: 0, count: 16_384)
            while case let count = read(client, &buffer, buffer.count), count > 0 {
                guard Self.writeAll(upstream, Array(buffer[0..<count])) else { break }
            }
            shutdown(upstream, Int32(SHUT_WR))
        }.start()
        Thread { [self] in  // Relay to client: the upgrade response as is, then frame by frame.
            var pending: [UInt8] = []
            var upgraded = false
            var buffer = [UInt8](repeating: 0, count: 16_384)
            while case let count = read(upstream, &buffer, buffer.count), count > 0 {
                pending += buffer[0..<count]
                if !upgraded, let end = Self.headerEnd(pending) {
                    guard Self.writeAll(client, Array(pending[..<end])) else { break }
                    pending.removeFirst(end)
                    upgraded = true
                }
                while upgraded, let frame = Self.nextFrame(&pending) {
                    guard Self.writeAll(client, swapKey(frame)) else { break }
                }
            }
            close(client)
            close(upstream)
        }.start()
    }

    /// The offset just past the HTTP header's blank line.
    private static func headerEnd(_ bytes: [UInt8]) -> Int? {
        let blank: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4 else { return nil }
        return (0...(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == blank }.map { $0 + 4 }
    }

    /// Take one whole (unmasked, server-to-client) WebSocket frame off `bytes`, if there is one.
    private static func nextFrame(_ bytes: inout [UInt8]) -> [UInt8]? {
        guard bytes.count >= 2 else { return nil }
        var header = 2
        var length = Int(bytes[1] & 0x7F)
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            header = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            length = bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }
            header = 10
        }
        guard bytes.count >= header + length else { return nil }
        let frame = Array(bytes[0..<(header + length)])
        bytes.removeFirst(header + length)
        return frame
    }

    /// The frame with the key of a PAKE or KEY_EXCHANGE replaced (in place: same length).
    private func swapKey(_ frame: [UInt8]) -> [UInt8] {
        guard Self.find(Array(#""kind":"PAKE""#.utf8), in: frame) != nil
                || Self.find(Array(#""kind":"KEY_EXCHANGE""#.utf8), in: frame) != nil,
              let keyField = Self.find(Array(#""key":""#.utf8), in: frame)
        else { return frame }
        let start = keyField + #""key":""#.utf8.count
        guard start + impostor.count <= frame.count else { return frame }
        var swapped = frame
        swapped.replaceSubrange(start..<(start + impostor.count), with: impostor)
        swapCount.withLock { $0 += 1 }
        return swapped
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8]) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        return (0...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    private static func writeAll(_ socket: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(socket, $0.baseAddress, $0.count) }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}
