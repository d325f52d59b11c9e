import ChatCore
import ClientCore

/// What the client shows; one implementation per mode.
protocol ClientRenderer: AnyObject {
    /// Show one event; `status` is the state after it.
    func render(_ event: DisplayEvent, status: ClientStatus)
    /// The status may have changed (called after each batch of events).
    func refreshStatus(_ status: ClientStatus)
    /// Leave: restore whatever was changed, say goodbye.
    func close(exitStatus: ClientExitStatus)
}

/// Pipe mode, plain: each message from the peer is one line on stdout, sanitized; everything
/// else (states, notices, errors) goes to stderr as `securechat: ...`.
final class PlainRenderer: ClientRenderer {
    private let stdout: FileOutput
    private let stderr: FileOutput

    init(stdout: FileOutput, stderr: FileOutput) {
        self.stdout = stdout
        self.stderr = stderr
    }

    func render(_ event: DisplayEvent, status: ClientStatus) {
        switch event {
        case let .roomCreated(room, invitation):
            note("room \(room.value) created; code \(invitation.code); on the other side run: "
                + invitation.commands.joined(separator: "   or (another machine): ")
                + "   and type the code when it asks")
        case let .safetyNumber(number, authentication):
            let meaning = authentication == .password
                ? "authenticated by the password" : "no password: compare it with your peer's"
            note("safety number \(number) (\(meaning))")
        case let .message(message):
            stdout.write(TerminalText.sanitize(message.text) + "\n")
        case let .sent(message, queued):
            if queued { note("message \(message.id) queued; it is sent once the session is (re-)keyed") }
        case .delivered, .info, .clear:
            break
        case let .undeliverable(messages, reason):
            for message in messages {
                note("NOT DELIVERED (\(reason)) \(message.id): \(TerminalText.sanitize(message.text))")
            }
        case let .refused(reason):
            note(reason)
        case let .state(_, to):
            note("state \(to.rawValue)")
        case let .notice(notice):
            note((notice.level == .info ? "" : "\(notice.level.rawValue): ") + TerminalText.sanitize(notice.text))
        case let .file(event, savedAs):
            note(FileEventText.line(event, savedAs: savedAs))
        }
    }

    func refreshStatus(_ status: ClientStatus) {}

    func close(exitStatus: ClientExitStatus) {}

    private func note(_ text: String) {
        stderr.write("securechat: \(text)\n")
    }
}

/// Pipe mode with `--json`: one JSON object per line on stdout for every event.
///
/// Events (`"event"` field): `room`, `message`, `sent`, `delivered`, `undeliverable`,
/// `refused`, `state`, `notice` (with `kind`, `level`, `text`), `error` (a notice of level
/// error), `exit` (with `code`, last). Documented in `securechat --help`.
final class JSONRenderer: ClientRenderer {
    private let stdout: FileOutput

    init(stdout: FileOutput) {
        self.stdout = stdout
    }

    func render(_ event: DisplayEvent, status: ClientStatus) {
        var line: JSONLine
        switch event {
        case let .roomCreated(room, invitation):
            line = JSONLine(event: "room")
            line.field("room", room.value)
            line.field("code", invitation.code)
            line.field("command", invitation.commands[0])
            if invitation.commands.count > 1 { line.field("remote_command", invitation.commands[1]) }
        case let .safetyNumber(number, authentication):
            line = JSONLine(event: "safety_number")
            line.field("number", number.description)
            line.field("authentication", authentication.rawValue)
        case let .message(message):
            line = JSONLine(event: "message")
            line.field("seq", message.sequence)
            line.field("text", message.text)
        case let .sent(message, queued):
            line = JSONLine(event: "sent")
            line.field("id", message.id.value)
            line.field("queued", queued)
        case let .delivered(ids):
            line = JSONLine(event: "delivered")
            line.field("ids", ids.map(\.value))
        case let .undeliverable(messages, reason):
            line = JSONLine(event: "undeliverable")
            line.field("ids", messages.map(\.id.value))
            line.field("reason", reason.eventName)
        case let .refused(reason):
            line = JSONLine(event: "refused")
            line.field("reason", reason)
        case let .state(from, to):
            line = JSONLine(event: "state")
            line.field("from", from.rawValue)
            line.field("to", to.rawValue)
        case let .notice(notice):
            line = JSONLine(event: notice.level == .error ? "error" : "notice")
            line.field("kind", notice.kind.rawValue)
            line.field("level", notice.level.rawValue)
            line.field("text", notice.text)
            if [.connecting, .relayConnected, .reconnected].contains(notice.kind) {
                // How the relay is reached, from the first event on: scripts check it there.
                line.field("via", status.route.kind)
                if let proxy = status.route.proxyEndpoint { line.field("proxy", proxy) }
            }
        case let .file(event, savedAs):
            line = Self.fileLine(event, savedAs: savedAs)
        case .info, .clear:
            return
        }
        stdout.write(line.line)
    }

    static func fileLine(_ event: FileEvent, savedAs: String?) -> JSONLine {
        var line: JSONLine
        let info: FileOfferInfo
        switch event {
        case let .offered(offer, direction):
            info = offer
            line = JSONLine(event: "file_offer")
            line.field("direction", direction.rawValue)
            // An offer made before its file was hashed: `file_hash` brings the hash.
            if offer.hashKnown { line.field("hash", FileHex.encode(offer.hash)) }
            line.field("hash_follows", offer.hashFollows)
        case let .hashed(offer, direction):
            info = offer
            line = JSONLine(event: "file_hash")
            line.field("direction", direction.rawValue)
            line.field("hash", FileHex.encode(offer.hash))
        case let .progress(offer, direction, bytes):
            info = offer
            line = JSONLine(event: "file_progress")
            line.field("direction", direction.rawValue)
            line.field("bytes", bytes)
        case let .done(offer, direction, resent):
            info = offer
            line = JSONLine(event: "file_done")
            line.field("direction", direction.rawValue)
            line.field("hash", FileHex.encode(offer.hash))
            if let savedAs { line.field("path", savedAs) }
            if direction == .outgoing { line.field("chunks_resent", resent) }
        case let .resumed(offer, direction, bytes):
            info = offer
            line = JSONLine(event: "file_resumed")
            line.field("direction", direction.rawValue)
            line.field("bytes", bytes)
        case let .failed(offer, direction, failure):
            info = offer
            line = JSONLine(event: "file_failed")
            line.field("direction", direction.rawValue)
            line.field("reason", failure.eventName)
        }
        line.field("id", info.id.description)
        line.field("name", info.name)
        line.field("size", info.sizeBytes)
        return line
    }

    func refreshStatus(_ status: ClientStatus) {}

    func close(exitStatus: ClientExitStatus) {
        var line = JSONLine(event: "exit")
        line.field("code", Int(exitStatus.code))
        stdout.write(line.line)
    }
}

/// The usage text for `--json`, in `--help`.
public let jsonEventsHelp = """
    JSON events (--json): one object per line on stdout, "event" first.
      room           a room was created: "room", "code" (ROOM-word-word: pass
                     it on, the words are the password), "command" (what the
                     peer runs), "remote_command" (from another machine, when
                     SECURECHAT_PEER_COMMAND names the same-machine command)
      safety_number  a handshake completed: "number" (60 digits in groups of
                     5; equal on both sides unless someone is in the middle),
                     "authentication" (password, safety-number)
      state          "from", "to": INIT SEARCHING USER_FOUND KEY_SETUP
                     CONNECTED DISCONNECTED DESTROYED
      message        from the peer: "seq", "text" (the exact text)
      sent           your line was accepted: "id", "queued" (not connected yet)
      delivered      the peer confirmed: "ids"
      undeliverable  never confirmed: "ids", "reason" (peer_changed,
                     session_ended, peer_left)
      refused        a line was not accepted: "reason"
      notice, error  "kind", "level", "text" (relay_lost, retrying,
                     reconnected, rekeyed, peer_left, peer_leaving,
                     peer_restarted, reauthenticating, handshake_refused,
                     authentication_failed, code_spent, code_on_command_line,
                     unencrypted_relay, memory_not_locked, file_problem,
                     file_not_regular (a path to send that is a FIFO, a
                     device, a socket or a directory), ...); connecting,
                     relay_connected and reconnected add "via" (direct, tor,
                     proxy) and, through a proxy, "proxy" (its HOST:PORT)
      file_offer     a file offered: "direction" (outgoing: yours; incoming:
                     the peer's), "id", "name" (as offered: untrusted), "size",
                     "hash_follows", and "hash" (BLAKE2b-256, hex) unless it
                     follows (a file over 4 MiB, offered before it is hashed)
      file_hash      the hash that followed an offer: "direction", "id",
                     "name", "size", "hash"
      file_progress  "direction", "id", "name", "size", "bytes" (acknowledged
                     by the receiver, or written); at most 4 a second each
      file_done      stored and its hash checked: "direction", "id", "name",
                     "size", "hash", and "path" where it was saved (incoming)
                     or "chunks_resent" after reconnects (outgoing)
      file_resumed   continued from the .part a previous session left:
                     "direction", "id", "name", "size", "bytes" (kept, not
                     sent again)
      file_failed    "direction", "id", "name", "size", "reason"
                     (rejected_declined, rejected_too_large, rejected_no_space,
                     rejected_storage, rejected_busy, cancelled,
                     cancelled_by_peer, hash_mismatch, protocol_error,
                     storage, session_ended, unconfirmed (every byte sent,
                     the session ended before the receiver confirmed it),
                     peer_changed, peer_left)
      exit           the last line: "code"
    """
