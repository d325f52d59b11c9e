import CClientSupport
import ChatCore
import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// The interactive terminal: messages scroll above, a status line and the input line stay at
/// the bottom.
///
/// Line editing is libedit's (BSD licence; GNU readline is GPL), through its readline-compatible
/// callback interface: the shell polls stdin and hands each readable byte to
/// `rl_callback_read_char`, so the UI never blocks the session. The screen is plain
/// scrolling output with a "bottom block" (status line + prompt + the line being typed):
/// to print a message, the block is erased (cursor up to the status line, clear to the end of
/// the screen), the message is printed where the block was, and the block is drawn again
/// below it (`rl_forced_update_display` redraws the prompt and the line being typed, cursor
/// included). libedit keeps the typed text, so a message arriving mid-line never disturbs it.
/// No scroll regions and no alternate screen: the conversation stays in the terminal's own
/// scrollback and long input lines wrap normally.
final class TerminalUI: ClientRenderer {
    static let prompt = "> "

    private let out: FileOutput
    private let inputFD: Int32
    private let colors: Bool
    private var savedTerminal = termios()
    private var status: ClientStatus
    /// The status line and prompt are on screen (false while erased for printing).
    private var blockVisible = false
    /// libedit's handler is installed (it is uninstalled while a finished line is handled).
    private var handlerInstalled = false
    /// Rows from the cursor up to the status line, when the cursor is not where the line
    /// editor says (right after a line was finished: libedit moved below it).
    private var rowsAboveAfterLine: Int?
    /// Display columns of the status bar as last drawn (the window's width then, less one).
    private var statusWidthDrawn = 0
    /// No key has reached the line editor since its prompt was installed. libedit's readline
    /// interface updates `rl_end`/`rl_point` only when it reads a key, so until then they still
    /// describe the line just sent: measuring the typed text from them erased rows of the
    /// message printed above the prompt (the sender's own long line lost its wrapped rows).
    private var lineUntouched = true
    /// Messages sent while not connected, to say when they finally went through. Bounded by
    /// the session's send queue.
    private var queuedIDs: [MessageID] = []
    private var closed = false

    init(status: ClientStatus, colors: Bool, inputFD: Int32 = 0, outputFD: Int32 = 1) {
        self.status = status
        self.colors = colors
        self.inputFD = inputFD
        self.out = FileOutput(fd: outputFD)
        _ = tcgetattr(inputFD, &savedTerminal)
        scl_terminal_restore_arm(inputFD)
        scl_editline_configure()
        drawBlock()
    }

    // MARK: Input

    /// Read what stdin has (call when it is readable). Returns completed lines and end of input.
    func readInput() -> [ClientEvent] {
        var events: [ClientEvent] = []
        // Bounded: a paste of many lines is taken in slices so the session keeps running.
        for _ in 0..<4096 {
            if !handlerInstalled { drawBlock() }
            let state = scl_editline_read_char()
            lineUntouched = false
            if state == 1 {
                guard let raw = scl_editline_take_line() else { continue }
                let length = strlen(raw)
                let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self),
                                                count: length)
                if let text = String(validating: bytes, as: UTF8.self) {
                    events.append(.line(text))
                } else {
                    events.append(.unreadableLine(reason: "not valid UTF-8"))
                }
                lineFinished(displayWidth: Self.displayWidth(Self.prompt) + Self.displayWidth(bytes))
                memset(raw, 0, length)  // The plaintext copy libedit handed us.
                free(raw)
            } else if state == 2 {
                events.append(.endOfInput)
                return events
            }
            guard Self.isReadable(inputFD) else { break }
        }
        return events
    }

    /// libedit finished a line and moved below it; the block is to be redrawn after the batch.
    private func lineFinished(displayWidth: Int) {
        let columns = terminalColumns()
        rowsAboveAfterLine = displayWidth / columns + 2
        handlerInstalled = false
    }

    // MARK: Rendering

    func render(_ event: DisplayEvent, status: ClientStatus) {
        self.status = status
        switch event {
        case let .roomCreated(room, invitation):
            var lines = [
                style("Room \(room.value) created. Your code: ", bold) + style(invitation.code, bold),
                "Ask your peer to run:   " + style(invitation.commands[0], bold),
            ]
            for other in invitation.commands.dropFirst() {
                lines.append("  (from another machine: " + other + ")")
            }
            lines.append(style("It asks for the code: pass it on privately (the words are the password); "
                + "it works once.", dim))
            printLines(lines)
        case .safetyNumber:
            break  // /verify shows it; the status line shows whether it was verified.
        case let .message(message):
            printLines([style("peer", cyan) + " > " + TerminalText.sanitize(message.text)])
        case let .sent(message, queued):
            var line = style("you ", green) + " > " + TerminalText.sanitize(message.text)
            if queued {
                line += style("  (queued: sent after re-keying)", dim)
                if queuedIDs.count < 4096 { queuedIDs.append(message.id) }
            }
            printLines([line])
        case let .delivered(ids):
            let late = ids.filter { queuedIDs.contains($0) }
            queuedIDs.removeAll { ids.contains($0) }
            if !late.isEmpty {
                printLines([style("-- queued message(s) delivered: " + late.map(\.description).joined(separator: " "),
                                  dim)])
            } else if !closed {
                // Nothing to print, but the pending count in the status line just went down.
                eraseBlock()
                drawBlock()
            }
        case let .undeliverable(messages, reason):
            queuedIDs.removeAll { id in messages.contains { $0.id == id } }
            printLines(messages.map {
                style("!! NOT DELIVERED (\(reason)): ", red) + TerminalText.sanitize($0.text)
            })
        case let .refused(reason):
            printLines([style("!! " + TerminalText.sanitize(reason), red)])
        case .state:
            break  // The status line shows it.
        case let .notice(notice):
            let text = TerminalText.sanitize(notice.text)
            switch notice.level {
            case .info: printLines([style("-- " + text, dim)])
            case .warning: printLines([style("-- " + text, yellow)])
            case .error: printLines([style("!! " + text, red)])
            }
        case let .file(event, savedAs):
            switch event {
            case .progress: break  // The status block shows it.
            case .failed: printLines([style("!! " + FileEventText.line(event, savedAs: savedAs), red)])
            case .offered, .hashed, .done, .resumed:
                printLines([style("-- " + FileEventText.line(event, savedAs: savedAs), dim)])
            }
        case let .info(lines):
            printLines(lines.map(TerminalText.sanitize))
        case .clear:
            eraseBlock()
            out.write("\u{1B}[H\u{1B}[2J")
        }
    }

    func refreshStatus(_ status: ClientStatus) {
        guard !closed else { return }
        if status != self.status || !blockVisible || !handlerInstalled {
            self.status = status
            eraseBlock()
            drawBlock()
        }
    }

    /// The window changed size: let libedit know and redraw the bottom block.
    func resized() {
        guard !closed else { return }
        scl_editline_resize()
        eraseBlock()
        drawBlock()
    }

    func close(exitStatus: ClientExitStatus) {
        guard !closed else { return }
        eraseBlock()
        closed = true
        if handlerInstalled { scl_editline_remove() }
        handlerInstalled = false
        let summary = exitStatus == .success ? "bye" : "bye (\(exitStatus))"
        out.write(style("-- " + summary, dim) + "\r\n")
        restoreTerminal()
    }

    /// Put the terminal back exactly as it was found.
    func restoreTerminal() {
        out.write("\u{1B}[0m")
        _ = tcsetattr(inputFD, TCSANOW, &savedTerminal)
        scl_terminal_restore_disarm()
    }

    private func printLines(_ lines: [String]) {
        guard !closed else { return }
        eraseBlock()
        for line in lines { out.write(line + "\u{1B}[0m\r\n") }
    }

    /// Remove the status line, the prompt and the typed text from the screen (libedit keeps
    /// the text); the cursor ends at the start of the status line's row.
    private func eraseBlock() {
        guard blockVisible else { return }
        let rowsAbove: Int
        if let after = rowsAboveAfterLine {
            rowsAbove = after
        } else {
            var length: Int32 = 0
            let buffer = scl_editline_buffer(&length)
            let point = Int(max(0, min(scl_editline_point(), length)))
            var widthToCursor = Self.displayWidth(Self.prompt)
            if let buffer, point > 0, !lineUntouched {
                let bytes = UnsafeBufferPointer(
                    start: UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt8.self), count: point)
                widthToCursor += Self.displayWidth(bytes)
            }
            // The status bar fills the width it was drawn at. After the window narrows, terminals
            // that reflow (tmux, VTE, kitty, iTerm2, Windows Terminal) wrap it onto several rows,
            // and so many must be erased, or the old bar's tail stays on screen as a second status
            // line. One that clips instead (xterm) loses a row of scrollback from view: the lesser
            // harm. The typed text is rewrapped at the new width in both.
            let columns = terminalColumns()
            let statusRows = max(1, (statusWidthDrawn + columns - 1) / columns)
            rowsAbove = widthToCursor / columns + statusRows
        }
        out.write("\r\u{1B}[\(rowsAbove)A\u{1B}[J")
        rowsAboveAfterLine = nil
        blockVisible = false
    }

    /// Draw the status line and, below it, the prompt with the text being typed.
    private func drawBlock() {
        guard !closed, !blockVisible || !handlerInstalled else { return }
        if blockVisible, let after = rowsAboveAfterLine {
            out.write("\r\u{1B}[\(after)A\u{1B}[J")
            rowsAboveAfterLine = nil
        }
        out.write(statusLine() + "\u{1B}[0m\r\n")
        if handlerInstalled {
            scl_editline_redisplay()
        } else {
            scl_editline_install(Self.prompt)
            handlerInstalled = true
            lineUntouched = true
        }
        blockVisible = true
    }

    /// When each transfer under way first showed, and its bytes then (for the rate).
    /// When and at how many bytes each transfer first showed in the status line, for its rate.
    private struct TransferStart {
        let id: FileID
        let at: Instant
        let bytes: UInt64
    }
    private var transferStarts: [TransferStart] = []

    private func statusLine() -> String {
        let stateText: String
        let stateColor: String
        switch status.state {
        case .connected: (stateText, stateColor) = ("CONNECTED", green)
        case .disconnected, .destroyed: (stateText, stateColor) = (status.state.rawValue, red)
        default: (stateText, stateColor) = (status.state.rawValue, yellow)
        }
        let relay: String = switch status.relay {
        case .up: "relay up"
        case .connecting: "relay connecting"
        case .retrying: "relay reconnecting"
        case .closed: "relay closed"
        }
        let peer: String = switch status.peer {
        case .present: "peer here"
        case .absent: "no peer"
        case .unknown: "peer ?"
        }
        let encryption = status.encrypted ? "encrypted" : "not encrypted yet"
        let verification: String = switch (status.authentication, status.verified) {
        case (_, true): "verified"
        case (.password, false): status.encrypted ? "password-authenticated" : "password set, not yet checked"
        case (.safetyNumber, false): "unverified (/verify)"
        }
        let route = status.route.summary.map { " " + $0 } ?? ""
        var parts = [stateText, "room \(status.room.value)", relay + route, peer, encryption, verification]
        if status.pending > 0 { parts.append("\(status.pending) pending") }
        parts += transferParts()
        let columns = terminalColumns() - 1
        statusWidthDrawn = columns
        var clipped = Self.clip(" " + parts.joined(separator: " | ") + " ", columns: columns)
        // A full-width bar: pad with spaces (the clipped text is all width-1 ASCII).
        clipped += String(repeating: " ", count: max(0, columns - Self.displayWidth(clipped)))
        guard colors, clipped.hasPrefix(" " + stateText) else { return "\u{1B}[7m" + clipped }
        // Colour only the state word, inside the reverse-video bar.
        return "\u{1B}[7m " + stateColor + stateText + "\u{1B}[39m" + String(clipped.dropFirst(1 + stateText.count))
    }

    /// Each transfer under way, croc-style: direction, name, percent, bytes, rate and ETA (the rate
    /// since the transfer first showed here).
    private func transferParts() -> [String] {
        let now = MonotonicClock.now()
        // Plain loops and a named struct, no nested closures: swiftc -O compiled the nested-closure form
        // differently from one run to the next (docs/RELEASE.md, "Compiler nondeterminism").
        var starts: [TransferStart] = []
        var parts: [String] = []
        for transfer in status.transfers {
            var start: TransferStart?
            for known in transferStarts where known.id == transfer.id { start = known }
            if start == nil, parts.count < 3 { start = TransferStart(id: transfer.id, at: now, bytes: transfer.bytes) }
            guard let start else { continue }
            starts.append(start)
            if parts.count < 3 { parts.append(Self.transferText(transfer, since: start, now: now)) }
        }
        transferStarts = starts
        return parts
    }

    private static func transferText(
        _ transfer: FileTransferStatus, since start: TransferStart, now: Instant
    ) -> String {
        let seconds = Double(now.nanoseconds - start.at.nanoseconds) / 1e9
        let rate = seconds > 0.5 ? Double(transfer.bytes - min(transfer.bytes, start.bytes)) / seconds : 0
        let name = String(TerminalText.sanitize(transfer.name).prefix(24))
        var text = (transfer.direction == .outgoing ? "sending " : "receiving ") + name
            + " \(transfer.percent)% of \(megabytes(transfer.sizeBytes))"
        if rate > 0 {
            let eta = Double(transfer.sizeBytes - transfer.bytes) / rate
            text += " \(megabytes(UInt64(rate)))/s ETA \(Int(eta.rounded())) s"
        }
        return text
    }

    static func megabytes(_ bytes: UInt64) -> String {
        let value = Double(bytes) / 1_000_000
        return value < 10 ? String(Int(value * 10) / 10) + "." + String(Int(value * 10) % 10) + " MB"
            : "\(Int(value)) MB"
    }

    // MARK: Helpers

    private func terminalColumns() -> Int {
        var columns: Int32 = 0
        var rows: Int32 = 0
        if scl_window_size(inputFD, &columns, &rows) == 0, columns > 0 { return Int(columns) }
        return 80
    }

    private var bold: String { "\u{1B}[1m" }
    private var dim: String { "\u{1B}[2m" }
    private var red: String { colors ? "\u{1B}[31m" : "\u{1B}[1m" }
    private var green: String { colors ? "\u{1B}[32m" : "" }
    private var yellow: String { colors ? "\u{1B}[33m" : "" }
    private var cyan: String { colors ? "\u{1B}[36m" : "\u{1B}[1m" }

    private func style(_ text: String, _ attribute: String) -> String {
        attribute.isEmpty ? text : attribute + text + "\u{1B}[0m"
    }

    /// `text` cut to at most `columns` display columns.
    static func clip(_ text: String, columns: Int) -> String {
        var width = 0
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let scalarWidth = max(0, Int(scl_wcwidth(scalar.value)))
            if width + scalarWidth > columns { break }
            width += scalarWidth
            result.append(scalar)
        }
        return String(result)
    }

    static func displayWidth(_ text: String) -> Int {
        text.unicodeScalars.reduce(0) { $0 + scalarWidth($1) }
    }

    static func displayWidth(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        displayWidth(String(decoding: bytes, as: UTF8.self))
    }

    private static func scalarWidth(_ scalar: Unicode.Scalar) -> Int {
        if scalar.value < 0x20 || scalar.value == 0x7F { return 2 }  // libedit shows ^X.
        let width = scl_wcwidth(scalar.value)
        return width < 0 ? 1 : Int(width)
    }

    static func isReadable(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0 && descriptor.revents & Int16(POLLIN) != 0
    }
}
