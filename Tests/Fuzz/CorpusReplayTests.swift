import Foundation
import FuzzHarness
import Testing

/// Replays the committed libFuzzer corpus and every regression input through the same harness
/// functions the fuzz executables call (FuzzTesting/), without libFuzzer, so every `swift test`
/// run checks them. A harness signals a failure with `precondition`, so a regression here stops the
/// test process with the harness's message, exactly as it crashed the fuzzer.
@Suite("Fuzz corpus and regression replay")
struct CorpusReplayTests {
    static let fuzzTesting = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzTesting")

    /// Every fuzz target (the FuzzTesting executable names).
    static let targets = [
        "FuzzRelayFrame", "FuzzClientFrame", "FuzzRelayRooms", "FuzzSession", "FuzzSessionWorld", "FuzzSOCKSReply",
        "FuzzProxyHeader", "FuzzRESP", "FuzzFiles",
    ]

    /// The harness a target's executable calls.
    static func harness(_ target: String) -> ((UnsafeRawBufferPointer) -> Void)? {
        switch target {
        case "FuzzRelayFrame": fuzzRelayFrame
        case "FuzzClientFrame": fuzzClientFrame
        case "FuzzRelayRooms": fuzzRelayRooms
        case "FuzzSession": fuzzSession
        case "FuzzSessionWorld": fuzzSessionWorld
        case "FuzzSOCKSReply": fuzzSOCKSReply
        case "FuzzProxyHeader": fuzzProxyHeader
        case "FuzzRESP": fuzzRESP
        case "FuzzFiles": fuzzFiles
        default: nil
        }
    }

    /// The input files of one directory, sorted. A missing directory is an error, and so is an
    /// empty one unless `mayBeEmpty`, so that this test can never pass by checking nothing.
    static func inputs(_ kind: String, _ target: String, mayBeEmpty: Bool = false) throws -> [URL] {
        let directory = fuzzTesting.appendingPathComponent(kind).appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { !$0.hasPrefix(".") && !$0.hasSuffix(".md") }.sorted()
        if !mayBeEmpty { try #require(!names.isEmpty, "\(kind)/\(target) is empty") }
        return names.map { directory.appendingPathComponent($0) }
    }

    static func replay(_ kind: String, _ target: String, mayBeEmpty: Bool = false) throws -> Int {
        let harness = try #require(Self.harness(target))
        let files = try inputs(kind, target, mayBeEmpty: mayBeEmpty)
        for file in files {
            let data = try Data(contentsOf: file)
            data.withUnsafeBytes { harness($0) }
        }
        return files.count
    }

    @Test("The seed corpus of every target replays cleanly", arguments: targets)
    func corpus(target: String) throws {
        let count = try Self.replay("Corpus", target)
        #expect(count > 0)
    }

    /// A target whose fuzzer never crashed has an empty Regressions/<target>/ (kept in git by its
    /// README.md); the directory must still exist, and the regressions as a whole must not be empty.
    @Test("Every regression input of every target replays cleanly", arguments: targets)
    func regressions(target: String) throws {
        _ = try Self.replay("Regressions", target, mayBeEmpty: true)
    }

    @Test("FuzzFiles seeds reach a stored file, through tampering, replays, reconnects and hostile messages")
    func fileSeedsComplete() throws {
        for file in try Self.inputs("Corpus", "FuzzFiles") {
            let data = try Data(contentsOf: file)
            #expect(data.withUnsafeBytes { fuzzFilesStored($0) }, "\(file.lastPathComponent)")
        }
        // Genuine chunks never answered: nothing stored (the window stops the sender).
        let unanswered = [UInt8](repeating: 0, count: 0) + (0..<8).flatMap { _ in [UInt8(4), 0, 0] }
        #expect(!unanswered.withUnsafeBytes { fuzzFilesStored($0) })
    }

    @Test("The regression corpus is not empty")
    func regressionsExist() throws {
        let total = try Self.targets.reduce(0) { $0 + (try Self.inputs("Regressions", $1, mayBeEmpty: true).count) }
        #expect(total > 0)
    }

    @Test("The libFuzzer dictionary exists and every entry is a quoted token")
    func dictionary() throws {
        let text = try String(contentsOf: Self.fuzzTesting.appendingPathComponent("protocol.dict"), encoding: .utf8)
        let entries = text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
        #expect(entries.count > 20)
        for entry in entries {
            #expect(entry.contains("=\"") && entry.hasSuffix("\""), "malformed dictionary line: \(entry)")
        }
    }
}
