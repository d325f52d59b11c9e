import ChatCore

/// Why a connection attempt failed.
public struct TransportFailure: Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, for the user (no secrets, no message text).
    public var reason: String
    /// True when trying again cannot help (the relay's certificate is not trusted, the server
    /// is not a WebSocket relay): the client gives up at once.
    public var permanent: Bool

    public init(reason: String, permanent: Bool) {
        self.reason = reason
        self.permanent = permanent
    }

    public var description: String { reason }
}

/// Everything the shell feeds into a `ClientDriver`. Connection events carry the `ConnectionID`
/// of the `.connect` action that opened them; events of a connection that is no longer the
/// current one are ignored.
public enum ClientEvent: Hashable, Sendable {
    /// Begin: announce the room and open the first connection.
    case start
    /// The WebSocket to the relay is open.
    case transportUp(ConnectionID)
    /// One text frame from the relay.
    case transportFrame(ConnectionID, [UInt8])
    /// The relay selected `securechat.binary` on this connection (posted right after
    /// `transportUp`): SIGNALs without a key go to it as binary frames (docs/PROTOCOL.md).
    case transportBinarySignals(ConnectionID)
    /// One binary frame from the relay: a binary SIGNAL after `transportBinarySignals`; without it,
    /// read (and refused) as text, as a client from before binary SIGNALs does.
    case transportBinaryFrame(ConnectionID, [UInt8])
    /// A ping from the relay, with its payload (the driver answers with `.pong`).
    case transportPing(ConnectionID, [UInt8])
    /// A pong from the relay (the answer to `.ping`).
    case transportPong(ConnectionID)
    /// The connection's outbound buffer rose over its high watermark (false) or fell under its low
    /// one (true). A new connection starts writable. No file chunk is sent while it is not.
    case transportWritable(ConnectionID, Bool)
    /// The connection closed (after it was up, or while it was being opened).
    case transportClosed(ConnectionID, reason: String)
    /// Opening the connection failed.
    case transportFailed(ConnectionID, TransportFailure)
    /// One complete input line (a message, or in interactive mode possibly a command).
    case line(String)
    /// A line could not be read as text (not UTF-8, too long): it is reported, never sent.
    case unreadableLine(reason: String)
    /// End of input (end of stdin in pipe mode, Ctrl-D on an empty line interactively).
    case endOfInput
    /// A terminating signal arrived (SIGINT, SIGTERM, SIGHUP, SIGQUIT).
    case signal(Int32)

    /// SIGINT's number: 2 on every POSIX system (`kill -2`, XSI), so ClientCore needs no C library
    /// to treat Ctrl-C as a quit key.
    public static let interruptSignal: Int32 = 2
}

/// What the driver asks its shell to do.
public enum ClientAction: Hashable, Sendable {
    /// Open a new connection to the relay with this identifier.
    case connect(ConnectionID)
    /// Send one text frame on the connection.
    case send(ConnectionID, [UInt8])
    /// Send one binary frame (a binary SIGNAL) on the connection; only after
    /// `transportBinarySignals` for it.
    case sendBinary(ConnectionID, [UInt8])
    /// Send one file chunk on the connection, a binary frame (`binary`, after
    /// `transportBinarySignals`) or a text one. Unlike `.send` and `.sendBinary`, the shell never
    /// drops it for a full outbound buffer: the driver sends no chunk while the connection is
    /// unwritable (`transportWritable`), and the transfers' window bounds what is in flight. A
    /// dropped chunk would cost the transfer a stall timeout.
    case sendFileSignal(ConnectionID, [UInt8], binary: Bool)
    /// Send a ping on the connection (the relay has been quiet for `keepalive`).
    case ping(ConnectionID)
    /// Answer the relay's ping with this payload.
    case pong(ConnectionID, [UInt8])
    /// Close the connection (the shell runs the WebSocket closing handshake, bounded). The driver
    /// has already moved on: whatever the connection reports afterwards is ignored.
    case close(ConnectionID)
    /// Show something to the user.
    case display(DisplayEvent)
    /// Everything is done: restore the terminal and exit with this status.
    case exit(ClientExitStatus)
}

/// A message the user sent, as the UI remembers it until the peer confirms it.
public struct SentMessage: Hashable, Sendable {
    public let id: MessageID
    public let text: String

    public init(id: MessageID, text: String) {
        self.id = id
        self.text = text
    }
}

/// Something to show. The renderers (terminal, plain pipe, JSON) decide how.
public enum DisplayEvent: Hashable, Sendable {
    /// A new room was created; the peer should run one of the invitation's commands.
    case roomCreated(room: RoomCode, invitation: Invitation)
    /// A handshake completed: the safety number to compare with the peer's (both sides show the
    /// same number unless someone is in the middle). Interactive mode shows it on `/verify`.
    case safetyNumber(SafetyNumber, authentication: SessionAuthentication)
    /// A message from the peer (raw: renderers sanitize it).
    case message(IncomingMessage)
    /// The user's message was accepted. `queued`: not connected now; it goes after (re-)keying.
    case sent(SentMessage, queued: Bool)
    /// The peer confirmed these messages.
    case delivered([MessageID])
    /// These messages will never be confirmed.
    case undeliverable([SentMessage], UndeliverableReason)
    /// A line was not accepted as a message.
    case refused(String)
    /// The session's lifecycle state changed.
    case state(from: SessionState, to: SessionState)
    /// A notice about the connection or the session.
    case notice(ClientNotice)
    /// Lines of help or of the verification report, for the interactive UI.
    case info([String])
    /// Clear the screen (interactive).
    case clear
    /// A file transfer's news; `savedAs`: where a received file now is (with `.done`).
    case file(FileEvent, savedAs: String?)
}

extension UndeliverableReason {
    /// The stable name of the reason in `--json` (`undeliverable` events); scripts match on it.
    public var eventName: String {
        switch self {
        case .peerChanged: "peer_changed"
        case .sessionEnded: "session_ended"
        case .peerLeft: "peer_left"
        }
    }
}
