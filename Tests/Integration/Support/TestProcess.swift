import Foundation
#if canImport(Glibc)
    import Glibc
#endif
import Synchronization

/// A test waited longer than it was willing to.
struct TestTimeout: Error, CustomStringConvertible {
    var what: String
    var seconds: Double
    var description: String { "timed out after \(seconds) s waiting for \(what)" }
}

/// Run `body`, failing with `TestTimeout` if it has not finished after `seconds`.
func withTimeout<T: Sendable>(
    _ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            throw TestTimeout(what: what, seconds: seconds)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Where the package's executables are: next to the test binary (`.build/<config>/`), unless
/// `SECURECHAT_BIN_DIR` says otherwise.
func buildProductsDirectory() -> URL {
    if let override = ProcessInfo.processInfo.environment["SECURECHAT_BIN_DIR"] {
        return URL(fileURLWithPath: override, isDirectory: true)
    }
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return executable.deletingLastPathComponent()
}

/// A package executable run as a child process, with its stdout and stderr captured line by line.
///
/// Generic on purpose: the relay's tests and the client's tests both use it. Every wait takes a
/// timeout; `deinit` kills a process the test forgot, so no child outlives its test.
final class TestProcess: Sendable {
    /// Lines from one output stream, with waiters for a line matching a predicate.
    final class Lines: Sendable {
        private struct Waiter {
            var id: Int
            var predicate: @Sendable (String) -> Bool
            var continuation: CheckedContinuation<String?, Never>
        }

        private struct State {
            var lines: [String] = []
            var partial = Data()
            var finished = false
            var waiters: [Waiter] = []
            var nextWaiterID = 0
            /// Waits cancelled before their continuation was registered.
            var cancelledIDs: Set<Int> = []
        }

        /// The most lines kept (a runaway child must not eat the test's memory).
        static let linesMax = 100_000
        private let state = Mutex(State())

        /// Every complete line so far.
        var all: [String] { state.withLock { $0.lines } }

        func append(_ data: Data) {
            let ready: [(CheckedContinuation<String?, Never>, String?)] = state.withLock { state in
                if data.isEmpty {
                    state.finished = true
                    if !state.partial.isEmpty {
                        state.lines.append(String(decoding: state.partial, as: UTF8.self))
                        state.partial = Data()
                    }
                } else {
                    state.partial.append(data)
                    while let newline = state.partial.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = state.partial[state.partial.startIndex..<newline]
                        if state.lines.count < Self.linesMax {
                            state.lines.append(String(decoding: line, as: UTF8.self))
                        }
                        state.partial = Data(state.partial[state.partial.index(after: newline)...])
                    }
                }
                var resumed: [(CheckedContinuation<String?, Never>, String?)] = []
                state.waiters.removeAll { waiter in
                    if let line = state.lines.first(where: waiter.predicate) {
                        resumed.append((waiter.continuation, line))
                        return true
                    }
                    if state.finished {
                        resumed.append((waiter.continuation, nil))
                        return true
                    }
                    return false
                }
                return resumed
            }
            for (continuation, line) in ready { continuation.resume(returning: line) }
        }

        /// The first line (already seen or still to come) for which `predicate` holds; nil if the
        /// stream ended without one. Throws `TestTimeout` after `timeoutSeconds`.
        func first(
            timeoutSeconds: Double = 30, where predicate: @escaping @Sendable (String) -> Bool
        ) async throws -> String? {
            let id = state.withLock { state in
                state.nextWaiterID += 1
                return state.nextWaiterID
            }
            return try await withTimeout(timeoutSeconds, "a matching output line") {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let immediate: String?? = self.state.withLock { state in
                            if let line = state.lines.first(where: predicate) { return .some(line) }
                            if state.finished || state.cancelledIDs.remove(id) != nil { return .some(nil) }
                            state.waiters.append(Waiter(id: id, predicate: predicate, continuation: continuation))
                            return .none
                        }
                        if let immediate { continuation.resume(returning: immediate) }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { state -> Waiter? in
                        guard let index = state.waiters.firstIndex(where: { $0.id == id }) else {
                            state.cancelledIDs.insert(id)
                            return nil
                        }
                        return state.waiters.remove(at: index)
                    }
                    waiter?.continuation.resume(returning: nil)
                }
            }
        }
    }

    let name: String
    let stdout = Lines()
    let stderr = Lines()
    private let process: Process
    private struct ExitState {
        var status: Int32?
        var waiters: [Int: CheckedContinuation<Int32?, Never>] = [:]
        var nextID = 0
        var cancelledIDs: Set<Int> = []
    }

    private let exit = Mutex(ExitState())

    /// What the test writes into the child's stdin (nil unless started with `standardInput: true`).
    let input: FileHandle?

    /// Start `name` from the build products directory with `arguments` (or `executableURL`, when
    /// given, for wrappers such as `strace`); `standardInput`: give it a pipe the test writes into,
    /// else /dev/null.
    init(
        _ name: String, arguments: [String], environment: [String: String]? = nil, executableURL: URL? = nil,
        standardInput: Bool = false
    ) throws {
        self.name = name
        let process = Process()
        process.executableURL = executableURL ?? buildProductsDirectory().appendingPathComponent(name)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        if standardInput {
            let inputPipe = Pipe()
            process.standardInput = inputPipe
            input = inputPipe.fileHandleForWriting
        } else {
            process.standardInput = FileHandle.nullDevice
            input = nil
        }
        Self.drain(out.fileHandleForReading, into: stdout)
        Self.drain(err.fileHandleForReading, into: stderr)
        self.process = process
        process.terminationHandler = { [weak self] process in
            guard let self else { return }
            let waiters = self.exit.withLock { state in
                state.status = process.terminationStatus
                defer { state.waiters = [:] }
                return state.waiters
            }
            for waiter in waiters.values { waiter.resume(returning: process.terminationStatus) }
        }
        try process.run()
    }

    deinit {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    }

    /// Read `handle` to its end into `lines` (an empty append marks the end) on a thread of its own,
    /// with blocking reads. Not `readabilityHandler`: tearing down the libdispatch read source it
    /// installs races on Linux and crashed the whole test process in `_dispatch_event_loop_drain`
    /// (swift-corelibs-libdispatch#949). The handle closes its descriptor when it is released, after
    /// the end of file; closing it here as well could close a number another test has reused.
    private static func drain(_ handle: FileHandle, into lines: Lines) {
        Thread.detachNewThread {
            var chunk = [UInt8](repeating: 0, count: 65_536)
            // Bounded by the end of file: the child's exit closes the pipe's last write end.
            while true {
                let count = read(handle.fileDescriptor, &chunk, chunk.count)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                lines.append(Data(chunk[0..<count]))
            }
            lines.append(Data())
        }
    }

    var processIdentifier: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Send `signal` (SIGTERM, SIGINT, SIGKILL, ...) to the process.
    func send(signal: Int32) {
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
    }

    /// The exit status (or terminating signal number) once the process has ended.
    func waitForExit(timeoutSeconds: Double = 30) async throws -> Int32 {
        let id = exit.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        let status = try await withTimeout(timeoutSeconds, "\(name) to exit") {
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let immediate: Int32?? = self.exit.withLock { state in
                        if let status = state.status { return .some(status) }
                        if state.cancelledIDs.remove(id) != nil { return .some(nil) }
                        state.waiters[id] = continuation
                        return .none
                    }
                    if let immediate { continuation.resume(returning: immediate) }
                }
            } onCancel: {
                let waiter = self.exit.withLock { state in
                    let waiter = state.waiters.removeValue(forKey: id)
                    if waiter == nil { state.cancelledIDs.insert(id) }
                    return waiter
                }
                waiter?.resume(returning: nil)
            }
        }
        guard let status else { throw TestTimeout(what: "\(name) to exit", seconds: timeoutSeconds) }
        // The exit can be seen before the drain threads read the pipes to their end: wait for both
        // ends (bounded; a child the process left holding a pipe only costs the bound), so that
        // `stdout.all` after an exit is the whole output.
        for stream in [stdout, stderr] { _ = try? await stream.first(timeoutSeconds: 5) { _ in false } }
        return status
    }

    /// SIGKILL and wait (for cleanup at the end of a test).
    func kill() async {
        send(signal: SIGKILL)
        _ = try? await waitForExit(timeoutSeconds: 10)
    }
}

/// Run blocking `work` (a child's waitpid, a blocking socket, a large file copy) on a thread of its
/// own and await it: on Swift's cooperative pool (two threads on a 2-core machine, shared by every
/// test running in parallel) a blocking call stalls every other test's tasks, their timeouts and
/// their sleeps included.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try work() })
        }
    }
}

/// Every byte `descriptor` delivers up to its end of file (at most `limitBytes`). Not
/// `readDataToEndOfFile`: Foundation traps when a read is interrupted by a signal, which other
/// tests' children make likely in this process (it crashed the whole suite once); an interrupted
/// read here is retried. The one read loop of the integration tests.
func readAll(_ descriptor: Int32, limitBytes: Int = 16 << 20) -> [UInt8] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    // Bounded by the end of file and `limitBytes`.
    while bytes.count < limitBytes {
        let count = read(descriptor, &chunk, chunk.count)
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes += chunk[0..<count]
    }
    return bytes
}

/// What `handle` delivers up to its end of file (at most `limitBytes`; a command that prints more
/// is killed by its caller's timeout).
func readToEnd(_ handle: FileHandle, limitBytes: Int = 16 << 20) -> Data {
    Data(readAll(handle.fileDescriptor, limitBytes: limitBytes))
}
