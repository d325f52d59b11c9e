import ChatCore
import Foundation
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
import TestSupport
#endif

/// File transfer between real `securechat` processes through a real relay (pipe mode), and from
/// a modified peer (the real session and transfer code with a hostile name) to a real client.
@Suite("securechat file transfer against a real relay", .heavy)
struct ClientFileTransferTests {
    /// A relay whose per-connection rate does not stretch a 20 MiB test over half a minute; the
    /// default relay's throughput is measured in BENCHMARKS.md, not here.
    static let fastRelay = [
        "--bytes-per-second", "268435456", "--byte-burst", "268435456",
        "--messages-per-second", "100000", "--message-burst", "100000",
    ]

    /// A fresh directory under the system's temporary directory.
    static func directory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("securechat-files-\(name)-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func randomFile(at url: URL, bytes: Int) throws {
        var generator = SystemRandomNumberGenerator()
        var data = Data(count: bytes)
        data.withUnsafeMutableBytes { buffer in
            let words = buffer.bindMemory(to: UInt64.self)
            for index in words.indices { words[index] = generator.next() }
        }
        try data.write(to: url)
    }

    /// BLAKE2b-256 by coreutils' `b2sum`, an implementation independent of the client's.
    static func b2sum(_ url: URL) async throws -> String {
        let process = try TestProcess("b2sum", arguments: ["-l", "256", url.path],
                                      executableURL: URL(fileURLWithPath: "/usr/bin/b2sum"))
        #expect(try await process.waitForExit() == 0)
        let line = try await process.stdout.first(timeoutSeconds: 10) { !$0.isEmpty }
        return String(line?.split(separator: " ").first ?? "")
    }

    /// The `.part` a receiver writes `name` into when it is offered with `bytes`
    /// (`SafeFileName.partName`: the tag binds it to that file's hash, or for a file longer than the
    /// client's hash slice, 4 MiB, offered before it is hashed, to the hash of its first 4 MiB).
    static func partName(_ name: String, bytes: [UInt8]) -> String {
        let hasher = FileHasher()
        hasher.update(Array(bytes.prefix(4 << 20)))
        let tag = SafeFileName.partTag(fileHash: hasher.finish(), sizeBytes: UInt64(bytes.count))
        return SafeFileName.partName(name, index: 0, tag: tag)
    }

    static func listing(_ url: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
    }

    /// How long a test waits for a transfer to reach a point. Only a guard against a hang: the debug
    /// clients need a core each, and in the whole suite's parallel run they get a fraction of one.
    static let waitSeconds: Double = 180

    static func event(_ client: ClientProcess, _ name: String) -> [[String: Any]] {
        client.events.filter { $0["event"] as? String == name }
    }

    /// Under `base`: each side's download directory and a random file of the given size to send.
    static func twoWayFiles(_ base: URL, aliceBytes: Int, bobBytes: Int) throws
        -> (aliceIn: URL, bobIn: URL, fromAlice: URL, fromBob: URL)
    {
        let aliceIn = base.appendingPathComponent("alice-in")
        let bobIn = base.appendingPathComponent("bob-in")
        for url in [aliceIn, bobIn] { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        let fromAlice = base.appendingPathComponent("from-alice.bin")
        let fromBob = base.appendingPathComponent("from-bob.bin")
        try randomFile(at: fromAlice, bytes: aliceBytes)
        try randomFile(at: fromBob, bytes: bobBytes)
        return (aliceIn, bobIn, fromAlice, fromBob)
    }

    @Test("A 20 MiB file each way at once: both stored under their names, BLAKE2b-256 checked, both exit 0")
    func bothWays() async throws {
        let base = try Self.directory("both")
        defer { try? FileManager.default.removeItem(at: base) }
        let (aliceIn, bobIn, fromAlice, fromBob) = try Self.twoWayFiles(
            base, aliceBytes: 20 * 1024 * 1024 + 12_345, bobBytes: 20 * 1024 * 1024)
        try await withRelay(Self.fastRelay) { relay in
            let room = uniqueRoom("FILES")
            let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json", "--send", fromAlice.path,
                                                    "--accept-files", aliceIn.path])
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--send", fromBob.path,
                                                "--accept-files", bobIn.path])
            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit(timeoutSeconds: Self.waitSeconds) == 0, "\(alice.stderr.all.suffix(10))")
            #expect(try await bob.waitForExit(timeoutSeconds: Self.waitSeconds) == 0, "\(bob.stderr.all.suffix(10))")
            for (client, source, target) in [(alice, fromAlice, bobIn), (bob, fromBob, aliceIn)] {
                let stored = target.appendingPathComponent(source.lastPathComponent)
                #expect(try Self.listing(target) == [source.lastPathComponent])
                #expect(try Data(contentsOf: stored) == Data(contentsOf: source))
                let expected = try await Self.b2sum(source)
                let done = Self.event(client, "file_done")
                #expect(done.count == 2, "\(client.name): \(done)")
                #expect(done.allSatisfy { $0["hash"] as? String == expected || $0["direction"] as? String == "incoming" })
                #expect(Self.event(client, "file_failed").isEmpty)
                // Over 4 MiB: offered before it was hashed; the hash followed, on both sides.
                let offers = Self.event(client, "file_offer")
                #expect(offers.count == 2 && offers.allSatisfy { $0["hash_follows"] as? Bool == true && $0["hash"] == nil })
                let hashes = Self.event(client, "file_hash")
                #expect(hashes.count == 2 && hashes.allSatisfy { $0["hash"] as? String != nil })
                #expect(hashes.contains { $0["direction"] as? String == "outgoing" && $0["hash"] as? String == expected })
                // Progress: at most 4 a second per transfer, never backwards.
                for direction in ["outgoing", "incoming"] {
                    let bytes = Self.event(client, "file_progress")
                        .filter { $0["direction"] as? String == direction }.compactMap { $0["bytes"] as? Int }
                    #expect(!bytes.isEmpty && bytes == bytes.sorted(), "\(client.name) \(direction)")
                }
            }
            let aliceStored = Self.event(bob, "file_done").first { $0["direction"] as? String == "incoming" }
            #expect(aliceStored?["hash"] as? String == (try await Self.b2sum(fromAlice)))
            #expect(aliceStored?["path"] as? String == bobIn.appendingPathComponent("from-alice.bin").path)
        }
    }

    @Test("The relay killed (-9) half-way through a transfer and restarted: it completes, under 5% of the file sent again")
    func relayRestart() async throws {
        let base = try Self.directory("restart")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let source = base.appendingPathComponent("big.bin")
        let size = 40 * 1024 * 1024
        try Self.randomFile(at: source, bytes: size)
        // Slow enough (8 MiB/s) that the kill lands mid-transfer.
        let limits = ["--bytes-per-second", "8388608", "--byte-burst", "1048576", "--messages-per-second", "1000",
                      "--message-burst", "1000", "--no-paired-allowance"]
        let first = try await RelayProcess.start(limits)
        defer { Task { await first.kill() } }
        let room = uniqueRoom("RESTART")
        let bob = try ClientProcess("bob", [room, "--relay", first.url, "--json", "--accept-files", inbox.path])
        let alice = try ClientProcess("alice", [room, "--relay", first.url, "--json", "--send", source.path,
                                                "--drain-timeout", "60"])
        try alice.closeInput()
        // Half acknowledged (the issue's "resume after a relay restart at 50%").
        let before = try await alice.event("half acknowledged", timeoutSeconds: Self.waitSeconds) {
            $0["event"] as? String == "file_progress" && ($0["bytes"] as? Int ?? 0) >= size / 2
        }
        await first.kill()  // SIGKILL: chunks in flight are lost with it.
        try await alice.notice("relay_lost")
        let second = try await RelayProcess.start(["--port", String(first.port)] + limits)
        defer { Task { await second.kill() } }
        #expect(try await alice.waitForExit(timeoutSeconds: 120) == 0, "\(alice.stderr.all.suffix(10))")
        try bob.closeInput()
        #expect(try await bob.waitForExit(timeoutSeconds: 60) == 0)
        #expect(try Data(contentsOf: inbox.appendingPathComponent("big.bin")) == Data(contentsOf: source))
        // Progress never went back below what was acknowledged before the kill...
        let acknowledged = Self.event(alice, "file_progress").compactMap { $0["bytes"] as? Int }
        #expect(acknowledged == acknowledged.sorted() && acknowledged.contains { $0 >= before["bytes"] as? Int ?? 0 })
        // ...and what was sent again is at most the window in flight at the kill (8 chunks of 94 KiB,
        // 1.8% of the file), not the file.
        let configuration = FileTransferConfiguration()
        let done = Self.event(alice, "file_done").first
        let resent = done?["chunks_resent"] as? Int ?? -1
        #expect(resent >= 0 && resent <= configuration.windowChunks, "\(String(describing: done))")
        #expect(resent * configuration.chunkBytes < size / 20)
    }

    @Test("Chat during a transfer: lines typed both ways while a 40 MiB file moves arrive before a tenth more of it has")
    func chatDuringTransfer() async throws {
        let base = try Self.directory("chat")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let source = base.appendingPathComponent("big.bin")
        let size = 40 * 1024 * 1024
        try Self.randomFile(at: source, bytes: size)
        // 8 MiB/s per connection: the file takes about 5 s, so "a tenth more" is about half a second
        // (measured: 1.1-1.3 MB, about the window in flight). The chunks fill the relay's queue
        // towards Bob; a chat line must not wait behind the file.
        let limits = ["--bytes-per-second", "8388608", "--byte-burst", "1048576", "--messages-per-second", "1000",
                      "--message-burst", "1000", "--no-paired-allowance"]
        try await withRelay(limits) { relay in
            let room = uniqueRoom("CHATFILE")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--accept-files", inbox.path])
            let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json", "--send", source.path,
                                                    "--drain-timeout", "60"])
            for (round, typist, reader) in [(1, alice, bob), (2, bob, alice)] {
                let started = try await typist.event("transfer under way", timeoutSeconds: Self.waitSeconds) {
                    $0["event"] as? String == "file_progress" && ($0["bytes"] as? Int ?? 0) >= size * round / 5
                }
                try typist.type("line \(round) typed at \(started["bytes"] ?? 0) bytes")
                _ = try await reader.messages(count: 1, timeoutSeconds: 30)
                // Where the file stood when the line arrived: the reader's own progress, in its event order.
                let events = reader.events
                let arrived = events.firstIndex { $0["event"] as? String == "message" } ?? events.count
                let progress = events[..<arrived].filter { $0["event"] as? String == "file_progress" }
                    .compactMap { $0["bytes"] as? Int }.max() ?? 0
                #expect(!events[..<arrived].contains { $0["event"] as? String == "file_done" })
                #expect(progress < size * round / 5 + size / 10, "line \(round) arrived at \(progress) of \(size) bytes")
            }
            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit(timeoutSeconds: 120) == 0, "\(alice.stderr.all.suffix(10))")
            #expect(try await bob.waitForExit(timeoutSeconds: 60) == 0)
            #expect(try Data(contentsOf: inbox.appendingPathComponent("big.bin")) == Data(contentsOf: source))
            #expect(alice.messageTexts.count == 1 && bob.messageTexts.count == 1)
        }
    }

    @Test("The receiver killed (SIGKILL) or stopped (SIGTERM) mid-transfer; the file offered again in a new session resumes from its .part",
          arguments: [SIGKILL, SIGTERM])
    func resumeAfterReceiverKilled(signal: Int32) async throws {
        let base = try Self.directory("resume")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let source = base.appendingPathComponent("big.bin")
        let size = 20 * 1024 * 1024
        try Self.randomFile(at: source, bytes: size)
        // 4 MiB/s: the first session takes about 5 s, long enough to kill the receiver past half.
        let limits = ["--bytes-per-second", "4194304", "--byte-burst", "1048576", "--no-paired-allowance"]
        try await withRelay(limits) { relay in
            let room = uniqueRoom("RESUME")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--accept-files", inbox.path])
            let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json", "--send", source.path])
            try alice.closeInput()
            let written = try await bob.event("more than half written", timeoutSeconds: Self.waitSeconds) {
                $0["event"] as? String == "file_progress" && ($0["bytes"] as? Int ?? 0) >= size * 55 / 100
            }
            bob.send(signal: signal)
            #expect(try await bob.waitForExit() == 128 + signal || signal == SIGKILL)
            await alice.kill()
            let partName = Self.partName("big.bin", bytes: [UInt8](try Data(contentsOf: source)))
            #expect(try Self.listing(inbox) == [partName])
            let part = inbox.appendingPathComponent(partName).path
            let kept = try FileManager.default.attributesOfItem(atPath: part)
            #expect((kept[.size] as? Int ?? 0) >= written["bytes"] as? Int ?? size)
            // A new session: both processes new, the same file offered again.
            let newRoom = uniqueRoom("RESUME")
            let bob2 = try ClientProcess(
                "bob2", [newRoom, "--relay", relay.url, "--json", "--accept-files", inbox.path])
            let alice2 = try ClientProcess("alice2", [newRoom, "--relay", relay.url, "--json", "--send", source.path])
            try alice2.closeInput()
            #expect(try await alice2.waitForExit(timeoutSeconds: 120) == 0, "\(alice2.stderr.all.suffix(10))")
            try bob2.closeInput()
            #expect(try await bob2.waitForExit(timeoutSeconds: 60) == 0)
            #expect(try Self.listing(inbox) == ["big.bin"])
            #expect(try Data(contentsOf: inbox.appendingPathComponent("big.bin")) == Data(contentsOf: source))
            let expected = try await Self.b2sum(source)
            let stored = Self.event(bob2, "file_done").first
            #expect(stored?["hash"] as? String == expected && stored?["direction"] as? String == "incoming")
            // Both sides say where it resumed; the sender sent less than half the file again.
            let resumed = Self.event(alice2, "file_resumed").first?["bytes"] as? Int ?? 0
            #expect(Self.event(bob2, "file_resumed").first?["bytes"] as? Int == resumed)
            #expect(resumed >= size / 2, "resumed from \(resumed)")
            let done = Self.event(alice2, "file_done").first
            let resent = done?["chunks_resent"] as? Int ?? -1
            let chunkBytes = FileTransferConfiguration().chunkBytes
            #expect(resent >= 0 && size - resumed + resent * chunkBytes < size / 2, "\(String(describing: done))")
            let progress = Self.event(alice2, "file_progress").compactMap { $0["bytes"] as? Int }
            #expect(progress.allSatisfy { $0 > resumed } && progress == progress.sorted())
        }
    }

    @Test("The sender killed (-9) mid-transfer and started again in the room: the receiver resumes from its .part")
    func resumeAfterSenderKilled() async throws {
        let base = try Self.directory("resume-sender")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let source = base.appendingPathComponent("big.bin")
        let size = 20 * 1024 * 1024
        try Self.randomFile(at: source, bytes: size)
        // No seat reserved for the killed sender: its new process takes the seat at once.
        let limits = ["--bytes-per-second", "4194304", "--byte-burst", "1048576", "--no-paired-allowance",
                      "--seat-grace-seconds", "0"]
        try await withRelay(limits) { relay in
            let room = uniqueRoom("RESUMES")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--accept-files", inbox.path])
            let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json", "--send", source.path])
            try alice.closeInput()
            try await bob.event("more than half written", timeoutSeconds: Self.waitSeconds) {
                $0["event"] as? String == "file_progress" && ($0["bytes"] as? Int ?? 0) >= size * 55 / 100
            }
            alice.send(signal: SIGKILL)
            _ = try await alice.waitForExit()
            // The same receiver, a new sender process: a new handshake (the peer restarted).
            let alice2 = try ClientProcess("alice2", [room, "--relay", relay.url, "--json", "--send", source.path])
            try alice2.closeInput()
            #expect(try await alice2.waitForExit(timeoutSeconds: 120) == 0, "\(alice2.stderr.all.suffix(10))")
            try await bob.event("the file stored") {
                $0["event"] as? String == "file_done" && $0["direction"] as? String == "incoming"
            }
            try bob.closeInput()
            _ = try await bob.waitForExit(timeoutSeconds: 60)
            #expect(try Self.listing(inbox) == ["big.bin"])
            #expect(try Data(contentsOf: inbox.appendingPathComponent("big.bin")) == Data(contentsOf: source))
            #expect(Self.event(bob, "file_failed").first?["reason"] as? String == "peer_changed")
            let resumed = Self.event(alice2, "file_resumed").first?["bytes"] as? Int ?? 0
            #expect(Self.event(bob, "file_resumed").first?["bytes"] as? Int == resumed)
            #expect(resumed >= size / 2, "resumed from \(resumed)")
        }
    }

    @Test("Terminal: /accept DIR takes the peer's file with a progress line; /send PATH offers one")
    func terminalSendAndAccept() async throws {
        let base = try Self.directory("tty")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        let bobInbox = base.appendingPathComponent("bob-inbox")
        for url in [inbox, bobInbox] { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        let fromBob = base.appendingPathComponent("from-bob.bin")
        let fromAlice = base.appendingPathComponent("from-alice.txt")
        try Self.randomFile(at: fromBob, bytes: 12 * 1024 * 1024)
        try Data("a short file from the terminal\n".utf8).write(to: fromAlice)
        // 2 MiB/s: the 12 MiB transfer takes several seconds, long enough to see its progress.
        try await withRelay(["--bytes-per-second", "2097152", "--byte-burst", "1048576", "--no-paired-allowance"]) { relay in
            let room = uniqueRoom("TTYFILE")
            let tmux = ClientTerminalTests.Tmux()
            defer { tmux.kill() }
            try tmux.start("LANG=C.UTF-8 NO_COLOR=1 '\(ClientTerminalTests.Tmux.securechat)' \(room) --relay \(relay.url); "
                + "echo EXIT=$?; sleep 120", columns: 160)
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--send", fromBob.path,
                                                "--accept-files", bobInbox.path])
            try await tmux.waitForScreen("CONNECTED") { $0.contains { $0.hasPrefix(" CONNECTED |") } }
            try await tmux.waitForScreen("the offer") { $0.contains { $0.contains("the peer offers \"from-bob.bin\"") } }
            try tmux.keys("/accept \(inbox.path)")
            try tmux.key("Enter")
            try await tmux.waitForScreen("the progress line") { screen in
                screen.contains { $0.hasPrefix(" CONNECTED |") && $0.contains("receiving from-bob.bin") && $0.contains("%") }
            }
            try await tmux.waitForScreen("the file received", timeoutSeconds: Self.waitSeconds) { screen in
                screen.contains { $0.contains("received \"from-bob.bin\" as \(inbox.path)/from-bob.bin") }
            }
            #expect(try Data(contentsOf: inbox.appendingPathComponent("from-bob.bin")) == Data(contentsOf: fromBob))
            try await bob.event("bob's file confirmed") {
                $0["event"] as? String == "file_done" && $0["direction"] as? String == "outgoing"
            }
            try tmux.keys("/send \(fromAlice.path)")
            try tmux.key("Enter")
            try await bob.event("alice's file stored") {
                $0["event"] as? String == "file_done" && $0["direction"] as? String == "incoming"
            }
            try await tmux.waitForScreen("the send confirmed") { $0.contains { $0.contains("sent \"from-alice.txt\"") } }
            #expect(try Data(contentsOf: bobInbox.appendingPathComponent("from-alice.txt")) == Data(contentsOf: fromAlice))
            try tmux.keys("/quit")
            try tmux.key("Enter")
            try await tmux.waitForScreen("the exit") { $0.contains("EXIT=0") }
            await bob.kill()
        }
    }

    @Test("Cancel mid-transfer from the terminal, as receiver then as sender: the peer reports cancelled_by_peer, no .part is left, chat goes on")
    func terminalCancel() async throws {
        let base = try Self.directory("cancel")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        let bobInbox = base.appendingPathComponent("bob-inbox")
        for url in [inbox, bobInbox] { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        let fromBob = base.appendingPathComponent("from-bob.bin")
        let fromAlice = base.appendingPathComponent("from-alice.bin")
        try Self.randomFile(at: fromBob, bytes: 12 * 1024 * 1024)
        try Self.randomFile(at: fromAlice, bytes: 12 * 1024 * 1024)
        // 2 MiB/s: each 12 MiB transfer takes several seconds, so the cancel lands mid-transfer.
        try await withRelay(["--bytes-per-second", "2097152", "--byte-burst", "1048576", "--no-paired-allowance"]) { relay in
            let room = uniqueRoom("TTYCANCEL")
            let tmux = ClientTerminalTests.Tmux()
            defer { tmux.kill() }
            try tmux.start("LANG=C.UTF-8 NO_COLOR=1 '\(ClientTerminalTests.Tmux.securechat)' \(room) --relay \(relay.url); "
                + "echo EXIT=$?; sleep 120", columns: 160)
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--send", fromBob.path,
                                                "--accept-files", bobInbox.path])
            try await tmux.waitForScreen("the offer") { $0.contains { $0.contains("the peer offers \"from-bob.bin\"") } }
            try tmux.keys("/accept \(inbox.path)")
            try tmux.key("Enter")
            try await bob.event("bob's file under way") {
                $0["event"] as? String == "file_progress" && ($0["bytes"] as? Int ?? 0) > 0
            }
            try tmux.keys("/cancel")
            try tmux.key("Enter")
            try await tmux.waitForScreen("the receiver's cancel") { screen in
                screen.contains { $0.contains("receiving \"from-bob.bin\" failed: cancelled") }
            }
            let bobSent = try await bob.event("bob told") {
                $0["event"] as? String == "file_failed" && $0["direction"] as? String == "outgoing"
            }
            #expect(bobSent["reason"] as? String == "cancelled_by_peer")
            // Now Alice sends, and cancels her own transfer once Bob has some of it.
            try tmux.keys("/send \(fromAlice.path)")
            try tmux.key("Enter")
            try await bob.event("alice's file under way") {
                $0["event"] as? String == "file_progress" && $0["direction"] as? String == "incoming"
                    && ($0["bytes"] as? Int ?? 0) > 0
            }
            try tmux.keys("/cancel")
            try tmux.key("Enter")
            let bobReceived = try await bob.event("bob told of alice's cancel") {
                $0["event"] as? String == "file_failed" && $0["direction"] as? String == "incoming"
            }
            #expect(bobReceived["reason"] as? String == "cancelled_by_peer")
            #expect(try Self.listing(inbox).isEmpty && Self.listing(bobInbox).isEmpty)
            #expect(Self.event(bob, "file_done").isEmpty)
            // The chat itself is untouched.
            try tmux.keys("still here")
            try tmux.key("Enter")
            #expect(try await bob.messages(count: 1) == ["still here"])
            try bob.closeInput()
            #expect(try await bob.waitForExit() == 8)  // A transfer of its own was cancelled.
            try tmux.keys("/quit")
            try tmux.key("Enter")
            try await tmux.waitForScreen("the exit") { $0.contains { $0.hasPrefix("EXIT=") } }
        }
    }

    @Test("Refusals: declined (no --accept-files) and too large (--max-file-bytes); the sender exits 8, nothing written")
    func refusals() async throws {
        let base = try Self.directory("refuse")
        defer { try? FileManager.default.removeItem(at: base) }
        let source = base.appendingPathComponent("offer.bin")
        try Self.randomFile(at: source, bytes: 100_000)
        let inbox = base.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let cases: [(receiver: [String], reason: String)] = [
            ([], "rejected_declined"),
            (["--accept-files", inbox.path, "--max-file-bytes", "99999"], "rejected_too_large"),
        ]
        try await withRelay { relay in
            for (receiverOptions, reason) in cases {
                let room = uniqueRoom("REFUSE")
                let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json"] + receiverOptions)
                let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json", "--send", source.path])
                try alice.closeInput()
                try await bob.event("the offer") {
                    $0["event"] as? String == "file_offer" && $0["direction"] as? String == "incoming"
                        && $0["name"] as? String == "offer.bin" && $0["size"] as? Int == 100_000
                }
                #expect(try await alice.waitForExit(timeoutSeconds: 60) == 8, "\(reason): \(alice.stderr.all.suffix(5))")
                let failed = Self.event(alice, "file_failed")
                #expect(failed.count == 1 && failed.first?["reason"] as? String == reason, "\(failed)")
                try bob.closeInput()
                #expect(try await bob.waitForExit() == 0)
                #expect(try Self.listing(inbox).isEmpty)
            }
        }
    }

    @Test("A file that cannot be read is reported and the sender exits 8 without offering it")
    func unreadableFile() async throws {
        try await withRelay { relay in
            let alice = try ClientProcess(
                "alice", [uniqueRoom("NOFILE"), "--relay", relay.url, "--json", "--send", "/nonexistent/file"])
            try alice.closeInput()
            try await alice.notice("file_problem")
            #expect(try await alice.waitForExit() == 8)
            #expect(Self.event(alice, "file_offer").isEmpty)
        }
    }

    @Test("--send of a FIFO, a directory or a socket never blocks: each is refused file_not_regular, the regular file still goes, exit 8")
    func nonRegularFiles() async throws {
        let base = try Self.directory("fifo")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let fifo = base.appendingPathComponent("pipe").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let socketPath = base.appendingPathComponent("sock").path
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in socketPath.utf8.enumerated() where index < buffer.count - 1 { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        let regular = base.appendingPathComponent("regular.bin")
        try Self.randomFile(at: regular, bytes: 300_000)
        try await withRelay { relay in
            let room = uniqueRoom("FIFO")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--accept-files", inbox.path])
            // The FIFO first: an open that waited for a writer would hold up everything after it.
            let alice = try ClientProcess("alice", [room, "--relay", relay.url, "--json", "--send", fifo,
                                                    "--send", base.path, "--send", socketPath, "--send", regular.path])
            try alice.closeInput()
            #expect(try await alice.waitForExit(timeoutSeconds: 60) == 8, "\(alice.stderr.all.suffix(10))")
            let refused = alice.events.filter { $0["kind"] as? String == "file_not_regular" }
                .compactMap { $0["text"] as? String }
            #expect(refused == [
                "cannot send \(fifo): it is a FIFO (named pipe), not a regular file; only a regular file can be sent",
                "cannot send \(base.path): it is a directory, not a regular file; only a regular file can be sent",
                "cannot send \(socketPath): it is a socket, not a regular file; only a regular file can be sent",
            ], "\(refused)")
            #expect(Self.event(alice, "file_done").count == 1)
            #expect(Self.event(alice, "file_offer").compactMap { $0["name"] as? String } == ["regular.bin"])
            try bob.closeInput()
            #expect(try await bob.waitForExit() == 0)
            #expect(try Self.listing(inbox) == ["regular.bin"])
            #expect(try Data(contentsOf: inbox.appendingPathComponent("regular.bin")) == Data(contentsOf: regular))
        }
    }

    /// A modified peer: the real session and transfer code, offering `files` (name, content) with
    /// names the real client could never send (they are not a file's basename), to the real relay.
    /// Returns once every transfer ended, with the `FileEvent`s it saw.
    static func modifiedSender(relay: RelayProcess, room: String, files: [(name: String, content: [UInt8])])
        async throws -> [FileEvent]
    {
        let session = SessionManager(configuration: SessionConfiguration(room: try RoomCode(room)), entropy: SystemEntropy())
        var transfers = FileTransfers()
        let socket = try await TestWebSocket.connect(relay.url)
        defer { socket.abort() }
        let start = ContinuousClock.now
        func now() -> Instant {
            let elapsed = (ContinuousClock.now - start).components
            return Instant(
                nanoseconds: UInt64(elapsed.seconds) * 1_000_000_000 + UInt64(elapsed.attoseconds / 1_000_000_000))
        }
        var contents: [(FileID, [UInt8])] = []
        var events: [FileEvent] = []
        session.handle(.transportUp, now: now())
        // Bounded by the deadline.
        while ContinuousClock.now - start < .seconds(60) {
            for output in session.drainOutputs() {
                switch output {
                case let .transmit(frame): try await socket.send(String(decoding: frame, as: UTF8.self))
                case let .file(.control(bytes)): transfers.receiveControl(bytes, now: now())
                case let .file(.signal(signal)): transfers.receiveSignal(signal, now: now())
                case .closeTransport: throw ClientTestFailure("the modified peer's session ended")
                default: break
                }
            }
            if contents.isEmpty, session.state == .connected {
                for file in files {
                    let hasher = FileHasher()
                    hasher.update(file.content)
                    let id = transfers.offer(name: file.name, sizeBytes: UInt64(file.content.count), hash: hasher.finish(),
                                             entropy: SystemEntropy())!
                    contents.append((id, file.content))
                }
            }
            for action in transfers.drainActions() {
                switch action {
                case let .control(bytes): _ = session.sendFileControl(bytes, now: now())
                case let .signal(signal): _ = session.transmitFileSignal(signal)
                case let .event(event): events.append(event)
                case .write, .store, .release, .truncate, .verifyUnchanged: break  // Offers carry their whole hash.
                }
            }
            while session.state == .connected, let request = transfers.nextChunk() {
                let content = contents.first { $0.0 == request.id }!.1
                let chunk = Array(content[Int(request.offset)..<(Int(request.offset) + request.length)])
                if let signal = transfers.sealChunk(request, chunk, now: now()) { _ = session.transmitFileSignal(signal) }
            }
            if !contents.isEmpty, transfers.isIdle, session.drainOutputs().isEmpty { return events }
            do {
                if case let .text(buffer)? = try await socket.next(timeoutSeconds: 0.02) {
                    session.handle(.frame(Array(buffer.readableBytesView)), now: now())
                }
            } catch is TestTimeout {}
            if let due = session.pollTimeout(), due <= now() { session.handleTimeout(now: now()) }
        }
        throw ClientTestFailure("the modified peer's transfers did not end: \(events)")
    }

    @Test("Hostile names land as safe basenames in the download directory; nothing outside it changes, nothing is overwritten")
    func hostileNames() async throws {
        let base = try Self.directory("hostile")
        defer { try? FileManager.default.removeItem(at: base) }
        let inbox = base.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        // Already there: a file the peer names (never overwritten), and a symlink pointing out of
        // the directory under a name the peer uses (never followed, never replaced).
        try Data("mine".utf8).write(to: inbox.appendingPathComponent("x"))
        try FileManager.default.createSymbolicLink(atPath: inbox.appendingPathComponent("b").path,
                                                   withDestinationPath: base.appendingPathComponent("escaped").path)
        let reportPart = Self.partName("report.txt", bytes: Array("part".utf8))
        try FileManager.default.createSymbolicLink(atPath: inbox.appendingPathComponent(reportPart).path,
                                                   withDestinationPath: base.appendingPathComponent("escaped-part").path)
        let hostile: [(name: String, content: [UInt8], stored: String)] = [
            ("../../x", Array("up two".utf8), "x (1)"),
            ("a/b", Array("slash".utf8), "b (1)"),
            ("..", Array("dots".utf8), "file"),
            ("\u{1B}[2J\u{07}ev\nil\u{202E}txt.exe", Array("controls".utf8), "[2Jeviltxt.exe"),
            (".profile", Array("hidden".utf8), "profile"),
            ("--help", Array("dash".utf8), "help"),
            ("report.txt", Array("part".utf8), "report.txt"),
        ]
        try await withRelay { relay in
            let room = uniqueRoom("HOSTILE")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json", "--accept-files", inbox.path])
            let events = try await Self.modifiedSender(
                relay: relay, room: room, files: hostile.map { ($0.name, $0.content) })
            let done = events.filter { if case .done = $0 { true } else { false } }
            #expect(done.count == hostile.count, "\(events)")
            // Bob shows each file_done right after sending its DONE: the last may still be in the pipe.
            for _ in 0..<500 where Self.event(bob, "file_done").count < hostile.count {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(Self.event(bob, "file_done").count == hostile.count)
            // The modified peer left without a goodbye: bob would wait for it; SIGTERM ends it.
            bob.send(signal: SIGTERM)
            #expect(try await bob.waitForExit() == 128 + SIGTERM)
        }
        #expect(try Self.listing(base) == ["inbox"])
        var expected = Set(hostile.map(\.stored))
        expected.formUnion(["x", "b", reportPart])
        #expect(Set(try Self.listing(inbox)) == expected)
        #expect(try Data(contentsOf: inbox.appendingPathComponent("x")) == Data("mine".utf8))
        for file in hostile {
            #expect(try Data(contentsOf: inbox.appendingPathComponent(file.stored)) == Data(file.content), "\(file.stored)")
        }
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: inbox.appendingPathComponent("b").path)
        #expect(link == base.appendingPathComponent("escaped").path)
    }
}
