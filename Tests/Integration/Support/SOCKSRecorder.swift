import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A scripted SOCKS5 server on 127.0.0.1 (a kernel-chosen port) that records what each client
/// offers and sends: the methods of its greeting, the RFC 1929 username and password (it always
/// picks username/password when offered), and the CONNECT request's address. It then answers the
/// CONNECT with reply 1 ("general SOCKS server failure") and closes, so a client retries: every
/// attempt of a run is recorded. Blocking sockets, one thread per connection: obviously correct.
final class SOCKSRecorder: Sendable {
    /// One connection, as far as the client got.
    struct Attempt: Sendable, Equatable {
        var methods: [UInt8] = []
        var username: String?
        var password: String?
        /// RFC 1928 address type of the CONNECT (1 IPv4, 3 domain name, 4 IPv6) and its host.
        var addressType: UInt8?
        var host: String?
    }

    let port: Int
    private let listener: Int32
    private let recorded = Mutex<[Attempt]>([])
    /// The connections still open. A connection leaves this set under the lock before it is
    /// closed, so `stop` never shuts down a descriptor number the process has reused since (say,
    /// Foundation's socket for watching a child process: shut down, it makes Foundation wait for
    /// a child that is still running, and every test waiting for a process exit hangs).
    private let accepted = Mutex<Set<Int32>>([])
    /// The listener is open; it is closed (by the accept thread) under this lock, for the same reason.
    private let listening = Mutex(true)

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientTestFailure("socket failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound, listen(fd, 16) == 0 else {
            close(fd)
            throw ClientTestFailure("cannot listen on 127.0.0.1")
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in
            // Bounded by `stop`, which shuts the listener down and ends accept.
            while true {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else {
                    if errno == EINTR { continue }
                    self.listening.withLock { open in
                        open = false
                        close(fd)
                    }
                    return
                }
                self.accepted.withLock { _ = $0.insert(connection) }
                let index = self.recorded.withLock { recorded in
                    recorded.append(Attempt())
                    return recorded.count - 1
                }
                Thread.detachNewThread { self.serve(connection, index: index) }
            }
        }
    }

    /// `socks5://127.0.0.1:PORT`, for --proxy.
    var url: String { "socks5://127.0.0.1:\(port)" }

    /// Every connection so far, in the order accepted.
    var attempts: [Attempt] { recorded.withLock { $0 } }

    /// Stop listening and cut every connection.
    func stop() {
        listening.withLock { open in
            if open { shutdown(listener, Int32(SHUT_RDWR)) }  // The accept thread then closes it.
        }
        accepted.withLock { open in
            for connection in open { shutdown(connection, Int32(SHUT_RDWR)) }
        }
    }

    private func serve(_ fd: Int32, index: Int) {
        defer {
            accepted.withLock { open in
                if open.remove(fd) != nil { close(fd) }
            }
        }
        // A client that stops talking does not hold the thread: reads give up after 5 s.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let greeting = Self.read(fd, 2), greeting[0] == 5, let methods = Self.read(fd, Int(greeting[1])) else {
            return
        }
        update(index) { $0.methods = methods }
        guard methods.contains(2) else {
            Self.write(fd, [5, 0xFF])
            return
        }
        Self.write(fd, [5, 2])
        guard let version = Self.read(fd, 2), version[0] == 1, let username = Self.read(fd, Int(version[1])),
              let passwordLength = Self.read(fd, 1), let password = Self.read(fd, Int(passwordLength[0]))
        else { return }
        update(index) {
            $0.username = String(decoding: username, as: UTF8.self)
            $0.password = String(decoding: password, as: UTF8.self)
        }
        Self.write(fd, [1, 0])
        guard let request = Self.read(fd, 4), request[0] == 5, request[1] == 1 else { return }
        let host: [UInt8]?
        switch request[3] {
        case 1: host = Self.read(fd, 4)
        case 3: host = Self.read(fd, 1).flatMap { Self.read(fd, Int($0[0])) }
        case 4: host = Self.read(fd, 16)
        default: host = nil
        }
        guard let host, Self.read(fd, 2) != nil else { return }
        update(index) {
            $0.addressType = request[3]
            $0.host = request[3] == 3
                ? String(decoding: host, as: UTF8.self) : host.map(String.init).joined(separator: ".")
        }
        Self.write(fd, [5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    }

    private func update(_ index: Int, _ change: (inout Attempt) -> Void) {
        recorded.withLock { change(&$0[index]) }
    }

    /// Exactly `count` bytes, or nil (end, error, timeout).
    private static func read(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        // Bounded: each round reads at least one byte or returns.
        while done < count {
            let got = bytes[done...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard got > 0 else { return nil }
            done += got
        }
        return bytes
    }

    private static func write(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}
