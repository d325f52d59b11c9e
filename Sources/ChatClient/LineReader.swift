import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// Pipe mode's input: splits stdin into lines (LF, with an optional CR before it), each one a
/// message. Lines longer than `lineMaxBytes` or not UTF-8 are reported, not sent. A last line
/// without a newline still counts.
final class LineReader {
    let fd: Int32
    let lineMaxBytes: Int
    private var buffer: [UInt8] = []
    private var discarding = false
    private(set) var atEnd = false

    init(fd: Int32, lineMaxBytes: Int) {
        precondition(lineMaxBytes > 0)
        self.fd = fd
        self.lineMaxBytes = lineMaxBytes
    }

    /// Read once (the descriptor is readable) and return the complete lines and end of input.
    func readAvailable() -> [ClientEvent] {
        guard !atEnd else { return [] }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        let count = read(fd, &chunk, chunk.count)
        var events: [ClientEvent] = []
        if count < 0 {
            if errno == EINTR || errno == EAGAIN { return [] }
            atEnd = true
        } else if count == 0 {
            atEnd = true
        } else {
            for byte in chunk[0..<count] {
                if byte == UInt8(ascii: "\n") {
                    if let event = finishLine() { events.append(event) }
                } else if !discarding {
                    if buffer.count < lineMaxBytes {
                        buffer.append(byte)
                    } else {
                        discarding = true
                        events.append(.unreadableLine(reason: "line longer than \(lineMaxBytes) bytes"))
                        wipe(&buffer)
                    }
                }
            }
        }
        wipe(&chunk)
        if atEnd {
            if !buffer.isEmpty, let event = finishLine() { events.append(event) }
            events.append(.endOfInput)
        }
        return events
    }

    private func finishLine() -> ClientEvent? {
        defer {
            wipe(&buffer)
            discarding = false
        }
        guard !discarding else { return nil }
        if buffer.last == UInt8(ascii: "\r") { buffer.removeLast() }
        guard let text = String(validating: buffer, as: UTF8.self) else {
            return .unreadableLine(reason: "not valid UTF-8")
        }
        return .line(text)
    }

    /// Overwrite plaintext before the memory is reused (best effort: Swift may have copied it).
    private func wipe(_ bytes: inout [UInt8]) {
        for index in bytes.indices { bytes[index] = 0 }
        bytes.removeAll(keepingCapacity: true)
    }
}
