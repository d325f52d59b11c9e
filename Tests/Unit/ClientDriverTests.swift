import ChatCore
import RelayCore
import Testing

@testable import ChatClient
@testable import ClientCore

#if canImport(Glibc)
import Glibc
#endif

@Suite("ClientDriver: connection lifecycle, input and exit status, in memory")
struct ClientDriverTests {
    @Test("Two drivers meet, key, and exchange messages both ways")
    func chat() {
        let harness = DriverHarness()
        let alice = harness.add()
        let bob = harness.add()
        #expect(harness.state(alice) == .connected && harness.state(bob) == .connected)
        harness.line(alice, "hello bob")
        harness.line(bob, "hello alice")
        #expect(harness.messages(bob) == ["hello bob"])
        #expect(harness.messages(alice) == ["hello alice"])
        #expect(harness.drivers[alice].status.pending == 0)
        #expect(harness.notices(alice).contains(.secured))
        #expect(harness.exits == [nil, nil])
    }

    @Test("A relay crash: lost, retrying, reconnected, re-keyed; a message typed meanwhile is queued and delivered")
    func relayCrash() {
        let harness = DriverHarness()
        let alice = harness.add()
        let bob = harness.add()
        harness.crashRelay()
        #expect(harness.notices(alice).suffix(2) == [.relayLost, .retrying])
        #expect(harness.state(alice) == .disconnected)
        harness.line(alice, "typed while the relay is down")
        #expect(harness.shown[alice].contains {
            if case let .sent(message, queued) = $0 { message.text == "typed while the relay is down" && queued } else { false }
        })
        harness.advance(by: .seconds(5))
        #expect(harness.notices(alice).contains(.relayUnreachable))
        #expect(harness.drivers[alice].status.relay == .retrying)
        harness.relayUp = true
        harness.advance(by: .seconds(40))
        for index in [alice, bob] {
            let notices = harness.notices(index)
            #expect(notices.contains(.reconnected) && notices.contains(.rekeyed), "\(notices)")
            #expect(harness.state(index) == .connected)
        }
        #expect(harness.messages(bob) == ["typed while the relay is down"])
        #expect(harness.drivers[alice].status.pending == 0)
        #expect(harness.drivers[alice].session.statistics.handshakesCompleted == 2)
    }

    @Test("No relay for longer than --give-up-after: exit 3, with a notice")
    func givesUp() {
        let harness = DriverHarness()
        harness.relayUp = false
        let alice = harness.add(giveUpAfter: .seconds(10))
        harness.advance(by: .seconds(60))
        #expect(harness.exits[alice] == .connectionFailed)
        #expect(harness.notices(alice).contains(.gaveUp))
        #expect(harness.state(alice) == .destroyed)
        // Retries were spaced by the backoff: far fewer than one per 100 ms step.
        let attempts = harness.notices(alice).filter { $0 == .relayUnreachable }.count
        #expect(attempts >= 3 && attempts < 30, "\(attempts) attempts")
    }

    @Test("A permanent connection failure ends at once with exit 3")
    func permanentFailure() {
        let harness = DriverHarness()
        harness.failPermanently = true
        let alice = harness.add()
        #expect(harness.exits[alice] == .connectionFailed)
        #expect(!harness.notices(alice).contains(.retrying))
    }

    @Test("Pipe mode: end of input with nothing pending leaves at once (exit 0)")
    func endOfInputNothingPending() {
        let harness = DriverHarness()
        let alice = harness.add()
        harness.handle(alice, .endOfInput)
        #expect(harness.exits[alice] == .success)
    }

    @Test("Pipe mode: end of input waits for delivery; without a peer it times out with exit 4 and reports the loss")
    func endOfInputDrain() {
        let harness = DriverHarness()
        let alice = harness.add(drainTimeout: .seconds(5))
        harness.line(alice, "nobody is here yet")
        harness.handle(alice, .endOfInput)
        #expect(harness.exits[alice] == nil)
        #expect(harness.notices(alice).contains(.draining))
        harness.advance(by: .seconds(6))
        #expect(harness.exits[alice] == .undelivered)
        #expect(harness.shown[alice].contains {
            if case let .undeliverable(messages, _) = $0 { messages.map(\.text) == ["nobody is here yet"] } else { false }
        })
    }

    @Test("Pipe mode: end of input, then the peer arrives: the message goes and the client leaves with exit 0")
    func endOfInputThenPeer() {
        let harness = DriverHarness()
        let alice = harness.add()
        harness.line(alice, "for whoever comes")
        harness.handle(alice, .endOfInput)
        let bob = harness.add()
        #expect(harness.messages(bob) == ["for whoever comes"])
        #expect(harness.exits[alice] == .success)
        #expect(harness.notices(bob).contains(.peerLeft))
    }

    @Test("Interactive commands: /help, /verify, //text, unknown commands, and /quit asking again")
    func commands() throws {
        let harness = DriverHarness()
        let alice = harness.add(interactive: true)
        harness.line(alice, "/verify")
        #expect(harness.shown[alice].last == .info(["No safety number yet: wait until the status line says CONNECTED."]))
        let bob = harness.add()
        harness.line(alice, "/help")
        #expect(harness.shown[alice].last == .info(ClientDriver.helpLines))
        harness.line(alice, "/verify")
        guard case let .info(lines) = harness.shown[alice].last else {
            Issue.record("no verification report")
            return
        }
        let number = try #require(harness.drivers[alice].session.safetyNumber)
        #expect(lines.dropFirst().prefix(3) == number.displayLines.map { "    " + $0 }[...])
        #expect(lines.contains { $0.hasPrefix("No password: only comparing this number") })
        // A mistyped number is a mismatch; the peer's number, typed with its spaces, verifies.
        #expect(!harness.drivers[alice].status.verified)
        harness.line(alice, "/verify 12345")
        #expect(harness.notices(alice).last == .verifyMismatch)
        let bobsNumber = try #require(harness.drivers[bob].session.safetyNumber)
        harness.line(alice, "/verify " + bobsNumber.description)
        #expect(harness.notices(alice).last == .verified)
        #expect(harness.drivers[alice].status.verified)
        harness.line(alice, "//not a command")
        harness.line(alice, "  //indented")
        #expect(harness.messages(bob) == ["/not a command", "  /indented"])
        harness.line(alice, "/frobnicate")
        #expect(harness.notices(alice).last == .unknownCommand)
        harness.line(alice, "/clear")
        #expect(harness.shown[alice].last == .clear)

        // A message the peer has not confirmed yet: /quit asks first.
        harness.crashRelay()
        harness.line(alice, "pending")
        harness.line(alice, "/quit")
        #expect(harness.notices(alice).last == .confirmQuit)
        #expect(harness.exits[alice] == nil)
        harness.line(alice, "/quit")
        #expect(harness.exits[alice] == .undelivered)
    }

    @Test("Signals: SIGINT leaves like /quit (exit 0); SIGTERM exits 128+15 after ending the session")
    func signals() {
        let harness = DriverHarness()
        let alice = harness.add()
        let bob = harness.add()
        harness.handle(alice, .signal(SIGINT))
        #expect(harness.exits[alice] == .success)
        harness.handle(bob, .signal(SIGTERM))
        #expect(harness.exits[bob] == .signal(SIGTERM))
        #expect(ClientExitStatus.signal(SIGTERM).code == 143)
        #expect(harness.state(bob) == .destroyed)
    }

    @Test("A third client in a full room exits 2")
    func roomFull() {
        let harness = DriverHarness()
        harness.add()
        harness.add()
        let carol = harness.add()
        #expect(harness.exits[carol] == .relayRefused)
        #expect(harness.notices(carol).contains(.relayError))
    }

    @Test("Events for a connection that is no longer current are ignored")
    func staleEvents() {
        let harness = DriverHarness()
        let alice = harness.add()
        let before = harness.shown[alice].count
        harness.handle(alice, .transportClosed(ConnectionID(99), reason: "old"))
        harness.handle(alice, .transportFrame(ConnectionID(99), Array(#"{"type":"PEER_LEFT"}"#.utf8)))
        #expect(harness.shown[alice].count == before)
        #expect(harness.state(alice) == .searching)
    }

    @Test("Blank lines are not messages; unreadable lines are refused with a reason")
    func blankAndUnreadable() {
        let harness = DriverHarness()
        let alice = harness.add()
        harness.line(alice, "")
        harness.handle(alice, .unreadableLine(reason: "not valid UTF-8"))
        #expect(!harness.shown[alice].contains { if case .sent = $0 { true } else { false } })
        #expect(harness.shown[alice].last == .refused("line not sent: not valid UTF-8"))
    }
}

@Suite("Client helpers: codes, JSON lines, display width")
struct ClientHelperTests {
    @Test("The invitation: the code and the peer's --join command; run.sh's same-machine command plus the remote one")
    func invitation() throws {
        let code = "K7F3Q9XW-oyster-lemon"
        #expect(Invitation.make(code: code, ownPassword: false, relay: ClientApp.defaultRelay,
                                defaultRelay: ClientApp.defaultRelay, caFile: nil, sameMachineCommand: nil).commands
            == ["securechat --join"])
        #expect(Invitation.make(code: code, ownPassword: false, relay: "wss://chat.example:443",
                                defaultRelay: ClientApp.defaultRelay, caFile: nil, sameMachineCommand: nil).commands
            == ["securechat --join --relay wss://chat.example:443"])
        let both = Invitation.make(code: code, ownPassword: false, relay: "ws://192.168.1.20:8080",
                                   defaultRelay: ClientApp.defaultRelay, caFile: nil, sameMachineCommand: "./run.sh")
        #expect(both.commands == ["./run.sh --join", "securechat --join --relay ws://192.168.1.20:8080"])
        #expect(both.code == code)
        // No command carries the code: it is typed at the prompt, never on a command line.
        #expect(!both.commands.contains { $0.contains("K7F3Q9XW") || $0.contains("oyster") })
        // Another machine cannot reach a loopback relay: no command is offered for it.
        let local = Invitation.make(code: code, ownPassword: false, relay: ClientApp.defaultRelay,
                                    defaultRelay: ClientApp.defaultRelay, caFile: nil, sameMachineCommand: "./run.sh")
        #expect(local.commands == ["./run.sh --join"])
        // A password of one's own is not in the code: the peer is told to ask for it.
        let own = Invitation.make(code: "K7F3Q9XW", ownPassword: true, relay: ClientApp.defaultRelay,
                                  defaultRelay: ClientApp.defaultRelay, caFile: nil, sameMachineCommand: "")
        #expect(own.commands == ["securechat --join --password"])
    }

    @Test("A wrong password: both drivers say \"authentication failed\" with a next step and exit 6")
    func wrongPassword() {
        let harness = DriverHarness()
        let alice = harness.add(password: "oyster-lemon")
        let bob = harness.add(password: "oyster-melon")
        for index in [alice, bob] {
            #expect(harness.exits[index] == .authenticationFailed)
            #expect(ClientExitStatus.authenticationFailed.code == 6)
            let texts = harness.shown[index].compactMap { event -> String? in
                if case let .notice(notice) = event, notice.kind == .authenticationFailed { notice.text } else { nil }
            }
            #expect(texts == [
                "AUTHENTICATION FAILED: the password did not match. Either the code was mistyped (check every word "
                    + "with your peer) or someone in the middle tried to intercept the chat. This code is spent; "
                    + "start a new room with `securechat` and share the new code.",
            ])
            #expect(!harness.notices(index).contains(.secured))
        }
        #expect(ClientExitStatus.helpText.contains("6    authentication failed"))
    }

    @Test("Same password: connected, password-authenticated, and the JSON-bound safety number events agree")
    func samePassword() throws {
        let harness = DriverHarness()
        let alice = harness.add(password: "oyster-lemon")
        let bob = harness.add(password: "oyster-lemon")
        #expect(harness.state(alice) == .connected && harness.state(bob) == .connected)
        #expect(harness.drivers[alice].status.authentication == .password)
        func numbers(_ index: Int) -> [SafetyNumber] {
            harness.shown[index].compactMap { if case let .safetyNumber(number, .password) = $0 { number } else { nil } }
        }
        #expect(numbers(alice).count == 1 && numbers(alice) == numbers(bob))
        harness.line(alice, "authenticated")
        #expect(harness.messages(bob) == ["authenticated"])
    }

    @Test("Only one side has a password: both fail, each told what to do")
    func modeMismatch() {
        let harness = DriverHarness()
        let alice = harness.add(password: "oyster-lemon")
        let bob = harness.add()
        #expect(harness.exits[alice] == .authenticationFailed && harness.exits[bob] == .authenticationFailed)
        func text(_ index: Int) -> String {
            harness.shown[index].compactMap { event -> String? in
                if case let .notice(notice) = event, notice.kind == .authenticationFailed { notice.text } else { nil }
            }.first ?? ""
        }
        #expect(text(alice).contains("the peer joined without the password"))
        #expect(text(bob).contains("your peer uses a password and you joined without one"))
    }

    @Test("JSON lines: fixed field order, escapes for quotes, controls, C1 and bidi; raw UTF-8 otherwise")
    func jsonLines() {
        var line = JSONLine(event: "message")
        line.field("seq", UInt64(7))
        line.field("text", "a\"b\\c\n\u{1B}[31m\u{85}\u{202E}é✓")
        line.field("ids", [UInt64(1), 2])
        line.field("queued", true)
        let text = String(decoding: line.line, as: UTF8.self)
        #expect(text == #"{"event":"message","seq":7,"text":"a\"b\\c\n\u001b[31m\u0085\u202eé✓","ids":[1,2],"queued":true}"# + "\n")
        #expect(TerminalText.isSafe(String(text.dropLast())))
    }

    @Test("Status line clipping counts display columns")
    func clipping() {
        #expect(TerminalUI.clip("abcdef", columns: 3) == "abc")
        #expect(TerminalUI.clip("日本語", columns: 5).unicodeScalars.count <= 3)
        #expect(TerminalUI.clip("", columns: 10) == "")
    }
}
