import ChatCore

/// What the user passes on to the peer when this client created the room: the code, and the
/// exact commands that join it.
///
/// Codes themselves are ChatCore's `ChatCode` (`ROOM-word-word`; only the room part ever reaches
/// the relay, the words are the password). This type only carries the invitation; the shell words
/// it (`Invitation.make` in ChatClient) from the command line and the environment.
public struct Invitation: Hashable, Sendable {
    /// The code to pass on, password words included: shown to this user, never sent, never logged.
    public var code: String
    /// The commands that join the room, the one to use first first: `$SECURECHAT_PEER_COMMAND
    /// --join` (the same machine; `run.sh` sets the variable) followed by `securechat --join --relay
    /// URL` (another machine), or just `securechat --join` when the variable is unset. `--join` asks
    /// for the code: it is never part of a command line.
    public var commands: [String]

    public init(code: String, commands: [String]) {
        precondition(!commands.isEmpty)
        self.code = code
        self.commands = commands
    }
}

extension String {
    /// The string without leading and trailing ASCII spaces, tabs, CR and LF (no Foundation).
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
