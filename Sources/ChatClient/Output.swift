#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to a file descriptor (stdout, stderr): each call is written whole before
/// it returns, so a line reaches a reading script at once and nothing waits in a buffer at exit.
/// Nothing here ever opens a file.
final class FileOutput {
    let fd: Int32
    /// Set when the reader went away (EPIPE): later writes are dropped, the session goes on.
    private(set) var broken = false

    init(fd: Int32) {
        self.fd = fd
    }

    func write(_ bytes: [UInt8]) {
        guard !broken, !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            // Bounded: each round writes at least one byte or stops.
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && (errno == EINTR || errno == EAGAIN) {
                    continue
                } else {
                    broken = true
                    return
                }
            }
        }
    }

    func write(_ text: String) {
        write(Array(text.utf8))
    }
}
