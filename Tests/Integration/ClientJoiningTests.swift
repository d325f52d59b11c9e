import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Joining without the code on the command line, and what another local user sees when it is there.
@Suite("securechat --join: the code off the command line")
struct ClientJoiningTests {
    /// Run `command` as the user nobody (uid 65534), as another local user would, and return its
    /// stdout. `setpriv` (util-linux) drops root's identity and groups.
    static func asAnotherUser(_ command: [String]) throws -> String {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"] + command
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = readAll(output.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ClientTestFailure("\(command.joined(separator: " ")) as uid 65534: exit \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The code of a room `alice` created (its JSON `room` event), and its parts.
    static func code(of alice: ClientProcess) async throws -> (code: String, parts: [String]) {
        let room = try await alice.event("the room") { $0["event"] as? String == "room" }
        let code = try #require(room["code"] as? String)
        let parts = code.split(separator: "-").map(String.init)
        #expect(parts.count == 3, "a generated code is ROOM-word-word: \(code)")
        return (code, parts)
    }

    @Test("A code given as an argument: gone from /proc/PID/cmdline and ps as another user sees them, with a warning")
    func codeArgumentWiped() async throws {
        try await withRelay { relay in
            let alice = try ClientProcess("alice", ["--relay", relay.url, "--json"])
            let (code, parts) = try await Self.code(of: alice)
            let bob = try ClientProcess("bob", [code, "--relay", relay.url, "--json"])
            try await bob.state("CONNECTED")
            try await alice.state("CONNECTED")
            let cmdline = try Self.asAnotherUser(["cat", "/proc/\(bob.processIdentifier)/cmdline"])
            let arguments = cmdline.split(separator: "\0").map(String.init)
            // Exactly the other arguments, in order (so the read worked), and nothing else: the
            // freed end of the area is zeros.
            let binary = ClientTerminalTests.Tmux.securechat
            #expect(arguments == [binary, "--relay", relay.url, "--json"], "\(arguments)")
            let ps = try Self.asAnotherUser(["ps", "-ww", "-o", "args=", "-p", "\(bob.processIdentifier)"])
            #expect(ps.split(whereSeparator: \.isWhitespace) == [binary, "--relay", relay.url, "--json"].map {
                Substring($0)
            }, "\(ps)")
            for text in [cmdline, ps] {
                #expect(!text.contains(code) && !text.contains(parts[0]), "the code in: \(text)")
                #expect(!text.contains("\(parts[1])-\(parts[2])") && !text.contains(parts[1] + "\0"), "\(text)")
            }
            let warning = try await bob.event("the warning") { $0["kind"] as? String == "code_on_command_line" }
            #expect((warning["text"] as? String ?? "").contains("next time use --join"))
            try alice.type("still works")
            #expect(try await bob.messages(count: 1) == ["still works"])
            await alice.kill()
            await bob.kill()
        }
    }

    @Test("--join in pipe mode: the code from stdin's first line (not sent), or from SECURECHAT_CODE (then wiped)")
    func joinInPipeMode() async throws {
        try await withRelay { relay in
            let alice = try ClientProcess("alice", ["--relay", relay.url, "--json"])
            let (code, _) = try await Self.code(of: alice)
            let bob = try ClientProcess("bob", ["--join", "--relay", relay.url, "--json"])
            try bob.type(code)
            try bob.type("the first message")
            try await bob.state("CONNECTED")
            #expect(try await alice.messages(count: 1) == ["the first message"])
            #expect(!bob.events.contains { $0["kind"] as? String == "code_on_command_line" })
            await alice.kill()
            await bob.kill()

            let carol = try ClientProcess("carol", ["--relay", relay.url, "--json"])
            let (carolsCode, parts) = try await Self.code(of: carol)
            var environment = ProcessInfo.processInfo.environment
            environment["SECURECHAT_CODE"] = carolsCode
            let dave = try ClientProcess("dave", ["--join", "--relay", relay.url, "--json"], environment: environment)
            try await dave.state("CONNECTED")
            // /proc/PID/environ is the process's initial environment block: overwritten in place.
            let environ = try String(contentsOfFile: "/proc/\(dave.processIdentifier)/environ", encoding: .utf8)
            let variable = try #require(environ.range(of: "SECURECHAT_CODE="), "the variable was set")
            #expect(environ[variable.upperBound...].first == "\0", "the value was not wiped")
            #expect(!environ.contains(carolsCode) && !environ.contains(parts[0]))
            await carol.kill()
            await dave.kill()
        }
    }

    @Test("securechat --join in a terminal: Tab completes a word, a second Tab lists candidates; the room is joined")
    func joinWithTabCompletion() async throws {
        try await withRelay { relay in
            let alice = try ClientProcess("alice", ["--relay", relay.url, "--json"])
            let (_, parts) = try await Self.code(of: alice)
            let tmux = ClientTerminalTests.Tmux()
            defer { tmux.kill() }
            let script = "LANG=C.UTF-8 NO_COLOR=1 '\(ClientTerminalTests.Tmux.securechat)' --join "
                + "--relay \(relay.url); echo EXIT=$?; sleep 120"
            try tmux.start(script, columns: 120, rows: 40)
            let prompt = "Code (Tab completes the words): "
            // Rows come without trailing blanks: the prompt's own last space is not there yet.
            try await tmux.waitForScreen("the prompt") { $0.contains(String(prompt.dropLast())) }
            // Two Tabs after "ab": the words starting with it are listed (abandon ... abuse).
            try tmux.keys(parts[0] + "-ab")
            try tmux.key("Tab")
            try tmux.key("Tab")
            try await tmux.waitForScreen("the candidates") { screen in
                screen.contains { $0.contains("abandon") && $0.contains("ability") }
                    && screen.contains { $0.contains("abuse") }
            }
            try tmux.key("BSpace")
            try tmux.key("BSpace")
            // Four letters name one word: Tab completes it and adds the separator. A word of three
            // letters can be the start of others ("lab": label, labor), so Tab only lists them: it is
            // typed whole, with its separator, as a person would.
            for (index, word) in parts.dropFirst().enumerated() {
                if word.count < 4 {
                    try tmux.keys(String(word) + "-")
                } else {
                    try tmux.keys(String(word.prefix(4)))
                    try tmux.key("Tab")
                }
                let typed = prompt + ([parts[0]] + parts[1...(index + 1)]).joined(separator: "-") + "-"
                try await tmux.waitForScreen("\(word) completed") { $0.contains { $0.hasSuffix(typed) } }
            }
            try tmux.key("Enter")
            try await tmux.waitForScreen("the CONNECTED status line") { $0.contains { $0.hasPrefix(" CONNECTED |") } }
            try await alice.state("CONNECTED")
            try alice.type("tab completed")
            try await tmux.waitForScreen("alice's message") { $0.contains("peer > tab completed") }
            tmux.kill()
            await alice.kill()
        }
    }

    @Test("ws:// to a host that is not this machine: a warning naming what a network observer sees; none for loopback")
    func unencryptedRelayWarning() async throws {
        // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a real host. The warning comes before any connection.
        let remote = try ClientProcess("remote", [uniqueRoom("WS"), "--relay", "ws://192.0.2.1:9", "--json",
                                                  "--give-up-after", "1"])
        let warning = try await remote.event("the warning") { $0["kind"] as? String == "unencrypted_relay" }
        #expect(warning["text"] as? String == "ws:// is not encrypted on the way to 192.0.2.1:9: anyone on the network "
            + "path sees the room, when and how much you send, and your address (not your messages or the password, "
            + "which are end-to-end encrypted); use wss:// beyond a network you trust")
        _ = try await remote.waitForExit()
        try await withRelay { relay in
            let local = try ClientProcess("local", ["--join", "--relay", relay.url, "--json"])
            try local.type(uniqueRoom("LOCAL"))
            try await local.state("SEARCHING")
            #expect(!local.events.contains { $0["kind"] as? String == "unencrypted_relay" })
            await local.kill()
        }
    }
}
