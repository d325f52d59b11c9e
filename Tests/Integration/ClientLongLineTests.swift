import Foundation
import Testing

/// A line wider than the window, on both screens: the sender's echo (`you  > …`) must wrap row for
/// row as the peer's view (`peer > …`) does, and stay whole after the acknowledgement redraws the
/// status line and after the window is resized.
@Suite("securechat interactive: long lines on both screens")
struct ClientLongLineTests {
    typealias Tmux = ClientTerminalTests.Tmux

    /// `line` cut into rows of `columns`, as a terminal wraps it.
    static func rows(_ line: String, columns: Int) -> [String] {
        let characters = Array(line)
        return stride(from: 0, to: characters.count, by: columns).map {
            String(characters[$0..<min($0 + columns, characters.count)])
        }
    }

    /// nil when `screen` shows `line` wrapped at `columns`, every row in place; else what is wrong.
    static func mismatch(_ screen: [String], line: String, columns: Int) -> String? {
        let expected = rows(line, columns: columns)
        guard let start = screen.firstIndex(of: expected[0]) else { return "its first row is missing" }
        for (offset, row) in expected.enumerated() {
            let got = start + offset < screen.count ? screen[start + offset] : "<below the screen>"
            if got != row { return "row \(offset + 1) of \(expected.count) is \"\(got)\", not \"\(row)\"" }
        }
        return nil
    }

    /// A text of exactly `count` characters that shows where each row starts.
    static func text(_ label: String, count: Int) -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let head = label + " "
        return head + String((0..<(count - head.count)).map { letters[$0 % letters.count] })
    }

    static func statusRow(_ screen: [String]) -> String? {
        screen.first { $0.hasPrefix(" CONNECTED |") }
    }

    /// Both screens show `text` whole: the sender's after its acknowledgement (no message pending).
    static func expectBothScreens(alice: Tmux, bob: Tmux, text: String, columns: Int) async throws {
        let sent = "you  > " + text
        let received = "peer > " + text
        let first = rows(sent, columns: columns)[0]
        let aliceScreen = try await alice.waitForScreen("the echo, acknowledged") { screen in
            screen.contains(first) && Self.statusRow(screen).map { !$0.contains("pending") } == true
        }
        let bobScreen = try await bob.waitForScreen("the message") { $0.contains(rows(received, columns: columns)[0]) }
        let what = "\(text.count) characters at \(columns) columns"
        let senderMismatch = mismatch(aliceScreen, line: sent, columns: columns)
        #expect(senderMismatch == nil,
                "sender, \(what): \(senderMismatch ?? "")\n\(aliceScreen.joined(separator: "\n"))")
        let peerMismatch = mismatch(bobScreen, line: received, columns: columns)
        #expect(peerMismatch == nil, "peer, \(what): \(peerMismatch ?? "")\n\(bobScreen.joined(separator: "\n"))")
    }

    @Test("Lines of 1, 2 and 5 window widths at 120 and 60 columns: every row on both screens, after the ack and a resize")
    func longLinesWrapAlike() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("WIDE")
            let alice = Tmux()
            let bob = Tmux()
            defer {
                alice.kill()
                bob.kill()
            }
            let script = "LANG=C.UTF-8 NO_COLOR=1 '\(Tmux.securechat)' \(room) --relay \(relay.url); sleep 120"
            for tmux in [alice, bob] { try await offPool { try tmux.start(script, columns: 120, rows: 50) } }
            for tmux in [alice, bob] {
                try await tmux.waitForScreen("the CONNECTED status line") { Self.statusRow($0) != nil }
            }
            var last: String?
            for columns in [120, 60] {
                if columns != 120 {
                    for tmux in [alice, bob] {
                        try await tmux.runAsync(
                            ["resize-window", "-t", tmux.session, "-x", String(columns), "-y", "50"])
                        try await tmux.waitForScreen("the status line at \(columns) columns") { screen in
                            Self.statusRow(screen).map { $0.count < columns } == true
                                && screen.filter { $0.hasPrefix(" CONNECTED |") }.count == 1
                        }
                    }
                    // The last line sent before the resize, reflowed by the terminal, is still whole.
                    if let last {
                        try await Self.expectBothScreens(alice: alice, bob: bob, text: last, columns: columns)
                    }
                }
                // 1, 2 and 5 window widths, and one that fills the input row exactly ("> " + text),
                // where the editor's cursor wraps onto the next row before Enter.
                for count in [columns, 2 * columns, 5 * columns, columns - 2] {
                    let line = Self.text("n\(count)c\(columns)", count: count)
                    try await alice.runAsync(["send-keys", "-t", alice.session, "-l", line])
                    try await alice.runAsync(["send-keys", "-t", alice.session, "Enter"])
                    try await Self.expectBothScreens(alice: alice, bob: bob, text: line, columns: columns)
                    last = line
                }
            }
        }
    }
}
