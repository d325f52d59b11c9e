import ChatCore
import ChatNetworking

/// What the user passes on to the peer when this client created the room: the code, and the
/// exact commands that join it.
///
/// Codes themselves are ChatCore's `ChatCode` (`ROOM-word-word`; only the room part ever reaches
/// the relay, the words are the password). This type only words the invitation.
public struct Invitation: Hashable, Sendable {
    /// The code to pass on, password words included: shown to this user, never sent, never logged.
    public var code: String
    /// The commands that join the room, the one to use first first: `$SECURECHAT_PEER_COMMAND
    /// CODE` (the same machine; `run.sh` sets the variable) followed by `securechat CODE --relay
    /// URL` (another machine), or just `securechat CODE` when the variable is unset.
    public var commands: [String]

    public init(code: String, commands: [String]) {
        precondition(!commands.isEmpty)
        self.code = code
        self.commands = commands
    }

    /// The invitation for a room this client created.
    /// - Parameters:
    ///   - code: `ChatCode.revealForSharing()` (or the room alone when the password is the user's own).
    ///   - ownPassword: the password is not in the code: the peer must add `--password`.
    ///   - relay: the relay URL as typed; `defaultRelay`: the one used when none is given.
    ///   - caFile: a CA file was given (the peer needs the same CA certificate).
    ///   - sameMachineCommand: `SECURECHAT_PEER_COMMAND`, if set and not empty.
    public static func make(
        code: String, ownPassword: Bool, relay: String, defaultRelay: String, caFile: String?,
        sameMachineCommand: String?
    ) -> Invitation {
        let passwordFlag = ownPassword ? " --password" : ""
        let caFlag = caFile != nil ? " --ca-file <the same CA certificate>" : ""
        if let prefix = sameMachineCommand, !prefix.isEmpty {
            var commands = ["\(prefix) \(code)\(passwordFlag)"]
            // Another machine cannot reach a relay on a loopback address: offer no command for it.
            if !isLoopback(relay) { commands.append("securechat \(code) --relay \(relay)\(caFlag)\(passwordFlag)") }
            return Invitation(code: code, commands: commands)
        }
        let relayFlag = relay != defaultRelay ? " --relay \(relay)" : ""
        return Invitation(code: code, commands: ["securechat \(code)\(relayFlag)\(caFlag)\(passwordFlag)"])
    }

    /// True when `relay` (a ws:// or wss:// URL) names a loopback host.
    static func isLoopback(_ relay: String) -> Bool {
        guard let url = try? WebSocketURL(relay) else { return false }
        return url.host == "localhost" || url.host.hasPrefix("127.") || url.host == "::1" || url.host == "[::1]"
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
