import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Two real `securechat` processes in pipe mode against a real relay on loopback.
@Suite("securechat pipe mode against a real relay")
struct ClientPipeTests {
    @Test("Both reach CONNECTED and exchange messages both ways, verified line by line (JSON and plain)")
    func exchangeBothWays() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("PIPE")
            let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json"])
            // Bob types the code in lower case and reads plain lines.
            let bob = try ClientProcess("bob", [room.lowercased(), "--relay", relay.url])
            try await alice.state("CONNECTED")
            let bobConnected = try await bob.stderr.first(timeoutSeconds: 30) { $0 == "securechat: state CONNECTED" }
            #expect(bobConnected != nil, "bob: \(bob.stderr.all)")

            let fromAlice = ["one from alice", "two: ünïcödé ✓", "three with an escape \u{1B}[2J inside"]
            let fromBob = ["one from bob", "two from bob", "three from bob"]
            for line in fromAlice { try alice.type(line) }
            for line in fromBob { try bob.type(line) }

            let aliceReceived = try await alice.messages(count: fromBob.count)
            #expect(aliceReceived == fromBob)
            // Bob's stdout holds exactly the messages, one line each, the escape made visible.
            _ = try await bob.stdout.first(timeoutSeconds: 30) { $0.hasPrefix("three with") }
            #expect(bob.stdout.all == ["one from alice", "two: ünïcödé ✓", "three with an escape ␛ inside"])
            // The peer confirmed all three of Alice's messages.
            try await alice.event("delivery of message 3") {
                $0["event"] as? String == "delivered" && (($0["ids"] as? [Int]) ?? []).contains(3)
            }
            // No core dumps for the client process.
            let limits = try String(contentsOfFile: "/proc/\(alice.processIdentifier)/limits", encoding: .utf8)
            let coreLine = limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") }
            #expect(coreLine.map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).prefix(2) }
                .map(Array.init) == ["0", "0"], "\(String(describing: coreLine))")

            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit() == 0)
            #expect(try await bob.waitForExit() == 0)
            #expect(alice.events.last?["event"] as? String == "exit")
            #expect(alice.events.last?["code"] as? Int == 0)
        }
    }

    @Test("A peer quits: the other is told, and keeps waiting until it is told to stop")
    func peerQuits() async throws {
        try await withRelay { relay in
            let (alice, bob) = try await connectedPair(relay, room: uniqueRoom("QUIT"))
            try bob.closeInput()
            #expect(try await bob.waitForExit() == 0)
            try await alice.notice("peer_left")
            try await alice.state("DISCONNECTED")
            // SIGTERM: the session ends (keys wiped) and the status says which signal.
            alice.send(signal: SIGTERM)
            #expect(try await alice.waitForExit() == 128 + SIGTERM)
            #expect(alice.events.contains { $0["event"] as? String == "state" && $0["to"] as? String == "DESTROYED" })
        }
    }

    @Test("A third client in a full room is refused and exits 2")
    func roomFull() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("FULL")
            let (alice, bob) = try await connectedPair(relay, room: room)
            let carol = try ClientProcess("carol", [room, "--relay", relay.url, "--json"])
            try await carol.event("the room-full error") {
                $0["event"] as? String == "error" && $0["kind"] as? String == "relay_error"
                    && ($0["text"] as? String ?? "").hasPrefix("the room already has two people in it")
            }
            #expect(try await carol.waitForExit() == 2)
            await alice.kill()
            await bob.kill()
        }
    }

    @Test("Messages typed before the peer arrives are queued, then delivered; end of input drains them")
    func queuedBeforePeer() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("EARLY")
            let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json"])
            try alice.type("sent before anyone was there")
            try alice.closeInput()
            try await alice.event("queued") { $0["event"] as? String == "sent" && $0["queued"] as? Bool == true }
            try await alice.notice("draining")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json"])
            #expect(try await bob.messages(count: 1) == ["sent before anyone was there"])
            #expect(try await alice.waitForExit() == 0)
            await bob.kill()
        }
    }

    @Test("A burst past the relay's rate limit, then end of input: every message is confirmed on both sides")
    func burstThenLeave() async throws {
        // A small budget, so that the burst is held by the relay and both leave while their last
        // acknowledgements are still in its queue: the close must wait behind them.
        try await withRelay(["--messages-per-second", "20", "--message-burst", "10"]) { relay in
            let (alice, bob) = try await connectedPair(relay, room: uniqueRoom("BURST"), extra: ["--drain-timeout", "20"])
            let count = 40
            for index in 1...count {
                try alice.type("alice \(index)")
                try bob.type("bob \(index)")
            }
            #expect(try await bob.messages(count: count, timeoutSeconds: 60) == (1...count).map { "alice \($0)" })
            #expect(try await alice.messages(count: count, timeoutSeconds: 60) == (1...count).map { "bob \($0)" })
            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit(timeoutSeconds: 60) == 0)
            #expect(try await bob.waitForExit(timeoutSeconds: 60) == 0)
            for client in [alice, bob] {
                let confirmed = client.events.filter { $0["event"] as? String == "delivered" }
                    .flatMap { ($0["ids"] as? [Int]) ?? [] }
                #expect(confirmed.sorted() == Array(1...count),
                        "\(client.name) confirmed \(confirmed.count): \(client.stdout.all.suffix(12).joined(separator: "\n"))")
                #expect(!client.events.contains { $0["event"] as? String == "undeliverable" }, "\(client.name)")
            }
        }
    }

    @Test("securechat --help lists exactly its options, each as a whole word")
    func helpOptionsExact() async throws {
        let help = try TestProcess("securechat", arguments: ["--help"])
        #expect(try await help.waitForExit() == 0)
        // The exit can be seen before the pipe's last bytes are read: wait for the last option.
        _ = try await help.stdout.first(timeoutSeconds: 10) { $0.contains("-h, --help") }
        let listed = helpOptions(help.stdout.all.joined(separator: "\n"))
        let expected: Set<String> = [
            "--password", "--relay", "--ca-file", "--json", "--give-up-after", "--drain-timeout", "--keepalive",
            "--join", "--verbose", "--require-locked-memory", "--proxy", "--tor", "--version", "--help", "-h",
            "--send", "--accept-files", "--max-file-bytes",
        ]
        #expect(listed == expected,
                "missing \(expected.subtracting(listed).sorted()), unexpected \(listed.subtracting(expected).sorted())")
    }
}
