import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real `securechat` process in pipe mode: stdin is a pipe the test writes lines into,
/// stdout and stderr are captured line by line (a `TestProcess` with a stdin pipe).
/// Optionally run under `strace -f`, whose trace goes to stderr.
final class ClientProcess: Sendable {
    let name: String
    private let child: TestProcess
    private let inputOpen = Mutex(true)
    var stdout: TestProcess.Lines { child.stdout }
    var stderr: TestProcess.Lines { child.stderr }

    /// The syscalls `strace` watches: everything that can create, write, rename or remove a file.
    static let tracedSyscalls = [
        "open", "openat", "openat2", "creat", "rename", "renameat", "renameat2", "unlink", "unlinkat",
        "link", "linkat", "symlink", "symlinkat", "mkdir", "mkdirat", "truncate", "mknod", "mknodat",
    ]

    /// Start `securechat` with `arguments`; `name` labels failures. `launcher`: a program and its
    /// arguments that exec the client (`prlimit ...`, `setpriv ...`), so the process is still the
    /// client's; `binary`: another copy of the client to run. `traceSyscalls`: what `strace` watches.
    init(
        _ name: String, _ arguments: [String], strace: Bool = false, traceSyscalls: [String] = tracedSyscalls,
        environment: [String: String]? = nil, launcher: [String] = [], binary: URL? = nil
    ) throws {
        self.name = name
        let binary = binary ?? buildProductsDirectory().appendingPathComponent("securechat")
        if let program = launcher.first {
            child = try TestProcess(
                name, arguments: Array(launcher.dropFirst()) + [binary.path] + arguments, environment: environment,
                executableURL: URL(fileURLWithPath: program), standardInput: true)
        } else if strace {
            child = try TestProcess(
                name, arguments: ["-f", "-qq", "-e", "trace=" + traceSyscalls.joined(separator: ","), binary.path]
                    + arguments,
                environment: environment, executableURL: URL(fileURLWithPath: "/usr/bin/strace"), standardInput: true)
        } else {
            child = try TestProcess(
                name, arguments: arguments, environment: environment, executableURL: binary, standardInput: true)
        }
    }

    var processIdentifier: Int32 { child.processIdentifier }
    var isRunning: Bool { child.isRunning }

    /// Type one line (a message) on the client's stdin.
    func type(_ line: String) throws {
        try child.input!.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Close stdin: the client sends what is pending, then leaves.
    func closeInput() throws {
        let wasOpen = inputOpen.withLock { open in
            defer { open = false }
            return open
        }
        if wasOpen { try child.input!.close() }
    }

    func send(signal: Int32) {
        child.send(signal: signal)
    }

    /// The exit status once the process has ended.
    func waitForExit(timeoutSeconds: Double = 30) async throws -> Int32 {
        try await child.waitForExit(timeoutSeconds: timeoutSeconds)
    }

    func kill() async {
        await child.kill()
    }

    // MARK: JSON events (--json)

    /// Every JSON event on stdout so far.
    var events: [[String: Any]] {
        stdout.all.compactMap(Self.parse)
    }

    /// Wait for the first JSON event (seen or to come) matching `predicate`.
    @discardableResult
    func event(
        _ what: String, timeoutSeconds: Double = 30, where predicate: @escaping @Sendable ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let line = try await stdout.first(timeoutSeconds: timeoutSeconds) { line in
            Self.parse(line).map(predicate) ?? false
        }
        guard let line, let event = Self.parse(line) else {
            throw ClientTestFailure("\(name): output ended before \(what); stdout:\n"
                + stdout.all.suffix(30).joined(separator: "\n") + "\nstderr:\n" + stderr.all.suffix(30).joined(separator: "\n"))
        }
        return event
    }

    /// Wait for `{"event":"state","to":state}`.
    func state(_ state: String, timeoutSeconds: Double = 30) async throws {
        try await event("state \(state)", timeoutSeconds: timeoutSeconds) {
            $0["event"] as? String == "state" && $0["to"] as? String == state
        }
    }

    /// Wait for a notice (or error) of `kind`.
    func notice(_ kind: String, timeoutSeconds: Double = 30) async throws {
        try await event("notice \(kind)", timeoutSeconds: timeoutSeconds) {
            ["notice", "error"].contains($0["event"] as? String) && $0["kind"] as? String == kind
        }
    }

    /// Wait until `count` messages have arrived and return their texts in order.
    func messages(count: Int, timeoutSeconds: Double = 30) async throws -> [String] {
        let target = count
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
        while ContinuousClock.now < deadline {
            let texts = messageTexts
            if texts.count >= target { return texts }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ClientTestFailure("\(name): expected \(count) messages, got \(messageTexts); stderr:\n"
            + stderr.all.suffix(30).joined(separator: "\n"))
    }

    /// The texts of the `message` events so far, in order.
    var messageTexts: [String] {
        events.filter { $0["event"] as? String == "message" }.compactMap { $0["text"] as? String }
    }

    private static func parse(_ line: String) -> [String: Any]? {
        guard line.hasPrefix("{") else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }
}

struct ClientTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A fresh room code per test, so concurrent tests never meet in one room.
func uniqueRoom(_ prefix: String) -> String {
    prefix + String(UInt32.random(in: 0...UInt32.max), radix: 36).uppercased()
}

/// Start two JSON pipe-mode clients in `room` and wait until both are CONNECTED.
func connectedPair(
    _ relay: RelayProcess, room: String, extra: [String] = [], strace: Bool = false
) async throws -> (ClientProcess, ClientProcess) {
    let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json"] + extra, strace: strace)
    let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json"] + extra, strace: strace)
    try await alice.state("CONNECTED")
    try await bob.state("CONNECTED")
    return (alice, bob)
}
