import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The client's process hardening, read from the kernel's view of a running client (not from what
/// it prints): its secrets in locked memory, no core dumps, not dumpable.
@Suite("securechat: a running client's secrets are locked and cannot be dumped")
struct ClientHardeningTests {
    static let nobody: uid_t = 65534

    /// A field of /proc/PID/status, e.g. "VmLck" -> "1234 kB".
    static func status(_ pid: Int32, _ field: String) throws -> String? {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        return text.split(separator: "\n").first { $0.hasPrefix(field + ":") }
            .map { $0.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces) }
    }

    /// The owner of /proc/PID/status. The kernel gives the files of a process that is not dumpable
    /// (PR_SET_DUMPABLE 0) to root, whoever runs it; a dumpable one's belong to its own uid
    /// (proc(5), "/proc/pid"; task_dump_owner in fs/proc/base.c). The /proc/PID directory itself
    /// always shows the process's uid, so it cannot tell.
    static func procOwner(_ pid: Int32) throws -> uid_t {
        var info = stat()
        let path = "/proc/\(pid)/status"
        guard stat(path, &info) == 0 else { throw ClientTestFailure("stat \(path): errno \(errno)") }
        return info.st_uid
    }

    /// A copy of the client that user `nobody` can run: the build directory may sit under a home
    /// directory others cannot enter.
    static func binaryForNobody() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("securechat-nobody-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        chmod(directory.path, 0o755)
        let copy = directory.appendingPathComponent("securechat")
        try? FileManager.default.removeItem(at: copy)
        let original = buildProductsDirectory().appendingPathComponent("securechat")
        // A hard link has no writer. A copy's write descriptor can be inherited, for a moment, by a
        // process another test forks meanwhile, and exec then fails with "Text file busy" (ETXTBSY).
        if link(original.path, copy.path) != 0 {
            try FileManager.default.copyItem(at: original, to: copy)
            chmod(copy.path, 0o755)
            try waitUntilExecutable(copy)
        }
        return copy
    }

    /// Waits until no process holds the copy open for writing (open(O_WRONLY) fails with ETXTBSY
    /// only while it is being executed, so the test is: run it once with --version).
    static func waitUntilExecutable(_ binary: URL) throws {
        for _ in 0..<100 {
            let probe = Process()
            probe.executableURL = binary
            probe.arguments = ["--version"]
            probe.standardOutput = FileHandle.nullDevice
            probe.standardError = FileHandle.nullDevice
            if (try? probe.run()) != nil {
                probe.waitUntilExit()
                return
            }
            usleep(20_000)
        }
        throw ClientTestFailure("\(binary.path) stayed busy (ETXTBSY) for 2 s")
    }

    /// Run as `nobody`, with a core limit the client must lower itself (the test runner's own may
    /// already be 0, which would prove nothing).
    static let launcher = [
        "/usr/bin/prlimit", "--core=1048576:1048576", "--",
        "/usr/bin/setpriv", "--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups", "--",
    ]

    @Test("Control: under the same launcher a process that stays dumpable owns its /proc files and keeps its core limit")
    func controlProcess() async throws {
        let sleeper = try TestProcess(
            "sleep", arguments: Array(Self.launcher.dropFirst()) + ["/bin/sleep", "600"],
            executableURL: URL(fileURLWithPath: Self.launcher[0]))
        defer { sleeper.send(signal: SIGKILL) }
        let pid = sleeper.processIdentifier
        // Wait for setpriv's exec (the uid changes just before it).
        for _ in 0..<200 where (try? Self.status(pid, "Name")) != "sleep" {
            try await Task.sleep(for: .milliseconds(10))
        }
        guard sleeper.isRunning else {
            Issue.record("the control process ended: status \(try await sleeper.waitForExit())")
            return
        }
        #expect(try Self.status(pid, "Name") == "sleep")
        #expect(try Self.procOwner(pid) == Self.nobody, "the kernel shows a dumpable process's /proc files as its own")
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        #expect(Self.coreLimit(limits) == ["1048576", "1048576"], "\(limits)")
    }

    static func coreLimit(_ limits: String) -> [String] {
        let line = limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") } ?? ""
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        return fields.dropFirst(4).prefix(2).map(String.init)
    }

    @Test("Connected, as user nobody: VmLck > 0, /proc/PID/status owned by root (not dumpable), core limit 0 0")
    func lockedAndUndumpable() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("HARD")
            let binary = try await offPool { try Self.binaryForNobody() }
            defer { try? FileManager.default.removeItem(at: binary.deletingLastPathComponent()) }
            let alice = try ClientProcess(
                "alice", [room, "--relay", relay.url, "--json"], launcher: Self.launcher, binary: binary)
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json"])
            try await alice.state("CONNECTED")
            try await bob.state("CONNECTED")
            try bob.type("keys exist on both sides now")
            #expect(try await alice.messages(count: 1) == ["keys exist on both sides now"])

            let pid = alice.processIdentifier
            let uids = try #require(try Self.status(pid, "Uid")).split(separator: "\t").map(String.init)
            #expect(uids.first == String(Self.nobody), "the client runs as nobody: Uid \(uids)")
            let locked = try #require(try Self.status(pid, "VmLck"))
            let lockedKiB = Int(locked.split(separator: " ").first ?? "") ?? 0
            #expect(lockedKiB > 0, "no locked memory: VmLck \(locked)")
            let owner = try Self.procOwner(pid)
            #expect(owner == 0, "/proc/\(pid)/status belongs to uid \(owner): the client is dumpable")
            let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
            #expect(Self.coreLimit(limits) == ["0", "0"], "core limit \(Self.coreLimit(limits))")

            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit() == 0)
            #expect(try await bob.waitForExit() == 0)
        }
    }
}
