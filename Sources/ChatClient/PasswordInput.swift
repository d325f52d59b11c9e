import CClientSupport
import ChatCore

#if canImport(Glibc)
import Glibc
#endif

/// Where a password of the user's own (`--password`) comes from. Never the command line: every
/// user of the machine can read a process's arguments in /proc/PID/cmdline, while the terminal
/// and the environment (/proc/PID/environ is readable only by the same user and root) are private.
///
/// - stdin is a terminal: a prompt on /dev/tty with echo off (typed twice when creating a room,
///   so that a typo does not spend the code).
/// - otherwise (pipe mode, scripts): the environment variable `SECURECHAT_PASSWORD`.
public enum PasswordInput {
    public static let environmentVariable = "SECURECHAT_PASSWORD"
    /// The longest line read from the terminal, in bytes.
    static let lineMaxBytes = Password.byteCountMax * 4

    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        case noTerminal
        case missingEnvironment
        case mismatch
        /// A terminating signal arrived at the prompt (Ctrl-C: SIGINT).
        case interrupted(signal: Int32)
        case unreadable
        case invalid(Password.Invalid)

        public var description: String {
            switch self {
            case .noTerminal: "--password: cannot open the terminal (/dev/tty) to ask for the password"
            case .missingEnvironment:
                "--password without a terminal reads the password from the environment variable "
                    + "\(PasswordInput.environmentVariable) (never from the command line, which other users can "
                    + "read in /proc); it is not set"
            case .mismatch: "the two passwords differ; nothing was started"
            case let .interrupted(signal): "interrupted by signal \(signal)"
            case .unreadable: "the password could not be read (end of input, or not UTF-8)"
            case let .invalid(reason): "--password: \(reason)"
            }
        }
    }

    /// Read the password. `confirm`: ask twice (creating a room). `signalFD`: where Ctrl-C
    /// arrives (signals are blocked and routed there), so the prompt can be abandoned.
    public static func read(confirm: Bool, signalFD: Int32) -> Result<Password, Failure> {
        guard isatty(0) == 1 else {
            guard let value = getenv(environmentVariable) else { return .failure(.missingEnvironment) }
            return make(String(cString: value))
        }
        let tty = open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard tty >= 0 else { return .failure(.noTerminal) }
        defer { close(tty) }
        switch prompt("Password: ", tty: tty, signalFD: signalFD) {
        case let .failure(failure): return .failure(failure)
        case let .success(first):
            guard confirm else { return make(first) }
            switch prompt("Password again: ", tty: tty, signalFD: signalFD) {
            case let .failure(failure): return .failure(failure)
            case let .success(second): return first == second ? make(first) : .failure(.mismatch)
            }
        }
    }

    private static func make(_ text: String) -> Result<Password, Failure> {
        do {
            return .success(try Password(text))
        } catch {
            return .failure(.invalid(error))
        }
    }

    /// One line from the terminal with echo off; the terminal's settings are restored after.
    private static func prompt(_ text: String, tty: Int32, signalFD: Int32) -> Result<String, Failure> {
        var saved = termios()
        guard tcgetattr(tty, &saved) == 0 else { return .failure(.noTerminal) }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        quiet.c_lflag |= tcflag_t(ECHONL)  // The Enter key still moves to the next line.
        _ = tcsetattr(tty, TCSAFLUSH, &quiet)
        defer { _ = tcsetattr(tty, TCSAFLUSH, &saved) }
        Array(text.utf8).withUnsafeBytes { _ = write(tty, $0.baseAddress, $0.count) }
        var line: [UInt8] = []
        defer { Sodium.memzero(&line) }
        var byte: UInt8 = 0
        // Bounded: at most `lineMaxBytes` bytes are taken.
        while line.count <= lineMaxBytes {
            var descriptors = [
                pollfd(fd: tty, events: Int16(POLLIN), revents: 0),
                pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&descriptors, nfds_t(descriptors.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return .failure(.unreadable)
            }
            if descriptors[1].revents != 0 {
                // A window resize comes the same way; only a terminating signal ends the prompt.
                let number = scl_signalfd_read(signalFD)
                if number > 0 && number != SIGWINCH { return .failure(.interrupted(signal: number)) }
                continue
            }
            let count = Glibc.read(tty, &byte, 1)
            if count < 0 && errno == EINTR { continue }
            guard count == 1 else { return .failure(.unreadable) }
            if byte == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        guard let text = String(validating: line, as: UTF8.self) else { return .failure(.unreadable) }
        return .success(text)
    }
}
