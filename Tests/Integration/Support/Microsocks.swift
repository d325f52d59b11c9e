import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real SOCKS5 proxy, Debian's `microsocks`, on 127.0.0.1 and a port the test picked free. It
/// resolves host names itself (with the machine's resolver), as Tor does for the client.
final class Microsocks: Sendable {
    let port: Int
    let process: TestProcess

    /// Where microsocks is (install-deps.sh installs it).
    static let path = "/usr/bin/microsocks"

    /// Start microsocks on `port` (a free one when nil); `username`/`password`: require RFC 1929
    /// credentials (`-u`/`-P`; the test's own, not secrets). Returns once it accepts connections.
    static func start(port: Int? = nil, username: String? = nil, password: String? = nil) async throws -> Microsocks {
        // Missing, it is a failure, not a skip: CI installs it (scripts/install-deps.sh).
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ClientTestFailure("no \(path): run scripts/install-deps.sh (Debian's microsocks)")
        }
        let port = try port ?? freeLoopbackPort()
        var arguments = ["-i", "127.0.0.1", "-p", String(port)]
        if let username, let password { arguments += ["-u", username, "-P", password] }
        let process = try TestProcess(
            "microsocks", arguments: arguments, executableURL: URL(fileURLWithPath: path))
        let proxy = Microsocks(port: port, process: process)
        // Tests stop their proxy in a `defer { Task { ... } }`, which may not run before the test
        // process exits (a lone test, a failure): no microsocks may outlive the tests.
        Self.running.withLock { running in
            if !running.exitHandlerRegistered {
                running.exitHandlerRegistered = true
                atexit { Microsocks.running.withLock { $0.processes.forEach { $0.send(signal: SIGKILL) } } }
            }
            running.processes.append(process)
        }
        try await proxy.waitUntilListening()
        return proxy
    }

    private init(port: Int, process: TestProcess) {
        self.port = port
        self.process = process
    }

    /// `socks5://127.0.0.1:PORT`, for --proxy.
    var url: String { "socks5://127.0.0.1:\(port)" }

    /// Poll with TCP connections (closed at once) until one is accepted; bounded to 10 s.
    private func waitUntilListening() async throws {
        for _ in 0..<200 {
            if !process.isRunning { throw ClientTestFailure("microsocks exited: \(process.stderr.all)") }
            if loopbackAccepts(port: port) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ClientTestFailure("microsocks did not listen on \(port) within 10 s")
    }

    /// The microsocks processes started and not yet killed, and whether the exit handler that
    /// kills them is registered. `send(signal:)` signals only a process still running (not reaped,
    /// so its id is not someone else's).
    private static let running = Mutex<(processes: [TestProcess], exitHandlerRegistered: Bool)>(([], false))

    /// SIGKILL and wait.
    func kill() async {
        await process.kill()
        Self.running.withLock { $0.processes.removeAll { $0 === process } }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ClientTestFailure("socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            bind(fd, address, length) == 0 && getsockname(fd, address, &length) == 0
        }
    }
    guard bound else { throw ClientTestFailure("bind: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` (a blocking connect on loopback
/// is answered at once: accepted or refused).
func loopbackAccepts(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}
