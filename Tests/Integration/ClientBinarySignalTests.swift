import Foundation
import Testing

/// Real `securechat` processes through a real relay with binary SIGNALs (docs/PROTOCOL.md, "Binary
/// SIGNALs"): a client that negotiates them and one that sends JSON text only (`--text-signals`,
/// as a client from before them) exchange files both ways, every byte checked; two binary
/// clients do too, and the relay converts nothing between them.
@Suite("securechat: binary SIGNALs between real clients")
struct ClientBinarySignalTests {
    typealias Files = ClientFileTransferTests

    /// Alice and Bob each send a file to the other at once through `relay`; both exit 0 and both
    /// files arrive intact. `bobArguments`: Bob's extra flags.
    static func exchange(_ relay: RelayProcess, bobArguments: [String], name: String) async throws {
        let base = try Files.directory(name)
        defer { try? FileManager.default.removeItem(at: base) }
        let (aliceIn, bobIn, fromAlice, fromBob) = try Files.twoWayFiles(
            base, aliceBytes: 3 * 1024 * 1024 + 777, bobBytes: 2 * 1024 * 1024 + 5)
        let room = uniqueRoom("BINFILE")
        let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json", "--send", fromAlice.path,
                                                "--accept-files", aliceIn.path])
        let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--send", fromBob.path,
                                            "--accept-files", bobIn.path] + bobArguments)
        try alice.closeInput()
        try bob.closeInput()
        #expect(try await alice.waitForExit(timeoutSeconds: Files.waitSeconds) == 0, "\(alice.stderr.all.suffix(10))")
        #expect(try await bob.waitForExit(timeoutSeconds: Files.waitSeconds) == 0, "\(bob.stderr.all.suffix(10))")
        for (source, target) in [(fromAlice, bobIn), (fromBob, aliceIn)] {
            let stored = target.appendingPathComponent(source.lastPathComponent)
            #expect(try Files.listing(target) == [source.lastPathComponent])
            #expect(try Data(contentsOf: stored) == Data(contentsOf: source), "\(source.lastPathComponent)")
        }
    }

    @Test("A binary client and a text-only client exchange files both ways; the relay converts for the text one")
    func binaryAndTextClients() async throws {
        try await withRelay(Files.fastRelay) { relay in
            try await Self.exchange(relay, bobArguments: ["--text-signals"], name: "mixed")
            #expect(try await relay.metric("relay_binary_signals_received_total") ?? 0 > 0)
            #expect(try await relay.metric("relay_signals_converted_total") ?? 0 > 0)
        }
    }

    @Test("Two binary clients exchange files both ways; all but JOINs and keyed openings go binary, none converted")
    func binaryClients() async throws {
        try await withRelay(Files.fastRelay) { relay in
            try await Self.exchange(relay, bobArguments: [], name: "binary")
            let binary = try await relay.metric("relay_binary_signals_received_total") ?? 0
            let frames = try await relay.metric("relay_frames_received_total") ?? 0
            // Only the JOINs and the X25519 openings (a `key` field) are text, and their retransmissions.
            #expect(binary > 0 && binary >= 10 * (frames - binary), "binary \(binary) of \(frames)")
            #expect(try await relay.metric("relay_signals_converted_total") ?? 0 == 0)
        }
    }
}
