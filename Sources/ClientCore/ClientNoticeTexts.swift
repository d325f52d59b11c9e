import ChatCore

/// Every notice the driver gives, with its words, in one place. Notices are rare (connection
/// changes, handshakes, commands), so building their text when one is given costs nothing that matters;
/// nothing here runs per frame.
extension ClientNotice {
    // MARK: The relay link

    static let connecting = ClientNotice(.connecting, .info, "connecting to the relay")
    static let relayConnected = ClientNotice(.relayConnected, .info, "connected to the relay")
    static let reconnected = ClientNotice(.reconnected, .info, "reconnected to the relay; re-keying with fresh keys")

    static func relayLost(_ reason: String) -> ClientNotice {
        ClientNotice(.relayLost, .warning, "connection to the relay lost (\(reason))")
    }

    static func relayUnreachable(_ reason: String) -> ClientNotice {
        ClientNotice(.relayUnreachable, .warning, "cannot reach the relay (\(reason))")
    }

    /// A failure that retrying cannot fix (an untrusted certificate, not a relay).
    static func relayUnusable(_ reason: String) -> ClientNotice {
        ClientNotice(.relayUnreachable, .error, "cannot use the relay: \(reason)")
    }

    static func retrying(in delay: Duration, attempt: Int) -> ClientNotice {
        ClientNotice(.retrying, .info, "retrying in \(tenthsOfSeconds(delay)) s (attempt \(attempt))")
    }

    static func gaveUp(after duration: Duration) -> ClientNotice {
        ClientNotice(.gaveUp, .error, "giving up: no relay for \(wholeSeconds(duration)) s")
    }

    /// Why the driver closed a link whose relay answered nothing, not even its ping.
    static func silentRelayReason(_ keepalive: Duration) -> String {
        "the relay stopped answering: no reply to a ping within \(wholeSeconds(keepalive)) s"
    }

    // MARK: Input

    static func unknownCommand(_ command: String) -> ClientNotice {
        ClientNotice(.unknownCommand, .warning,
                     "unknown command \(command.prefix(32)); /help lists them, //text sends a line starting with /")
    }

    static func confirmQuit(pending: Int) -> ClientNotice {
        ClientNotice(.confirmQuit, .warning,
                     "\(pending) message(s) not yet confirmed by the peer; /quit again to leave anyway")
    }

    static func draining(pending: Int, timeout: Duration) -> ClientNotice {
        ClientNotice(.draining, .info,
                     "end of input: waiting up to \(wholeSeconds(timeout)) s for \(pending) message(s) to be confirmed")
    }

    // MARK: The session

    static func joined(peerPresent: Bool) -> ClientNotice {
        ClientNotice(.joined, .info, "joined the room; " + (peerPresent ? "the peer is here" : "waiting for the peer"))
    }

    static let peerFound = ClientNotice(.peerFound, .info, "peer found; exchanging keys")
    static let peerLeft = ClientNotice(
        .peerLeft, .warning, "the peer left (it quit or lost its connection); waiting for it to come back")
    static let peerLeftForGood = ClientNotice(.peerLeft, .info, "the peer left the chat")
    static let peerLeaving = ClientNotice(
        .peerLeaving, .info, "the peer is leaving the chat; what you send from now on will not reach it")

    /// A handshake with a new instance of the peer (its process restarted) was confirmed.
    static func peerRestarted(authentication: SessionAuthentication, interactive: Bool) -> ClientNotice {
        let text = switch authentication {
        case .password:
            "the peer restarted (a new process), authenticated again by the password: a new conversation"
        case .safetyNumber:
            "the peer restarted (a new process): this is a NEW, UNVERIFIED peer with a new safety number; "
                + (interactive ? "compare it again with /verify" : "compare it again with your peer's")
        }
        return ClientNotice(.peerRestarted, .warning, text)
    }

    static func reauthenticating(attempt: Int, of budget: Int) -> ClientNotice {
        ClientNotice(.reauthenticating, .warning,
                     "the peer restarted: re-authenticating with the password, attempt \(attempt) of \(budget)")
    }

    /// While CONNECTED, a re-key that could not be authenticated was refused.
    static func handshakeRefused(_ failure: AuthenticationFailure) -> ClientNotice {
        ClientNotice(.handshakeRefused, .warning,
                     "someone tried to take over the conversation and was refused (\(failure)); "
                         + "the chat goes on with the keys you had")
    }

    static let codeSpent = ClientNotice(
        .codeSpent, .warning,
        "this code is spent: a password handshake was never confirmed (someone may have tried a guess). "
            + "Do not use it again; start a new room with `securechat`.")

    static func incompatiblePeer(version: UInt8) -> ClientNotice {
        ClientNotice(.incompatiblePeer, .error,
                     "the peer's securechat speaks session protocol version \(version) and this one "
                         + "\(SessionProtocol.version): both need the same version; update the older one")
    }

    /// A handshake completed: the first one (`first`), or a re-key.
    static func secured(
        first: Bool, resumed: Bool, authentication: SessionAuthentication, interactive: Bool
    ) -> ClientNotice {
        let how = switch authentication {
        case .password: "authenticated by the password"
        case .safetyNumber where interactive: "no password: compare safety numbers with /verify"
        case .safetyNumber: "no password: compare the safety number with your peer's"
        }
        if first { return ClientNotice(.secured, .info, "end-to-end encrypted; \(how)") }
        guard resumed else {
            return ClientNotice(.rekeyed, .info, "re-keyed with fresh keys (a new safety number); \(how); new conversation")
        }
        return ClientNotice(
            .rekeyed, .info,
            "re-keyed with fresh keys, proven by the previous ones (the safety number stays); conversation resumed")
    }

    static func relayError(_ code: RelayErrorCode, _ message: String) -> ClientNotice {
        let level: Level = [.roomFull, .invalidRoom, .alreadyJoined].contains(code) ? .error : .warning
        return ClientNotice(.relayError, level, "relay: \(code.rawValue): \(message)")
    }

    static func suspiciousFrame(_ rejection: FrameRejection) -> ClientNotice {
        ClientNotice(.suspiciousFrame, .warning, "a frame failed authentication and was dropped (\(rejection))")
    }

    /// What the user is told when the handshake could not be authenticated: what happened, its
    /// two possible causes, and what to do next.
    static func authenticationFailed(_ failure: AuthenticationFailure) -> ClientNotice {
        let newRoom = "start a new room with `securechat` and share the new code"
        let causes = "Either the code was mistyped (check every word with your peer) or someone in the middle "
            + "tried to intercept the chat. This code is spent; \(newRoom)."
        let text = switch failure {
        case .passwordMismatch:
            "AUTHENTICATION FAILED: the password did not match. \(causes)"
        case let .tooManyAttempts(count):
            "AUTHENTICATION FAILED: \(count) handshakes ended before the peer proved the password "
                + "(someone may be guessing it). This code is spent; \(newRoom)."
        case .confirmationMismatch:
            "AUTHENTICATION FAILED: the keys did not match: someone in the middle substituted them on the way. "
                + causes
        case .continuityNotProven:
            "AUTHENTICATION FAILED: the peer came back and could not prove the keys of your conversation: "
                + "someone may be impersonating it. Start a new room with `securechat` and compare safety numbers."
        case .handshakeTimedOut:
            "AUTHENTICATION FAILED: the key exchange did not complete although your peer is in the room: "
                + "someone in the middle may be blocking it. \(causes)"
        case .peerHasNoPassword:
            "AUTHENTICATION FAILED: the peer joined without the password (or someone tried to "
                + "intercept). This code is spent; \(newRoom), and make sure your peer types all of it."
        case .peerHasPassword:
            "AUTHENTICATION FAILED: your peer uses a password and you joined without one. "
                + "Join again with the whole code your peer gave you (ROOM-word-word), or with --password."
        }
        return ClientNotice(.authenticationFailed, .error, text)
    }

    static func ended(_ reason: SessionEndReason, cause: ClientDriver.EndCause?) -> ClientNotice {
        let why: String = switch cause {
        case .gaveUp, .permanentFailure: "no relay"
        case .drainTimedOut: "the peer did not confirm in time"
        case let .signal(number) where number != ClientEvent.interruptSignal: "signal \(number)"
        case .userQuit, .signal, nil: "\(reason)"
        }
        return ClientNotice(.ended, .info, "session ended (\(why)); keys wiped")
    }

    // MARK: Verification

    static let verified = ClientNotice(
        .verified, .info, "safety number verified: the same on both sides, nobody is in the middle of this session")
    static let verifyMismatch = ClientNotice(
        .verifyMismatch, .error,
        "the safety numbers DIFFER (or a digit was mistyped; all 60 are needed): someone may be in the "
            + "middle. Do not trust this session; /quit and start a new room with a password.")

    static let noSafetyNumberYet = "No safety number yet: wait until the status line says CONNECTED."

    /// `/verify`'s report: the number, and what comparing it proves.
    static func verificationReport(_ number: SafetyNumber, authentication: SessionAuthentication) -> [String] {
        var lines = ["Safety number (the same on both sides unless someone is in the middle):"]
        lines += number.displayLines.map { "    " + $0 }
        switch authentication {
        case .password:
            lines += [
                "The password authenticated this session: a relay in the middle would have made the handshake fail.",
                "Comparing the number with your peer is an extra check.",
            ]
        case .safetyNumber:
            lines += [
                "No password: only comparing this number detects a relay in the middle. Compare all 60 digits",
                "with your peer over another channel (phone, in person; not this chat), then type",
                "/verify followed by the number your peer reads out. Every reconnect brings a new number.",
            ]
        }
        return lines
    }

    // MARK: Numbers without Foundation

    /// A duration as seconds with one decimal ("2.5").
    static func tenthsOfSeconds(_ duration: Duration) -> String {
        let tenths = (duration.wholeMilliseconds + 50) / 100
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// A duration as whole seconds ("15"), or with one decimal when it is not whole ("0.5").
    static func wholeSeconds(_ duration: Duration) -> String {
        let milliseconds = duration.wholeMilliseconds
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000)" : tenthsOfSeconds(duration)
    }
}
