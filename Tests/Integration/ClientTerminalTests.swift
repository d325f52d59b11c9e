import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `strings` as a NULL-terminated C array, for the duration of `body`.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}

/// The interactive client in a real terminal emulator: tmux gives it a pseudo-terminal, takes
/// keystrokes (`send-keys`) and shows exactly what a person would see (`capture-pane`).
@Suite("securechat interactive, through tmux")
struct ClientTerminalTests {
    /// One private tmux server (its own socket name), killed at the end.
    final class Tmux: Sendable {
        let socket = "securechat-test-\(UInt32.random(in: 0...UInt32.max))"
        let session = "chat"

        /// Run `tmux -L socket arguments` and return what it printed.
        ///
        /// Not Foundation's `Process`: the first command forks the tmux server, which inherits
        /// every open descriptor, and Process learns of a child's exit through a descriptor the
        /// child holds, so it would wait for the server too. posix_spawn with every inherited
        /// descriptor above stderr closed, and waitpid, see only tmux's own client.
        @discardableResult
        func run(_ arguments: [String]) throws -> String {
            var output: [Int32] = [-1, -1]
            guard pipe(&output) == 0 else { throw ClientTestFailure("pipe failed") }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, output[1], 1)
            posix_spawn_file_actions_adddup2(&actions, output[1], 2)
            for fd in Self.openDescriptors() where fd > 2 {
                posix_spawn_file_actions_addclose(&actions, fd)
            }
            // Default signal dispositions and an empty mask, as a shell would give tmux (the test
            // runner may block or ignore some, and tmux's server needs SIGCHLD).
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var emptySet = sigset_t()
            sigemptyset(&emptySet)
            var allSignals = sigset_t()
            sigfillset(&allSignals)
            sigdelset(&allSignals, SIGKILL)
            sigdelset(&allSignals, SIGSTOP)
            posix_spawnattr_setsigmask(&attributes, &emptySet)
            posix_spawnattr_setsigdefault(&attributes, &allSignals)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
            var environment = ProcessInfo.processInfo.environment
            environment["TERM"] = environment["TERM"] ?? "xterm-256color"
            let argv = ["/usr/bin/tmux", "-L", socket] + arguments
            let envp = environment.map { "\($0.key)=\($0.value)" }
            var pid: pid_t = 0
            let spawned = withCStrings(argv) { argvPointers in
                withCStrings(envp) { envPointers in
                    posix_spawn(&pid, "/usr/bin/tmux", &actions, &attributes, argvPointers, envPointers)
                }
            }
            close(output[1])
            guard spawned == 0 else {
                close(output[0])
                throw ClientTestFailure("cannot run tmux (errno \(spawned)); install it: apt-get install -y tmux")
            }
            // tmux's own client exits promptly; the server it may fork has no copy of the pipe
            // beyond its stdout/stderr, which it points at /dev/null when it daemonizes.
            var data: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            // Bounded by the pipe's end of file.
            while true {
                let count = read(output[0], &chunk, chunk.count)
                if count <= 0 { break }
                data.append(contentsOf: chunk[0..<count])
            }
            close(output[0])
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            let text = String(decoding: data, as: UTF8.self)
            guard status == 0 else {
                throw ClientTestFailure("tmux \(arguments.joined(separator: " ")) failed (\(status)): \(text)")
            }
            return text
        }

        /// This process's open descriptors.
        static func openDescriptors() -> [Int32] {
            guard let directory = opendir("/proc/self/fd") else { return Array(3..<1024) }
            defer { closedir(directory) }
            var descriptors: [Int32] = []
            // Bounded by the directory's entries.
            while let entry = readdir(directory) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if let fd = Int32(name) { descriptors.append(fd) }
            }
            return descriptors
        }

        /// The visible screen, one string per row, trailing spaces removed.
        func screen() throws -> [String] {
            try run(["capture-pane", "-p", "-t", session]).split(separator: "\n", omittingEmptySubsequences: false)
                .map { String($0.reversed().drop { $0 == " " }.reversed()) }
        }

        /// `run`, awaited off the cooperative pool (tmux's client is waited for with a blocking
        /// waitpid).
        @discardableResult
        func runAsync(_ arguments: [String]) async throws -> String {
            try await offPool { try self.run(arguments) }
        }

        /// Wait until the screen satisfies `predicate`.
        @discardableResult
        func waitForScreen(
            _ what: String, timeoutSeconds: Double = 30, _ predicate: ([String]) -> Bool
        ) async throws -> [String] {
            let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
            var last: [String] = []
            // Bounded by the deadline.
            while ContinuousClock.now < deadline {
                // A capture can fail while the tmux server is still starting: try again.
                if let screen = try? await offPool({ try self.screen() }) {
                    last = screen
                    if predicate(last) { return last }
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw ClientTestFailure("screen never showed \(what):\n" + last.joined(separator: "\n"))
        }

        /// The `securechat` binary under test.
        static var securechat: String { buildProductsDirectory().appendingPathComponent("securechat").path }

        /// Run `sh -c script` in a new detached session of `columns` x `rows`.
        func start(_ script: String, columns: Int = 100, rows: Int = 30) throws {
            try run(["new-session", "-d", "-x", String(columns), "-y", String(rows), "-s", session, "sh", "-c", script])
        }

        func keys(_ text: String) throws {
            try run(["send-keys", "-t", session, "-l", text])
        }

        func key(_ name: String) throws {
            try run(["send-keys", "-t", session, name])
        }

        func kill() {
            _ = try? run(["kill-server"])
        }
    }

    @Test("A peer message arrives mid-line: the typed text survives intact and is sent whole; Ctrl-C restores the terminal")
    func typedTextSurvivesIncomingMessage() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("TTY")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json"])
            let tmux = Tmux()
            defer { tmux.kill() }
            // stty -g before and after: the terminal settings must come back exactly. The shell
            // traps SIGINT (a handler, so the client still gets the default disposition) to
            // survive the Ctrl-C sent to the whole foreground process group.
            let script = "trap : INT; stty -g; LANG=C.UTF-8 NO_COLOR=1 "
                + "'\(Tmux.securechat)' \(room) --relay \(relay.url); "
                + "echo EXIT=$?; stty -g; sleep 120"
            try tmux.start(script)

            try await tmux.waitForScreen("the CONNECTED status line") { $0.contains { $0.hasPrefix(" CONNECTED |") } }
            try await bob.state("CONNECTED")

            try tmux.keys("half way thro")
            try await tmux.waitForScreen("the half-typed line") { $0.contains("> half way thro") }
            try bob.type("a message from bob")
            let screen = try await tmux.waitForScreen("bob's message") { $0.contains("peer > a message from bob") }
            // The message is above the status line, and the input line still holds the typing.
            let messageRow = try #require(screen.firstIndex(of: "peer > a message from bob"))
            let statusRow = try #require(screen.firstIndex { $0.hasPrefix(" CONNECTED |") })
            #expect(messageRow < statusRow)
            #expect(screen[statusRow + 1] == "> half way thro")

            try tmux.keys("ugh")
            try tmux.key("Enter")
            #expect(try await bob.messages(count: 1) == ["half way through"])
            try await tmux.waitForScreen("the sent line") { $0.contains("you  > half way through") }

            try tmux.key("C-c")
            let final = try await tmux.waitForScreen("the exit and the second stty") { screen in
                // `stty -g` runs after the echo: wait for its line too, not just for EXIT.
                guard let row = screen.firstIndex(of: "EXIT=0") else { return false }
                return row + 1 < screen.count && !screen[row + 1].isEmpty
            }
            let exitRow = try #require(final.firstIndex(of: "EXIT=0"))
            let before = final[0]
            let after = final[exitRow + 1]
            #expect(!before.isEmpty && before == after, "stty before \(before), after \(after)")
            try await bob.notice("peer_left")
            await bob.kill()
        }
    }

    @Test("--password on a terminal: asked twice with echo off; the peer joins; /verify shows the shared number")
    func passwordPromptAndVerify() async throws {
        try await withRelay { relay in
            let tmux = Tmux()
            defer { tmux.kill() }
            let script = "trap : INT; stty -g; LANG=C.UTF-8 NO_COLOR=1 "
                + "'\(Tmux.securechat)' --password --relay \(relay.url); "
                + "echo EXIT=$?; stty -g; sleep 120"
            try tmux.start(script, columns: 110, rows: 40)
            let secret = "tin can telephone"
            try await tmux.waitForScreen("the password prompt") { $0.contains { $0.hasPrefix("Password:") } }
            try tmux.keys(secret)
            try tmux.key("Enter")
            try await tmux.waitForScreen("the second prompt") { $0.contains { $0.hasPrefix("Password again:") } }
            try tmux.keys(secret)
            try tmux.key("Enter")
            let created = try await tmux.waitForScreen("the invitation") { $0.contains { $0.hasPrefix("Room ") } }
            #expect(!created.contains { $0.contains("tin can") }, "the password was echoed")
            // A password of one's own is not in the code: the peer is told to add --password.
            let invitation = try #require(created.first { $0.hasPrefix("Ask your peer to run:") })
            let header = try #require(created.first { $0.hasPrefix("Room ") }).split(separator: " ")
            let room = String(header[1])
            #expect(invitation.hasSuffix("securechat --join --relay \(relay.url) --password"), "\(invitation)")
            #expect(!invitation.contains(room), "the code is typed at the prompt, not on a command line")

            let bob = try ClientProcess("bob", [room, "--password", "--relay", relay.url, "--json"],
                                        environment: ProcessInfo.processInfo.environment.merging(
                                            ["SECURECHAT_PASSWORD": secret]) { _, new in new })
            try await bob.state("CONNECTED")
            let bobsEvent = try await bob.event("safety number") { $0["event"] as? String == "safety_number" }
            let number = try #require(bobsEvent["number"] as? String)
            try await tmux.waitForScreen("the authenticated status line") {
                $0.contains { $0.hasPrefix(" CONNECTED |") && $0.contains("password-authenticated") }
            }
            try tmux.keys("/verify")
            try tmux.key("Enter")
            let groups = number.split(separator: " ")
            let firstLine = groups.prefix(4).joined(separator: " ")
            let lastLine = groups.suffix(4).joined(separator: " ")
            try await tmux.waitForScreen("the safety number") { screen in
                screen.contains("    " + firstLine) && screen.contains("    " + lastLine)
            }
            try tmux.key("C-c")
            let final = try await tmux.waitForScreen("the exit and the second stty") { screen in
                // `stty -g` runs after the echo: wait for its line too, not just for EXIT.
                guard let row = screen.firstIndex(of: "EXIT=0") else { return false }
                return row + 1 < screen.count && !screen[row + 1].isEmpty
            }
            let exitRow = try #require(final.firstIndex(of: "EXIT=0"))
            let sttyBefore = try #require(final.first { !$0.isEmpty })
            #expect(sttyBefore == final[exitRow + 1], "the terminal settings came back")
            await bob.kill()
        }
    }

    @Test("SIGTERM in the interactive client: the session ends, the terminal is restored, exit 143")
    func sigtermRestoresTerminal() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("TERM")
            let tmux = Tmux()
            defer { tmux.kill() }
            let script = "stty -g; '\(Tmux.securechat)' \(room) --relay \(relay.url); echo EXIT=$?; stty -g; sleep 120"
            try tmux.start(script)
            try await tmux.waitForScreen("the SEARCHING status line") { $0.contains { $0.hasPrefix(" SEARCHING |") } }
            // The pane runs sh; the client is its only child.
            let shellPID = try tmux.run(["list-panes", "-t", tmux.session, "-F", "#{pane_pid}"])
                .split(separator: "\n").first.map(String.init) ?? ""
            let children = try String(contentsOfFile: "/proc/\(shellPID)/task/\(shellPID)/children", encoding: .utf8)
            let pid = try #require(children.split(separator: " ").first.flatMap { Int32($0) })
            kill(pid, SIGTERM)
            let final = try await tmux.waitForScreen("the exit and the second stty") { screen in
                // `stty -g` runs after the echo: wait for its line too, not just for EXIT.
                guard let row = screen.firstIndex(of: "EXIT=143") else { return false }
                return row + 1 < screen.count && !screen[row + 1].isEmpty
            }
            let exitRow = try #require(final.firstIndex(of: "EXIT=143"))
            #expect(final.contains { $0.contains("session ended (signal 15); keys wiped") })
            #expect(!final[0].isEmpty && final[0] == final[exitRow + 1],
                    "stty before \(final[0]), after \(final[exitRow + 1])")
        }
    }

    @Test("The window narrowed and widened mid-line: one status line at the new width, the typed text intact")
    func resizeKeepsOneStatusLine() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("WINCH")
            let bob = try ClientProcess("bob", [room, "--relay", relay.url, "--json"])
            let tmux = Tmux()
            defer { tmux.kill() }
            let script = "LANG=C.UTF-8 NO_COLOR=1 '\(Tmux.securechat)' \(room) --relay \(relay.url); sleep 120"
            try tmux.start(script)
            try await tmux.waitForScreen("the CONNECTED status line") { $0.contains { $0.hasPrefix(" CONNECTED |") } }
            try await bob.state("CONNECTED")
            let typed = "half way through a long line of typing"
            try tmux.keys(typed)
            try await tmux.waitForScreen("the half-typed line") { $0.contains("> " + typed) }

            // tmux reflows on resize, as most terminals do: the old full-width bar wraps onto two
            // rows, and the client must erase both before it draws the bar again.
            let statusRows = { (screen: [String]) in screen.indices.filter { screen[$0].hasPrefix(" CONNECTED |") } }
            for columns in [50, 30, 100] {
                try tmux.run(["resize-window", "-t", tmux.session, "-x", String(columns), "-y", "30"])
                let what = "one status line and the typed text at \(columns) columns"
                let screen = try await tmux.waitForScreen(what) { screen in
                    let rows = statusRows(screen)
                    // At 30 columns the 40-column typed line wraps after its 30th column.
                    let input = columns > typed.count + 2 ? "> " + typed : String(("> " + typed).prefix(columns))
                    return rows.count == 1 && rows[0] + 1 < screen.count && screen[rows[0] + 1] == input
                        && screen[rows[0]].count < columns
                }
                #expect(!screen.contains { $0.hasPrefix("peer here |") || $0.hasPrefix(" encrypted |") }, "\(screen)")
                if columns == 50 {
                    try bob.type("after the resize")
                    let after = try await tmux.waitForScreen("bob's message") { $0.contains("peer > after the resize") }
                    let messageRow = try #require(after.firstIndex(of: "peer > after the resize"))
                    #expect(statusRows(after).count == 1 && messageRow < statusRows(after)[0], "\(after)")
                }
            }
            try tmux.key("Enter")
            #expect(try await bob.messages(count: 1) == [typed])
            await bob.kill()
        }
    }
}
