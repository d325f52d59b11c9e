import ChatCore
import ChatTesting
import Foundation
import Testing

@testable import Simulator

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
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("Seeded entropy never reaches a shipped binary")
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
    static let testingModules = ["Simulator", "ChatTesting", "SeededRandom", "FuzzHarness"]

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

    @Test("Built relay and securechat binaries, where present, contain no Simulator symbol")
    func builtBinaries() throws {
        let nm = URL(fileURLWithPath: "/usr/bin/nm")
        guard FileManager.default.isExecutableFile(atPath: nm.path) else { return }
        for configuration in ["debug", "release"] {
            for binary in ["relay", "securechat"] {
                let path = packageRoot.appendingPathComponent(".build/\(configuration)/\(binary)")
                guard FileManager.default.isExecutableFile(atPath: path.path) else { continue }
                let (status, symbols) = try runProcess(nm, ["--defined-only", path.path])
                #expect(status == 0)
                // Swift mangles a module name length-prefixed (`9Simulator`) in every symbol of it.
                for module in Self.testingModules {
                    #expect(!symbols.contains("\(module.utf8.count)\(module)"), "\(binary) (\(configuration)) links \(module)")
                }
                #expect(!symbols.contains("SeededEntropy"), "\(binary) (\(configuration)) contains SeededEntropy")
            }
        }
    }
}
