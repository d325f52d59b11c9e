import Foundation
import Testing

/// docs/SIMULATOR.md claims that the simulator runs the shipped client driver and relay policy,
/// with only the clock, the network, the entropy and the allocator simulated. These tests fail if
/// the simulator (or the testing world under it) stops linking them, or grows a policy of its own.
@Suite("The simulator runs what ships")
struct ShippedCodeTests {
    /// Names that belong to a reconnect policy, a rate limit or room admission: decisions the
    /// shipped ClientDriver and RelayEngine make, which the simulator must not make again.
    static let policyWords = [
        "backoff", "tokenbucket", "joinbucket", "admit", "admission", "reconnectdelay", "nextdelay", "retryat",
    ]

    @Test("Simulator and ChatTesting depend on ClientCore and RelayCore")
    func packageGraph() throws {
        let (targets, _) = try IsolationTests.dependencyClosure()
        for module in ["Simulator", "ChatTesting"] {
            let reachable = IsolationTests.closure(of: [module], in: targets)
            #expect(reachable.contains("ClientCore"), "\(module) must link the shipped client driver")
            #expect(reachable.contains("RelayCore"), "\(module) must link the shipped relay policy")
        }
    }

    @Test("No type or function of the Simulator or ChatTesting modules is named for a policy of its own")
    func noPolicyOfItsOwn() throws {
        var checked = 0
        for module in ["Simulator", "ChatTesting"] {
            let directory = packageRoot.appendingPathComponent("Sources/\(module)")
            for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where name.hasSuffix(".swift") {
                let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
                for line in text.split(separator: "\n") {
                    let code = line.split(separator: "//", maxSplits: 1).first.map(String.init) ?? ""
                    let declares = ["func ", "struct ", "class ", "enum ", "protocol "].contains {
                        code.contains($0)
                    }
                    guard declares else { continue }
                    let lowered = code.lowercased()
                    for word in Self.policyWords where lowered.contains(word) {
                        Issue.record("\(module)/\(name) declares something named for a policy (\(word)): \(code)")
                    }
                }
                checked += 1
            }
        }
        #expect(checked >= 15, "read \(checked) files: the sources were not found")
    }

    @Test("The built simulator holds the shipped ClientDriver and RelayEngine, and no policy symbols of its own")
    func builtBinary() throws {
        let nm = URL(fileURLWithPath: "/usr/bin/nm")
        try #require(FileManager.default.isExecutableFile(atPath: nm.path), "nm (binutils) is needed")
        let binary = packageRoot.appendingPathComponent(".build/debug/simulator")
        try #require(
            FileManager.default.isExecutableFile(atPath: binary.path), "build the simulator first (swift build)")
        let (status, symbols) = try runProcess(nm, ["--defined-only", binary.path])
        #expect(status == 0)
        // Mangled names: length-prefixed, with a word the module name already spelled substituted
        // (`0A6Driver` is "Client" + "Driver" in ClientCore, `0E6Engine` "Relay" + "Engine").
        #expect(symbols.contains("10ClientCore0A6DriverC"), "the simulator contains ClientCore's ClientDriver")
        #expect(symbols.contains("9RelayCore0E6EngineV"), "the simulator contains RelayCore's RelayEngine")
        let own = symbols.split(separator: "\n").filter { $0.contains("9Simulator") || $0.contains("11ChatTesting") }
        #expect(own.count > 100, "the simulator's own symbols were found")
        for symbol in own {
            let lowered = symbol.lowercased()
            for word in Self.policyWords where lowered.contains(word) {
                Issue.record("a Simulator or ChatTesting symbol is named for a policy (\(word)): \(symbol)")
            }
        }
    }
}
