import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The release binaries (scripts/release.sh, Swift standard library linked statically) on a Debian 12
/// that has no Swift: `ldd` finds no Swift library, and `--help`, `--version` and a real chat through a
/// relay work there.
///
/// "There" is a minimal Debian 12 root made by debootstrap (scripts/make-debian-root.sh) with only the
/// runtime packages the README lists, entered with chroot. Inside it /opt/swift and every Swift library
/// do not exist at all, which a clean environment on this machine cannot promise (the loader would still
/// search the binary's RUNPATH and the system's library directories, where a toolchain may have put its
/// libraries). A binary that needed a Swift library, or a Debian library the README does not list,
/// fails to start in it; `selfCheck` shows that with the development build. /proc is mounted inside, as
/// on every Debian system (the Swift runtime reads the command line from /proc/self/cmdline), in a
/// private mount namespace, so the mount ends with the process.
///
/// scripts/test.sh builds both and sets SECURECHAT_RELEASE_DIR and SECURECHAT_DEBIAN_ROOT. Without
/// them (a plain `swift test`) the suite is skipped, and says so; with either set, anything missing
/// is a failure.
@Suite(
    "Release binaries on Debian 12 without Swift",
    .enabled(if: ReleaseSetup.requested, ReleaseSetup.skipNotice)
)
struct ReleaseBinaryTests {
    static let products = ["relay", "securechat", "simulator"]

    @Test("ldd: no Swift library and nothing missing, on this machine and in the Debian root")
    func noSwiftLibraries() async throws {
        let setup = try ReleaseSetup()
        let installed = try setup.install()
        defer { installed.remove() }
        for product in Self.products {
            let binary = setup.binary(product)
            let host = try await runToEnd("/usr/bin/ldd", [binary])
            #expect(host.status == 0, "ldd \(product): \(host.output)")
            #expect(ReleaseSetup.swiftLibraries(in: host.output).isEmpty, "\(product) needs:\n\(host.output)")
            #expect(!host.output.contains("not found"), "\(product):\n\(host.output)")
            let dynamic = try await runToEnd("/usr/bin/readelf", ["-d", binary])
            let paths = dynamic.output.split(separator: "\n").filter { $0.contains("RPATH") || $0.contains("RUNPATH") }
            #expect(paths.allSatisfy { !$0.contains("/") }, "\(product) searches toolchain paths: \(paths)")

            let inRoot = try await setup.runInRoot("/usr/bin/ldd", [installed.path(product)])
            #expect(inRoot.status == 0, "ldd in the root, \(product): \(inRoot.output)")
            #expect(!inRoot.output.contains("not found"), "\(product) in Debian 12:\n\(inRoot.output)")
            #expect(ReleaseSetup.swiftLibraries(in: inRoot.output).isEmpty, "\(product):\n\(inRoot.output)")
        }
    }

    @Test("No build path: the checkout's absolute path appears in no release binary (release.sh maps it to .)")
    func noBuildPath() throws {
        let setup = try ReleaseSetup()
        // This file is <checkout>/Tests/Integration/ReleaseBinaryTests.swift; scripts/test.sh builds the
        // release binaries in the same checkout.
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        for product in Self.products {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: setup.binary(product)))
            #expect(bytes.range(of: Data(checkout.utf8)) == nil, "\(product) contains \(checkout)")
            // The mapped form is there (BoringSSL's __FILE__), so the search above looks at real strings.
            let mapped = Data(".build-release/checkouts/swift-nio-ssl/".utf8)
            #expect(product == "simulator" || bytes.range(of: mapped) != nil, "\(product): no mapped path")
        }
    }

    @Test("Self-check: the development build (Swift linked dynamically) is caught by both checks")
    func selfCheck() async throws {
        let setup = try ReleaseSetup()
        let development = buildProductsDirectory().appendingPathComponent("securechat").path
        let host = try await runToEnd("/usr/bin/ldd", [development])
        #expect(!ReleaseSetup.swiftLibraries(in: host.output).isEmpty, "ldd found no Swift library:\n\(host.output)")
        let installed = try setup.install(products: [], extra: ["securechat-development": development])
        defer { installed.remove() }
        let run = try await setup.runInRoot(installed.path("securechat-development"), ["--help"])
        #expect(run.status != 0)
        #expect(run.output.contains("error while loading shared libraries: libswift"), "\(run.output)")
    }

    @Test("--help, --version and a short simulation in the root; --version names the commit in BUILDINFO")
    func helpAndVersion() async throws {
        let setup = try ReleaseSetup()
        let installed = try setup.install()
        defer { installed.remove() }
        for product in Self.products {
            let help = try await setup.runInRoot(installed.path(product), ["--help"])
            #expect(help.status == 0, "\(product) --help: \(help.output)")
            #expect(help.output.contains("USAGE: \(product)"), "\(product) --help: \(help.output)")
        }
        // The simulator is the one that imports Foundation (linked in statically too): run it.
        let simulation = try await setup.runInRoot(installed.path("simulator"), ["--peers", "2", "--seed", "1"])
        #expect(simulation.status == 0, "simulator: \(simulation.output)")
        #expect(simulation.stdout.contains { $0.hasPrefix("invariants: all held") }, "simulator: \(simulation.output)")

        let info = try setup.buildInfo()
        let version = try #require(info["version"])
        let commit = try #require(info["commit"])
        #expect(commit.prefix(40).allSatisfy(\.isHexDigit) && commit.count >= 40, "BUILDINFO commit=\(commit)")
        for product in ["relay", "securechat"] {
            let run = try await setup.runInRoot(installed.path(product), ["--version"])
            #expect(run.status == 0)
            #expect(run.stdout == ["\(product) \(version) (commit \(commit))"], "\(product) --version: \(run.output)")
        }
    }

    @Test("A chat in the root: the relay and two clients, one message each way, both exit 0")
    func chatThroughRelay() async throws {
        let setup = try ReleaseSetup()
        let installed = try setup.install(products: ["relay", "securechat"])
        defer { installed.remove() }
        let relay = try setup.processInRoot(
            "relay", installed.path("relay"), ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"])
        defer { relay.send(signal: SIGKILL) }
        let ready = try await relay.stdout.first(timeoutSeconds: 30) { $0.hasPrefix("relay listening on ws://") }
        let url = try #require(ready?.split(separator: " ").dropFirst(3).first.map(String.init), "\(relay.stderr.all)")

        let room = uniqueRoom("REL")
        let alice = try setup.processInRoot(
            "alice", installed.path("securechat"), [room, "--relay", url, "--json"], standardInput: true)
        let bob = try setup.processInRoot(
            "bob", installed.path("securechat"), [room, "--relay", url, "--json"], standardInput: true)
        defer {
            alice.send(signal: SIGKILL)
            bob.send(signal: SIGKILL)
        }
        for client in [alice, bob] {
            let connected = try await client.stdout.first(timeoutSeconds: 30) {
                $0.contains(#""event":"state""#) && $0.contains(#""to":"CONNECTED""#)
            }
            // Required: writing to a client that already exited would kill this test process (SIGPIPE).
            try #require(connected != nil, "\(client.name): \(client.stdout.all) \(client.stderr.all)")
        }
        try alice.input!.write(contentsOf: Data("from alice, without Swift\n".utf8))
        try bob.input!.write(contentsOf: Data("from bob, without Swift\n".utf8))
        for (client, text) in [(bob, "from alice, without Swift"), (alice, "from bob, without Swift")] {
            let message = try await client.stdout.first(timeoutSeconds: 30) {
                $0.contains(#""event":"message""#) && $0.contains(text)
            }
            #expect(message != nil, "\(client.name) never got \(text): \(client.stdout.all) \(client.stderr.all)")
        }
        try alice.input!.close()
        try bob.input!.close()
        #expect(try await alice.waitForExit() == 0)
        #expect(try await bob.waitForExit() == 0)
        relay.send(signal: SIGTERM)
        #expect(try await relay.waitForExit() == 0)
    }
}

/// The release binaries and the Debian root that scripts/test.sh prepared.
struct ReleaseSetup {
    static let environment = ProcessInfo.processInfo.environment
    /// Whether the test script asked for these tests (it sets both variables).
    static let requested = environment["SECURECHAT_RELEASE_DIR"] != nil || environment["SECURECHAT_DEBIAN_ROOT"] != nil
    static let skipNotice: Comment = """
        SECURECHAT_RELEASE_DIR and SECURECHAT_DEBIAN_ROOT are unset: the release binaries were NOT \
        checked on Debian 12 without Swift. scripts/test.sh builds them (scripts/release.sh, \
        scripts/make-debian-root.sh) and runs these tests.
        """

    let binaries: String
    let root: String

    init() throws {
        binaries = try #require(Self.environment["SECURECHAT_RELEASE_DIR"], "SECURECHAT_RELEASE_DIR unset")
        root = try #require(Self.environment["SECURECHAT_DEBIAN_ROOT"], "SECURECHAT_DEBIAN_ROOT unset")
        for product in ReleaseBinaryTests.products {
            #expect(FileManager.default.isExecutableFile(atPath: binary(product)), "no \(binary(product))")
        }
        #expect(FileManager.default.fileExists(atPath: root + "/etc/debian_version"), "no Debian root in \(root)")
        #expect(!FileManager.default.fileExists(atPath: root + "/opt/swift"), "the Debian root has Swift")
    }

    func binary(_ product: String) -> String { binaries + "/" + product }

    /// `version=` and `commit=` (and the rest) from the BUILDINFO that release.sh wrote.
    func buildInfo() throws -> [String: String] {
        let text = try String(contentsOfFile: binaries + "/BUILDINFO", encoding: .utf8)
        var info: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            info[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return info
    }

    /// Library lines of `ldd` output that belong to a Swift toolchain.
    static func swiftLibraries(in lddOutput: String) -> [Substring] {
        let markers = ["libswift", "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime", "/opt/swift"]
        return lddOutput.split(separator: "\n").filter { line in markers.contains { line.contains($0) } }
    }

    /// Binaries copied into a fresh directory inside the root.
    struct Installed {
        let hostDirectory: String
        let rootDirectory: String
        func path(_ name: String) -> String { rootDirectory + "/" + name }
        func remove() { try? FileManager.default.removeItem(atPath: hostDirectory) }
    }

    /// Copy `products` (and `extra`: name in the root -> host path) into `/opt/securechat-test-N/`.
    func install(products: [String] = ReleaseBinaryTests.products, extra: [String: String] = [:]) throws -> Installed {
        let rootDirectory = "/opt/securechat-test-\(UUID().uuidString.prefix(8))"
        let installed = Installed(hostDirectory: root + rootDirectory, rootDirectory: rootDirectory)
        try FileManager.default.createDirectory(atPath: installed.hostDirectory, withIntermediateDirectories: true)
        var files = extra
        for product in products { files[product] = binary(product) }
        for (name, source) in files.sorted(by: { $0.key < $1.key }) {
            // Copied by cp, not in this process: a file this (multithreaded) test process held open
            // for writing is inherited by every process another test forks meanwhile, and exec of
            // the copy then fails with ETXTBSY ("Text file busy", seen in CI).
            let copy = Process()
            copy.executableURL = URL(fileURLWithPath: "/bin/cp")
            copy.arguments = [source, installed.hostDirectory + "/" + name]
            try copy.run()
            copy.waitUntilExit()
            guard copy.terminationStatus == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: installed.hostDirectory + "/" + name])
            }
        }
        return installed
    }

    /// `path` (inside the root) with `arguments`, started in the root: a private mount namespace with
    /// /proc mounted, then chroot, each step exec-ing the next so that the test signals the binary
    /// itself. The environment has PATH only: no LD_LIBRARY_PATH, nothing from the toolchain.
    func processInRoot(_ name: String, _ path: String, _ arguments: [String], standardInput: Bool = false) throws
        -> TestProcess
    {
        try TestProcess(
            name, arguments: enterRootArguments(path, arguments), environment: Self.rootEnvironment,
            executableURL: URL(fileURLWithPath: "/usr/bin/unshare"), standardInput: standardInput)
    }

    /// unshare's arguments: /bin/sh, in the new mount namespace, mounts /proc and execs chroot.
    func enterRootArguments(_ path: String, _ arguments: [String]) -> [String] {
        let script = #"mount -t proc proc "$0/proc" && exec chroot "$0" "$@""#  // $0: the root
        return ["--mount", "--propagation", "private", "/bin/sh", "-c", script, root, path] + arguments
    }
    static let rootEnvironment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]

    /// `path` (inside the root) with `arguments`, run to its end (see `processInRoot`).
    func runInRoot(_ path: String, _ arguments: [String]) async throws -> Finished {
        try await runToEnd("/usr/bin/unshare", enterRootArguments(path, arguments), environment: Self.rootEnvironment)
    }
}

/// A process that ran to its end: status and everything it printed.
struct Finished {
    var status: Int32
    var stdout: [String]
    var stderr: [String]
    var output: String { (stdout + stderr).joined(separator: "\n") }
}

/// Run `executable` with `arguments` to its end and collect what it printed; killed after
/// `timeoutSeconds`. Blocking reads to the end of both pipes, not TestProcess: its line reader can
/// miss the end of a stream that closes right after its last bytes (seen with `echo`), which is
/// all a short command does.
func runToEnd(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, timeoutSeconds: Double = 60
) async throws -> Finished {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            if let environment { process.environment = environment }
            let out = Pipe()
            let err = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
                return
            }
            let pid = process.processIdentifier
            let killer = DispatchWorkItem { kill(pid, SIGKILL) }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds, execute: killer)
            let errData = Mutex(Data())
            let errDone = DispatchGroup()
            let errHandle = err.fileHandleForReading
            DispatchQueue.global().async(group: errDone) {
                let data = readToEnd(errHandle)
                errData.withLock { $0 = data }
            }
            let outData = readToEnd(out.fileHandleForReading)
            errDone.wait()
            process.waitUntilExit()
            killer.cancel()
            let lines = { (data: Data) in
                String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                    .map(String.init).filter { !$0.isEmpty }
            }
            continuation.resume(returning: Finished(
                status: process.terminationStatus, stdout: lines(outData), stderr: lines(errData.withLock { $0 })))
        }
    }
}
