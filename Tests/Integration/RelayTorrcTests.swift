import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// docs/RELAY.md's torrc for running the relay as an onion service, checked with Debian's real
/// `tor`: the block is taken from the document itself, so the document cannot drift from what works.
/// Tor runs with networking off (`DisableNetwork 1`): it sends nothing anywhere, yet it still
/// creates the onion service's keys and address, which is what the torrc is for.
@Suite("The onion-service torrc in docs/RELAY.md")
struct RelayTorrcTests {
    static let tor = "/usr/sbin/tor"
    static let relayDocument = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/RELAY.md")

    /// The torrc lines of the document: the fenced block that holds `HiddenServiceDir`.
    static func documentedTorrc() throws -> [String] {
        let text = try String(contentsOf: relayDocument, encoding: .utf8)
        let blocks = text.components(separatedBy: "```").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        let block = try #require(blocks.first { $0.contains("HiddenServiceDir") }, "no torrc block in RELAY.md")
        return block.split(separator: "\n").map(String.init)
    }

    /// The documented torrc with the test's own directories, networking off and no SOCKS port.
    static func testTorrc(_ lines: [String], directory: URL) -> String {
        let adapted = lines.map { line in
            line.hasPrefix("HiddenServiceDir ")
                ? "HiddenServiceDir " + directory.appendingPathComponent("service").path : line
        }
        return (adapted + [
            "DataDirectory " + directory.appendingPathComponent("data").path,
            "DisableNetwork 1",
            "SocksPort 0",
            "Log notice stdout",
        ]).joined(separator: "\n") + "\n"
    }

    @Test("tor accepts the documented torrc, and run with networking off it creates the onion address")
    func torrcWorks() async throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: Self.tor), "no \(Self.tor): run scripts/install-deps.sh")
        let lines = try Self.documentedTorrc()
        // The service forwards to a relay on loopback, never to a public address.
        let ports = lines.filter { $0.hasPrefix("HiddenServicePort ") }
        #expect(ports.count == 1 && ports[0].hasSuffix(" 127.0.0.1:8080"), "\(ports)")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("torrc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let torrc = directory.appendingPathComponent("torrc")
        try Self.testTorrc(lines, directory: directory).write(to: torrc, atomically: true, encoding: .utf8)

        let check = try TestProcess(
            "tor", arguments: ["--verify-config", "-f", torrc.path], executableURL: URL(fileURLWithPath: Self.tor))
        #expect(try await check.waitForExit() == 0, "tor --verify-config: \(check.stdout.all.suffix(5))")

        let tor = try TestProcess("tor", arguments: ["-f", torrc.path], executableURL: URL(fileURLWithPath: Self.tor))
        defer { Task { await tor.kill() } }
        let hostname = directory.appendingPathComponent("service/hostname")
        var address: String?
        // Bounded: 30 s at 100 ms.
        for _ in 0..<300 where address == nil && tor.isRunning {
            address = (try? String(contentsOf: hostname, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if address == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let onion = try #require(address, "tor wrote no onion address; its log:\n\(tor.stdout.all.suffix(10))")
        // A v3 onion address: 56 base32 characters (the service's public key, checksum, version 3).
        let label = onion.dropLast(".onion".count)
        #expect(onion.hasSuffix(".onion") && label.count == 56, "\(onion)")
        #expect(label.allSatisfy { ("a"..."z").contains($0) || ("2"..."7").contains($0) }, "\(onion)")
        #expect(label.last == "d", "version 3 addresses end in 'd': \(onion)")
        await tor.kill()
    }
}
