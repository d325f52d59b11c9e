import ChatCore
import ChatTesting
import Foundation
import Testing

@testable import Simulator
import TestSupport

/// The package root, found from this file (Tests/Simulation/IsolationTests.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Run a program and return its exit status and standard output.
func runProcess(
    _ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
    in directory: URL = packageRoot
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = directory
    if let environment { process.environment = environment }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = readToEnd(output.fileHandleForReading.fileDescriptor)
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Read a pipe to its end, retrying reads a signal interrupted (Foundation's
/// `readDataToEndOfFile` traps on EINTR, which the test runner's own signals can cause).
private func readToEnd(_ descriptor: Int32) -> [UInt8] {
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count > 0 {
            data.append(contentsOf: chunk[0..<count])
        } else if count == 0 || errno != EINTR {
            return data
        }
    }
}

@Suite("Seeded entropy never reaches a shipped binary", .cpuBound)
struct IsolationTests {
    /// Every target a target depends on, transitively, from `swift package dump-package`.
    static func dependencyClosure() throws -> (
        targets: [String: [String]], products: [(name: String, type: String, targets: [String])]
    ) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sim-dump-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let swift = URL(fileURLWithPath: "/usr/bin/env")
        let (status, output) = try runProcess(
            swift, ["swift", "package", "--scratch-path", scratch.path, "dump-package"])
        try #require(status == 0, "swift package dump-package failed")
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        var targets: [String: [String]] = [:]
        for target in manifest["targets"] as? [[String: Any]] ?? [] {
            let name = target["name"] as? String ?? ""
            var dependencies: [String] = []
            for dependency in target["dependencies"] as? [[String: Any]] ?? [] {
                if let byName = dependency["byName"] as? [Any?], let first = byName.first as? String {
                    dependencies.append(first)
                } else if let target = dependency["target"] as? [Any?], let first = target.first as? String {
                    dependencies.append(first)
                }
            }
            targets[name] = dependencies
        }
        var products: [(String, String, [String])] = []
        for product in manifest["products"] as? [[String: Any]] ?? [] {
            let type = (product["type"] as? [String: Any])?.keys.sorted().first ?? ""
            products.append((product["name"] as? String ?? "", type, product["targets"] as? [String] ?? []))
        }
        return (targets, products)
    }

    static func closure(of roots: [String], in targets: [String: [String]]) -> Set<String> {
        var seen = Set<String>()
        var stack = roots
        while let next = stack.popLast() {
            guard seen.insert(next).inserted else { continue }
            stack.append(contentsOf: targets[next] ?? [])
        }
        return seen
    }

    @Test("In the package graph, only the simulator product and the tests depend on the Simulator module")
    func packageGraph() throws {
        let (targets, products) = try Self.dependencyClosure()
        for module in Self.testingModules { #expect(targets[module] != nil, "the manifest has a \(module) target") }
        // The shipped chat binaries and the libraries they are made of reach no testing module.
        for product in products where ["relay", "securechat", "ChatCore", "ChatNetworking"].contains(product.name) {
            let reachable = Self.closure(of: product.targets, in: targets)
            for module in Self.testingModules {
                #expect(!reachable.contains(module), "product \(product.name) must not link \(module)")
            }
        }
        for target in ["relay", "securechat", "RelayServer", "ChatClient", "ChatCore", "ChatNetworking"] {
            #expect(targets[target] != nil, "the manifest has a \(target) target")
            let reachable = Self.closure(of: [target], in: targets)
            for module in Self.testingModules {
                #expect(!reachable.contains(module), "\(target) must not depend on \(module)")
            }
        }
    }

    /// Modules that hold seeded randomness or test worlds: never in a shipped chat binary.
    static let testingModules = ["Simulator", "ChatTesting", "SeededRandom", "FuzzHarness", "FuzzSessionHarness"]

    @Test("No source outside the testing modules imports the Simulation SPI or a testing module")
    func spiImports() throws {
        let sources = packageRoot.appendingPathComponent("Sources")
        let enumerator = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
        var checked = 0
        for case let file as URL in enumerator where file.pathExtension == "swift" {
            let relative = file.path.replacingOccurrences(of: sources.path + "/", with: "")
            let module = String(relative.prefix { $0 != "/" })
            guard !Self.testingModules.contains(module), module != "SimulatorMain", module != "RelayBench" else {
                continue
            }
            let text = try String(contentsOf: file, encoding: .utf8)
            for line in text.split(separator: "\n") where line.contains("import ") && !line.contains("//") {
                #expect(!line.contains("@_spi(Simulation)"), "\(relative) imports the Simulation SPI")
                for testing in Self.testingModules {
                    #expect(!line.hasSuffix("import \(testing)"), "\(relative) imports \(testing)")
                }
            }
            checked += 1
        }
        #expect(checked > 50, "the scan read \(checked) files: the source tree was not found")
    }

    @Test("The relay and securechat binaries this test run built contain no Simulator symbol (nor any release build's)")
    func builtBinaries() throws {
        // No silent pass: without nm, or without the binaries `swift test` builds beside this test
        // bundle (IntegrationTests depends on them), the check has not run, and that is a failure.
        let nm = URL(fileURLWithPath: "/usr/bin/nm")
        try #require(FileManager.default.isExecutableFile(atPath: nm.path),
                     "no /usr/bin/nm: run scripts/install-deps.sh (binutils)")
        let ownBuild = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        var directories = [ownBuild]
        let release = packageRoot.appendingPathComponent(".build/release").resolvingSymlinksInPath()
        if release.path != ownBuild.path { directories.append(release) }
        var checked = 0
        for directory in directories {
            for binary in ["relay", "securechat"] {
                let path = directory.appendingPathComponent(binary)
                guard FileManager.default.isExecutableFile(atPath: path.path) else {
                    // A release build is optional; this run's own build is not.
                    #expect(directory != ownBuild,
                            "\(binary) is missing from \(directory.path): build it (swift build --build-tests)")
                    continue
                }
                let (status, symbols) = try runProcess(nm, ["--defined-only", path.path])
                #expect(status == 0, "nm \(path.path) failed")
                #expect(symbols.count > 10_000, "nm printed almost nothing for \(path.path)")
                // Swift mangles a module name length-prefixed (`9Simulator`) in every symbol of it.
                for module in Self.testingModules {
                    #expect(!symbols.contains("\(module.utf8.count)\(module)"), "\(path.path) links \(module)")
                }
                #expect(!symbols.contains("SeededEntropy"), "\(path.path) contains SeededEntropy")
                checked += 1
            }
        }
        #expect(checked >= 2, "only \(checked) binaries checked")
    }

    @Test("The symbol check can fire: the simulator binary itself holds Simulator symbols")
    func symbolCheckSelfTest() throws {
        let nm = URL(fileURLWithPath: "/usr/bin/nm")
        try #require(FileManager.default.isExecutableFile(atPath: nm.path),
                     "no /usr/bin/nm: run scripts/install-deps.sh (binutils)")
        let (status, symbols) = try runProcess(nm, ["--defined-only", try SimulatorCommandTests.simulatorBinary().path])
        #expect(status == 0)
        #expect(symbols.contains("9Simulator"))
    }
}

@Suite("The simulator command")
struct SimulatorCommandTests {
    static func simulatorBinary() throws -> URL {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("simulator")
        let candidates = [besideTests, packageRoot.appendingPathComponent(".build/debug/simulator")]
        return try #require(
            candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) },
            "build the simulator product first (swift build --build-tests builds it)")
    }

    static func hash(in output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix("trace hash: ") }.map { String($0.dropFirst(12)) }
    }

    @Test("Same seed, same hash with SWIFT_DETERMINISTIC_HASHING set and unset; exit 0 on success")
    func hashingEnvironment() throws {
        let binary = try Self.simulatorBinary()
        let arguments = [
            "--seed", "21", "--peers", "20", "--messages", "6", "--fault-phase", "8", "--reset",
            "--partition", "--relay-crash", "--peer-restart", "--drop", "0.05",
        ]
        var unset = ProcessInfo.processInfo.environment
        unset.removeValue(forKey: "SWIFT_DETERMINISTIC_HASHING")
        var set = unset
        set["SWIFT_DETERMINISTIC_HASHING"] = "1"
        let first = try runProcess(binary, arguments, environment: unset)
        let second = try runProcess(binary, arguments, environment: set)
        #expect(first.status == 0 && second.status == 0)
        let hash = try #require(Self.hash(in: first.output))
        #expect(Self.hash(in: second.output) == hash)
    }

    @Test("A violation exits 1 and prints the invariant, the trace tail, the seed and the command")
    func violationOutput() throws {
        let binary = try Self.simulatorBinary()
        let (status, output) = try runProcess(
            binary, ["--seed", "2", "--peers", "20", "--plant-bug", "skip-counter-check"])
        #expect(status == 1)
        #expect(output.contains("INVARIANT VIOLATED: at-most-once"))
        #expect(output.contains("trace tail:"))
        #expect(output.contains("seed: 2"))
        #expect(output.contains("reproduce: simulator --seed 2 --peers 20 --plant-bug skip-counter-check"))
    }

    @Test("--json prints one object with the summary")
    func json() throws {
        let binary = try Self.simulatorBinary()
        let (status, output) = try runProcess(binary, ["--seed", "3", "--peers", "10", "--json"])
        #expect(status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect(object["traceHash"] as? String != nil)
        #expect((object["sessions"] as? [String: Any])?["total"] as? Int == 10)
        #expect(object["violation"] == nil)
    }
}

extension SimulatorCommandTests {
    @Test("--trace writes every record as a line, with sizes and numbers but never message text")
    func traceFile() throws {
        let binary = try Self.simulatorBinary()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sim-trace-\(getpid()).txt")
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, _) = try runProcess(
            binary, ["--seed", "4", "--peers", "6", "--messages", "5", "--trace", file.path])
        #expect(status == 0)
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text.split(separator: "\n").count > 100)
        #expect(text.contains("relay<-frame") && text.contains("received"))
        #expect(!text.contains(Canary.marker), "no message text in the trace file")
    }
}
