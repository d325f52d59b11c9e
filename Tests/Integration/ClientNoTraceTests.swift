import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("securechat leaves no trace on disk")
struct ClientNoTraceTests {
    /// Whether one strace line shows a file being created, written, renamed or removed.
    static func isWrite(_ line: String) -> Bool {
        let mutating = ["creat(", "rename(", "renameat(", "renameat2(", "unlink(", "unlinkat(", "link(", "linkat(",
                        "symlink(", "symlinkat(", "mkdir(", "mkdirat(", "truncate(", "mknod(", "mknodat("]
        for name in mutating where Self.calls(line, name) { return true }
        if Self.calls(line, "open(") || Self.calls(line, "openat(") || Self.calls(line, "openat2(") {
            return ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"].contains { line.contains($0) }
        }
        return false
    }

    /// True when `line` is a strace record of the syscall `name` (e.g. "openat("), with or
    /// without strace's "[pid N] " prefix.
    static func calls(_ line: String, _ name: String) -> Bool {
        var rest = Substring(line)
        if rest.hasPrefix("[pid"), let close = rest.firstIndex(of: "]") {
            rest = rest[rest.index(after: close)...].drop { $0 == " " }
        }
        return rest.hasPrefix(name)
    }

    @Test("Under strace -f, neither client nor the relay opens a file for writing, creates, renames or unlinks one")
    func noFileWritten() async throws {
        let relay = try await RelayProcess.start(strace: true)
        do {
            let (alice, bob) = try await connectedPair(relay, room: uniqueRoom("TRACE"), strace: true)
            try alice.type("hello under strace")
            try bob.type("hello back")
            #expect(try await bob.messages(count: 1) == ["hello under strace"])
            #expect(try await alice.messages(count: 1) == ["hello back"])
            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit() == 0)
            #expect(try await bob.waitForExit() == 0)
            // The relay's whole life is traced, its shutdown too: SIGTERM to the relay itself (strace
            // would only detach on one), and strace exits with it.
            let relayPID = try #require(Self.onlyChild(of: relay.process.processIdentifier), "the traced relay")
            kill(relayPID, SIGTERM)
            #expect(try await relay.process.waitForExit() == 0)
            let traces = [
                (alice.name, alice.stderr.all), (bob.name, bob.stderr.all), ("relay", relay.process.stderr.all),
            ]
            for (name, lines) in traces {
                let trace = lines.filter { line in
                    ClientProcess.tracedSyscalls.contains { Self.calls(line, $0 + "(") }
                }
                // The trace is live: the dynamic loader's read-only opens are in it.
                #expect(trace.contains { $0.contains("O_RDONLY") }, "\(name): no trace captured")
                let writes = Self.withoutCoverageProfile(trace.filter(Self.isWrite))
                #expect(writes.isEmpty, "\(name) touched files:\n\(writes.joined(separator: "\n"))")
            }
        } catch {
            await relay.kill()
            throw error
        }
    }

    /// The one child process of `pid` (the program strace started), from /proc.
    static func onlyChild(of pid: Int32) -> Int32? {
        let path = "/proc/\(pid)/task/\(pid)/children"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let children = text.split(separator: " ").compactMap { Int32($0) }
        return children.count == 1 ? children[0] : nil
    }

    /// `writes` less the coverage runtime's own: under `swift test --enable-code-coverage`
    /// (scripts/coverage.sh) every instrumented binary writes a `.profraw` profile at exit, after
    /// `mkdir`-ing each directory above it. That is the build's instrumentation, not the client, and
    /// it is absent from the builds that ship; anything else is still reported.
    static func withoutCoverageProfile(_ writes: [String]) -> [String] {
        let profiles = writes.compactMap { line -> String? in
            guard let path = quotedPath(line), path.hasSuffix(".profraw") else { return nil }
            return path
        }
        guard !profiles.isEmpty else { return writes }
        return writes.filter { line in
            guard let path = quotedPath(line) else { return true }
            if profiles.contains(path) { return false }
            let isAncestor = profiles.contains { $0.hasPrefix(path + "/") }
            return !(calls(line, "mkdir(") && isAncestor && line.contains("EEXIST"))
        }
    }

    /// The first double-quoted string of a strace line (the path of open, mkdir, ...).
    static func quotedPath(_ line: String) -> String? {
        guard let start = line.firstIndex(of: "\"") else { return nil }
        let rest = line[line.index(after: start)...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    @Test("The strace filter recognises writes and ignores reads")
    func filterSelfCheck() {
        #expect(Self.isWrite(#"openat(AT_FDCWD, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3"#))
        #expect(Self.isWrite(#"[pid  42] unlinkat(AT_FDCWD, "/tmp/x", 0) = 0"#))
        #expect(Self.isWrite(#"[pid  42] renameat2(AT_FDCWD, "a", AT_FDCWD, "b", 0) = 0"#))
        #expect(!Self.isWrite(#"openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3"#))
        #expect(!Self.isWrite(#"[pid  42] openat(AT_FDCWD, "/proc/self/maps", O_RDONLY) = 5"#))
        // Only the coverage profile and the mkdirs of existing directories above it are let through.
        let profile = [
            #"[pid 7] mkdir("/b", 0755) = -1 EEXIST (File exists)"#,
            #"[pid 7] mkdir("/b/codecov", 0755) = -1 EEXIST (File exists)"#,
            #"[pid 7] openat(AT_FDCWD, "/b/codecov/t_0.7.profraw", O_RDWR|O_CREAT, 0666) = 10"#,
        ]
        #expect(Self.withoutCoverageProfile(profile).isEmpty)
        let other = [#"[pid 7] mkdir("/tmp/new", 0755) = 0"#, #"[pid 7] openat(AT_FDCWD, "/b/x", O_WRONLY) = 3"#]
        #expect(Self.withoutCoverageProfile(profile + other) == other)
        #expect(Self.withoutCoverageProfile(other) == other)
    }
}
