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
    static let peerRestarted = ClientNotice(.peerRestarted, .info, "the peer reconnected; re-keying")

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
        let conversation = resumed ? "conversation resumed" : "the peer restarted: new conversation"
        return ClientNotice(.rekeyed, .info, "re-keyed with fresh keys (a new safety number); \(how); \(conversation)")
    }

    static func relayError(_ code: RelayErrorCode, _ message: String) -> ClientNotice {
        let level: Level = [.roomFull, .invalidRoom, .alreadyJoined].contains(code) ? .error : .warning
        return ClientNotice(.relayError, level, "relay: \(code.rawValue): \(message)")
    }

    static func suspiciousFrame(_ rejection: FrameRejection) -> ClientNotice {
        ClientNotice(.suspiciousFrame, .warning, "a frame failed authentication and was dropped (\(rejection))")
    }

    /// What the user is told when the handshake could not be authenticated: what happened and
    /// what to do next.
    static func authenticationFailed(_ failure: AuthenticationFailure) -> ClientNotice {
        let newRoom = "start a new room with `securechat` and share the new code"
        let text = switch failure {
        case .passwordMismatch:
            "authentication failed: the password did not match (or someone tried to intercept). "
                + "This code is spent; \(newRoom)."
        case let .tooManyAttempts(count):
            "authentication failed: \(count) handshakes ended before the peer proved the password "
                + "(someone may be guessing it). This code is spent; \(newRoom)."
        case .peerHasNoPassword:
            "authentication failed: the peer joined without the password (or someone tried to "
                + "intercept). This code is spent; \(newRoom), and make sure your peer types all of it."
        case .peerHasPassword:
            "authentication failed: your peer uses a password and you joined without one. "
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
