import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener on 127.0.0.1 (a kernel-chosen port) that is not a relay: it answers every
/// connection with `reply` once the request's header has arrived (a plain HTTP server), or, with
/// `reply` nil, accepts and says nothing (a relay that hangs). Runs on its own thread until `stop`.
final class TinyServer: Sendable {
    let port: Int
    private let listener: Int32
    private let accepted = Mutex<[Int32]>([])

    init(reply: String?) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientTestFailure("socket failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound == 0, named == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw ClientTestFailure("cannot listen on 127.0.0.1")
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in
            // Bounded by `stop`, which shuts the listener down and ends accept.
            while true {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { return }
                self.accepted.withLock { $0.append(connection) }
                guard let reply else { continue }
                Self.answer(connection, reply)
            }
        }
    }

    /// Read until the end of an HTTP header (or 64 KiB), write `reply`, close.
    private static func answer(_ connection: Int32, _ reply: String) {
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while request.count < 65_536 {
            let count = read(connection, &chunk, chunk.count)
            guard count > 0 else { break }
            request += chunk[0..<count]
            if request.count >= 4, Array(request.suffix(4)) == Array("\r\n\r\n".utf8) { break }
        }
        let bytes = Array(reply.utf8)
        _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
        shutdown(connection, Int32(SHUT_WR))
    }

    /// Stop listening and close every accepted connection.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for connection in accepted.withLock({ $0 }) { close(connection) }
    }

    /// A port on 127.0.0.1 where nothing listens: bound by the kernel, then closed again.
    static func closedPort() throws -> Int {
        let server = try TinyServer(reply: "")
        server.stop()
        return server.port
    }
}
