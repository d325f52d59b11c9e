import ChatNetworking
import ClientCore

extension Invitation {
    /// The invitation for a room this client created.
    /// - Parameters:
    ///   - code: `ChatCode.revealForSharing()` (or the room alone when the password is the user's own).
    ///   - ownPassword: the password is not in the code: the peer must add `--password`.
    ///   - relay: the relay URL as typed; `defaultRelay`: the one used when none is given.
    ///   - caFile: a CA file was given (the peer needs the same CA certificate).
    ///   - sameMachineCommand: `SECURECHAT_PEER_COMMAND`, if set and not empty.
    /// - Returns: commands with `--join`, which asks the peer for the code.
    public static func make(
        code: String, ownPassword: Bool, relay: String, defaultRelay: String, caFile: String?,
        sameMachineCommand: String?
    ) -> Invitation {
        // The peer types the code at the prompt of --join: never on a command line, where other
        // users can read it (ps, /proc) and the shell keeps it in its history.
        let passwordFlag = ownPassword ? " --password" : ""
        // An onion service is reachable through Tor only: the peer needs --tor too.
        let torFlag = ((try? WebSocketURL(relay))?.hostIsOnion ?? false) ? " --tor" : ""
        let caFlag = caFile != nil ? " --ca-file <the same CA certificate>" : ""
        if let prefix = sameMachineCommand, !prefix.isEmpty {
            var commands = ["\(prefix) --join\(passwordFlag)"]
            // Another machine cannot reach a relay on a loopback address: offer no command for it.
            if !isLoopback(relay) {
                commands.append("securechat --join\(torFlag) --relay \(relay)\(caFlag)\(passwordFlag)")
            }
            return Invitation(code: code, commands: commands)
        }
        let relayFlag = relay != defaultRelay ? " --relay \(relay)" : ""
        return Invitation(code: code, commands: ["securechat --join\(torFlag)\(relayFlag)\(caFlag)\(passwordFlag)"])
    }

    /// True when `relay` (a ws:// or wss:// URL) names a loopback host.
    static func isLoopback(_ relay: String) -> Bool {
        (try? WebSocketURL(relay))?.hostIsLoopback ?? false
    }
}
