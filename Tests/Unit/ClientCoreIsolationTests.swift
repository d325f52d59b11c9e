import Foundation
import Testing

/// ClientCore is what the simulator runs as the shipped client: it must take time, randomness and
/// the environment only through its inputs. This reads its sources for anything that would reach
/// past them.
@Suite("ClientCore stays sans-IO")
struct ClientCoreIsolationTests {
    /// What a sans-IO module must not contain: a module other than ChatCore, a clock, the process
    /// environment, a terminal, a global random source, a file.
    static let forbidden = [
        "getenv", "setenv", "environ", "ProcessInfo", "clock_gettime", "ContinuousClock", "SuspendingClock",
        "DispatchTime", "Date(", "SystemEntropy", ".random(", "SystemRandomNumberGenerator", "isatty", "fopen",
        "FileHandle", "Thread", "usleep", "sleep(",
    ]

    /// The problems in one source file's text, as readable findings.
    static func violations(in text: String) -> [String] {
        var found: [String] = []
        for line in text.split(separator: "\n") {
            let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = code.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("import ") || trimmed.contains(" import ") {
                if trimmed != "import ChatCore" { found.append(trimmed) }
                continue
            }
            for word in forbidden where code.contains(word) { found.append("\(word) in: \(trimmed)") }
        }
        return found
    }

    @Test("Every ClientCore source imports only ChatCore and reads no clock, environment, terminal or random source")
    func sources() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/ClientCore")
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "swift" }
        #expect(files.count >= 8, "found \(files.count) sources in \(directory.path)")
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            #expect(Self.violations(in: text).isEmpty, "\(file.lastPathComponent): \(Self.violations(in: text))")
        }
    }

    @Test("The check finds a C library, NIO, the environment and a clock; comments do not count")
    func checkerFinds() {
        let text = """
            import ChatCore
            import Glibc
            import NIOCore
            let peer = getenv("SECURECHAT_PEER_COMMAND")  // getenv is named in comments too
            let now = ContinuousClock.now
            // A comment may say clock_gettime.
            """
        #expect(Self.violations(in: text) == [
            "import Glibc", "import NIOCore", "getenv in: let peer = getenv(\"SECURECHAT_PEER_COMMAND\")",
            "ContinuousClock in: let now = ContinuousClock.now",
        ])
    }
}
