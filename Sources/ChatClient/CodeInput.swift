import CClientSupport
import ChatCore

#if canImport(Glibc)
import Glibc
#endif

/// Where the code comes from with `--join` (never the command line, where every user of the
/// machine can read it in /proc/PID/cmdline and `ps`, and the shell writes it to its history):
///
/// - the environment variable `SECURECHAT_CODE`, when set (scripts, and `run.sh CODE`, which moves
///   a code given to it there); its value is overwritten in place once read;
/// - interactive (stdin and stdout are terminals): a prompt whose Tab completes the code's words
///   from the BIP-39 list (magic-wormhole's `receive` is the model: Tab completes the word being
///   typed, a second Tab lists the candidates);
/// - otherwise (pipe mode): the first line of stdin; the lines after it are the messages.
public enum CodeInput {
    /// The variable `--join` reads the code from (scripts, `run.sh CODE`).
    public static let environmentVariable = "SECURECHAT_CODE"
    static let prompt = "Code (Tab completes the words): "
    /// The longest line read, in bytes (a code is at most `ChatCode.textLengthMax`).
    static let lineMaxBytes = ChatCode.textLengthMax * 2

    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        /// End of input before a code (Ctrl-D at the prompt, an empty stdin).
        case endOfInput
        /// A terminating signal arrived at the prompt (Ctrl-C: SIGINT).
        case interrupted(signal: Int32)
        /// The line was too long or not UTF-8.
        case unreadable

        public var description: String {
            switch self {
            case .endOfInput: "--join: no code was given (end of input before it)"
            case let .interrupted(signal): "interrupted by signal \(signal)"
            case .unreadable: "--join: the code could not be read (too long, or not UTF-8)"
            }
        }
    }

    /// Read the code. `interactive`: prompt on the terminal with completion; `signalFD`: where
    /// Ctrl-C arrives (signals are blocked and routed there), so the wait can be abandoned.
    public static func read(interactive: Bool, signalFD: Int32) -> Result<String, Failure> {
        if let value = getenv(environmentVariable), value.pointee != 0 {
            let code = String(cString: value)
            // Gone from /proc/PID/environ (readable by this user) once read.
            memset(value, 0, strlen(value))
            return .success(code)
        }
        if interactive { return promptWithCompletion(signalFD: signalFD) }
        // Pipe mode typed at a terminal (--json, or stdout redirected): a plain prompt on stderr,
        // so the person knows what the first line is for.
        if isatty(0) == 1 { Array(prompt.utf8).withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) } }
        return firstLine(fd: 0, signalFD: signalFD)
    }

    /// Wait until `fd` or the signalfd is readable; a terminating signal ends the wait.
    private static func waitReadable(_ fd: Int32, signalFD: Int32) -> Result<Void, Failure> {
        // Bounded: each round either returns or consumes a signal (resizes are not fatal).
        while true {
            var descriptors = [
                pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0),
            ]
            if poll(&descriptors, nfds_t(descriptors.count), -1) < 0 {
                if errno == EINTR { continue }
                return .failure(.unreadable)
            }
            if descriptors[1].revents != 0 {
                let number = scl_signalfd_read(signalFD)
                if number > 0 && number != SIGWINCH { return .failure(.interrupted(signal: number)) }
                continue
            }
            return .success(())
        }
    }

    /// One line of `fd`, read a byte at a time so that the lines after it stay for the reader of
    /// messages.
    static func firstLine(fd: Int32, signalFD: Int32) -> Result<String, Failure> {
        var line: [UInt8] = []
        defer { Sodium.memzero(&line) }
        var byte: UInt8 = 0
        // Bounded: at most `lineMaxBytes` bytes are taken.
        while line.count <= lineMaxBytes {
            if case let .failure(failure) = waitReadable(fd, signalFD: signalFD) { return .failure(failure) }
            let count = Glibc.read(fd, &byte, 1)
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard count >= 0 else { return .failure(.unreadable) }
            if count == 0 {
                if line.isEmpty { return .failure(.endOfInput) }
                break
            }
            if byte == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        guard line.count <= lineMaxBytes else { return .failure(.unreadable) }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        guard let text = String(validating: line, as: UTF8.self) else { return .failure(.unreadable) }
        return .success(text)
    }

    /// The prompt, through libedit's callback interface (as the chat's input line): the shell
    /// polls stdin and the signalfd, so Ctrl-C (a blocked signal) still ends it.
    static func promptWithCompletion(signalFD: Int32) -> Result<String, Failure> {
        ClientApp.prepareLocale()
        var saved = termios()
        let haveTerminal = tcgetattr(0, &saved) == 0
        scl_editline_configure()
        // Words break at '-' and blanks; a unique completion is followed by '-', which the code's
        // parser accepts at the end too, so the next word can be typed straight away.
        scl_editline_complete_with({ word, start, _ in
            // The first part is the room: its letters are not words to complete.
            guard let word, start > 0 else { return nil }
            return CodeInput.readlineMatches(ChatCode.wordsCompleting(String(cString: word)))
        }, " -\t", Int32(UInt8(ascii: "-")))
        scl_editline_install(prompt)
        defer {
            scl_editline_remove()
            scl_editline_complete_with(nil, "", 0)
            if haveTerminal { _ = tcsetattr(0, TCSADRAIN, &saved) }
        }
        // Bounded: each keystroke is one round, and a line is at most a few hundred of them.
        for _ in 0..<(lineMaxBytes * 64) {
            if case let .failure(failure) = waitReadable(0, signalFD: signalFD) { return .failure(failure) }
            switch scl_editline_read_char() {
            case 1:
                guard let raw = scl_editline_take_line() else { return .failure(.unreadable) }
                let length = strlen(raw)
                defer {
                    memset(raw, 0, length)
                    free(raw)
                }
                let bytes = UnsafeBufferPointer(
                    start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: length)
                guard length <= lineMaxBytes, let text = String(validating: bytes, as: UTF8.self) else {
                    return .failure(.unreadable)
                }
                return .success(text)
            case 2:
                return .failure(.endOfInput)
            default:
                continue
            }
        }
        return .failure(.unreadable)
    }

    /// `words` in readline's match format, as libedit frees it: a malloc'd array of malloc'd
    /// strings holding the text to substitute (the longest common prefix), then the candidates,
    /// then NULL. A single match is given twice, which libedit reads as "complete, then append".
    static func readlineMatches(_ words: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        guard let first = words.first else { return nil }
        let candidates = words.count == 1 ? [first] : words
        var common = Substring(first)
        for word in words.dropFirst() {
            common = common.prefix(zip(common.utf8, word.utf8).prefix { $0 == $1 }.count)
        }
        let entries = [String(common)] + candidates
        let size = (entries.count + 1) * MemoryLayout<UnsafeMutablePointer<CChar>?>.stride
        guard let raw = malloc(size) else { return nil }
        let array = raw.bindMemory(to: UnsafeMutablePointer<CChar>?.self, capacity: entries.count + 1)
        for (index, entry) in entries.enumerated() { array[index] = strdup(entry) }
        array[entries.count] = nil
        return array
    }
}
