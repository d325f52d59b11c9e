import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on loopback between real clients and a real relay that records every byte each
/// client sends, so a test can read the client's WebSocket frames exactly as the relay received
/// them (`WebSocketStream` decodes them). Plain blocking sockets and one thread per direction:
/// it has to be obviously correct, not fast.
final class RecordingProxy: Sendable {
    /// The port clients connect to (`ws://127.0.0.1:PORT`).
    let port: Int
    private let listener: Int32
    /// Per accepted connection, in order: the bytes the client sent. Bounded by `bytesMax`.
    private let recorded = Mutex<[[UInt8]]>([])
    /// The descriptors still open (the listener's first). A closed descriptor leaves this list
    /// under the lock before `close`, so `stop` never touches a number the process reused.
    private let open = Mutex<Set<Int32>>([])
    /// New connections wait until then before the proxy connects them to the relay.
    private let holdUntil = Mutex<ContinuousClock.Instant?>(nil)
    /// Where new connections go (`retarget`: a load balancer moving clients to another relay).
    private let target: Mutex<Int>
    static let bytesMax = 64 << 20

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Listen on 127.0.0.1 (a kernel-chosen port) and forward each connection to `relayPort`.
    init(relayPort: Int) throws {
        target = Mutex(relayPort)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw Failure(description: "bind/listen: errno \(errno)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: actual.sin_port))
        open.withLock { _ = $0.insert(fd) }
        Thread.detachNewThread { [self] in self.acceptLoop(listener: fd) }
    }

    /// Send connections accepted from now on to `relayPort` (open ones stay where they are).
    func retarget(relayPort: Int) {
        target.withLock { $0 = relayPort }
    }


    /// The URL clients use instead of the relay's.
    var url: String { "ws://127.0.0.1:\(port)" }

    /// What each client connection sent so far, in the order the connections were accepted.
    var connections: [[UInt8]] { recorded.withLock { $0 } }

    /// Stop accepting and cut every connection.
    func stop() {
        open.withLock { descriptors in
            for fd in descriptors { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Cut every proxied connection at both ends, as a network failure would (each side sees the
    /// end of its stream, without a close frame), and keep accepting new ones; a connection
    /// accepted within `holdSeconds` reaches the relay only then (the outage lasts that long).
    func cutConnections(holdSeconds: Double = 0) {
        holdUntil.withLock { $0 = ContinuousClock.now + .milliseconds(Int(holdSeconds * 1000)) }
        open.withLock { descriptors in
            for fd in descriptors where fd != listener { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Close `fds` once, removing them from the open set first.
    private func closeOnce(_ fds: [Int32]) {
        open.withLock { descriptors in
            for fd in fds where descriptors.remove(fd) != nil { close(fd) }
        }
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop(listener: Int32) {
        // Bounded by the listener: `stop` shuts it down and accept fails.
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if errno == EINTR { continue }
                closeOnce([listener])
                return
            }
            if let until = holdUntil.withLock({ $0 }), until > ContinuousClock.now {
                let wait = until - ContinuousClock.now
                let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
                Thread.sleep(forTimeInterval: seconds)
            }
            let relay = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: UInt16(target.withLock { $0 }))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(relay, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard relay >= 0, connected == 0 else {
                close(client)
                if relay >= 0 { close(relay) }
                continue
            }
            open.withLock { $0.formUnion([client, relay]) }
            let index = recorded.withLock { recorded in
                recorded.append([])
                return recorded.count - 1
            }
            let finished = Mutex(0)
            let closeBoth: @Sendable () -> Void = { [self] in
                let done = finished.withLock { count in
                    count += 1
                    return count == 2
                }
                if done { self.closeOnce([client, relay]) }
            }
            Thread.detachNewThread { [self] in
                self.pump(from: client, to: relay) { bytes in
                    self.recorded.withLock { recorded in
                        if recorded[index].count + bytes.count <= Self.bytesMax { recorded[index] += bytes }
                    }
                }
                closeBoth()
            }
            Thread.detachNewThread { [self] in
                self.pump(from: relay, to: client) { _ in }
                closeBoth()
            }
        }
    }

    /// Copy bytes until end of file or an error, then pass the end on (shutdown for writing).
    private func pump(from source: Int32, to destination: Int32, record: ([UInt8]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        // Bounded by the connection: it ends with end of file or an error.
        while true {
            let count = read(source, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            let chunk = Array(buffer[0..<count])
            record(chunk)
            var offset = 0
            while offset < count {
                let written = chunk[offset...].withUnsafeBytes { write(destination, $0.baseAddress, $0.count) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                offset += written
            }
        }
        shutdown(destination, Int32(SHUT_WR))
    }
}

/// A client-to-server WebSocket byte stream decoded by RFC 6455 alone (not by NIO, whose decoder
/// the client also uses): the HTTP upgrade request, then frames, each unmasked.
struct WebSocketStream {
    struct Frame {
        var fin: Bool
        var opcode: UInt8
        var masked: Bool
        var payload: [UInt8]
    }

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    /// The upgrade request (through its blank line).
    var request: [UInt8]
    var frames: [Frame]
    /// Text and binary messages, continuation frames joined.
    var messages: [[UInt8]]

    init(_ bytes: [UInt8]) throws {
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        guard let headerEnd = (0...(max(0, bytes.count - 4))).first(where: {
            Array(bytes[$0..<min($0 + 4, bytes.count)]) == end
        }) else { throw Malformed(description: "no complete HTTP request in \(bytes.count) bytes") }
        request = Array(bytes[0..<(headerEnd + 4)])
        frames = []
        messages = []
        var offset = headerEnd + 4
        var message: [UInt8]?
        // Bounded: every pass consumes at least the 2-byte header.
        while offset < bytes.count {
            let frame = try Self.frame(bytes, at: &offset)
            frames.append(frame)
            switch frame.opcode {
            case 0x1, 0x2: message = frame.payload
            case 0x0: message = (message ?? []) + frame.payload
            default: continue
            }
            if frame.fin, let complete = message {
                messages.append(complete)
                message = nil
            }
        }
    }

    private static func frame(_ bytes: [UInt8], at offset: inout Int) throws -> Frame {
        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, offset + count <= bytes.count else {
                throw Malformed(description: "frame cut short at byte \(offset) of \(bytes.count)")
            }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }
        let head = Array(try take(2))
        let masked = head[1] & 0x80 != 0
        var length = Int(head[1] & 0x7F)
        if length == 126 {
            length = try take(2).reduce(0) { $0 << 8 | Int($1) }
        } else if length == 127 {
            let value = try take(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard value < UInt64(RecordingProxy.bytesMax) else { throw Malformed(description: "length \(value)") }
            length = Int(value)
        }
        let key = masked ? Array(try take(4)) : [0, 0, 0, 0]
        let payload = try take(length).enumerated().map { index, byte in byte ^ key[index % 4] }
        return Frame(fin: head[0] & 0x80 != 0, opcode: head[0] & 0x0F, masked: masked, payload: payload)
    }
}

/// Looks for secrets in bytes as a relay could: raw, and inside every run of base64 (standard or
/// URL alphabet) decoded from each of its four character offsets, so a secret is found whichever of
/// the three byte alignments it had when it was encoded and wherever the run began.
enum SecretScanner {
    static let base64Values: [UInt8: UInt8] = {
        var table: [UInt8: UInt8] = [:]
        for (index, character) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8.enumerated() {
            table[character] = UInt8(index)
        }
        for (plus, slash) in [("+", "/"), ("-", "_")] {
            table[UInt8(ascii: Unicode.Scalar(plus)!)] = 62
            table[UInt8(ascii: Unicode.Scalar(slash)!)] = 63
        }
        return table
    }()

    /// Decode `characters` (base64 digits only, no padding) leniently: 6 bits each, whole bytes.
    static func decode(_ characters: ArraySlice<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        var accumulator: UInt32 = 0
        var bits = 0
        for character in characters {
            guard let value = base64Values[character] else { continue }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return output
    }

    /// Every maximal run of base64 digits in `bytes` (padding and everything else end a run).
    static func base64Runs(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var runs: [ArraySlice<UInt8>] = []
        var start: Int?
        for index in 0...bytes.count {
            let isDigit = index < bytes.count && base64Values[bytes[index]] != nil
            if isDigit, start == nil { start = index }
            if !isDigit, let first = start {
                if index - first >= 2 { runs.append(bytes[first..<index]) }
                start = nil
            }
        }
        return runs
    }

    /// The views of `bytes` to search: the bytes themselves and every base64 run decoded from
    /// character offsets 0, 1, 2 and 3.
    static func views(_ bytes: [UInt8]) -> [[UInt8]] {
        var views = [bytes]
        for run in base64Runs(bytes) {
            for skip in 0..<4 where run.count - skip >= 2 {
                views.append(decode(run.dropFirst(skip)))
            }
        }
        return views
    }

    /// The names of the `secrets` found in `bytes`.
    static func leaks(in bytes: [UInt8], secrets: [(name: String, bytes: [UInt8])]) -> [String] {
        let views = views(bytes)
        return secrets.filter { secret in views.contains { $0.contains(subsequence: secret.bytes) } }.map(\.name)
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if self[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
