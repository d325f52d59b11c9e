import ChatCore

/// Every notice the driver gives, with its words, in one place. Notices are rare (connection
/// changes, handshakes, commands), so building their text when one is given costs nothing that matters;
/// nothing here runs per frame.
extension ClientNotice {
    // MARK: The relay link

    static func connecting(_ route: RelayRoute) -> ClientNotice {
        ClientNotice(.connecting, .info, "connecting to the relay" + (route.summary.map { " " + $0 } ?? ""))
    }

    static func relayConnected(_ route: RelayRoute) -> ClientNotice {
        ClientNotice(.relayConnected, .info, "connected to the relay" + (route.summary.map { " " + $0 } ?? ""))
    }

    static let reconnected = ClientNotice(.reconnected, .info, "reconnected to the relay; re-keying with fresh keys")

    static func relayLost(_ reason: String) -> ClientNotice {
        ClientNotice(.relayLost, .warning, "connection to the relay lost (\(reason))")
    }

    static func relayUnreachable(_ reason: String) -> ClientNotice {
        ClientNotice(.relayUnreachable, .warning, "cannot reach the relay: \(reason)")
    }

    /// The driver's own deadline for opening a connection passed.
    static func connectTimedOut(_ timeout: Duration) -> String {
        "no answer within \(wholeSeconds(timeout)) s; check the address in --relay and any firewall in between"
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

    // MARK: Files

    static func fileProblem(_ text: String) -> ClientNotice {
        ClientNotice(.fileProblem, .warning, text)
    }

    /// `/send PATH` or `--send PATH` names no regular file: `reason` says what it is.
    static func fileNotRegular(_ path: String, _ reason: String) -> ClientNotice {
        ClientNotice(.fileNotRegular, .warning, "cannot send \(path): \(reason); only a regular file can be sent")
    }

    /// What `--accept-files DIR` holds from transfers cut off before: kept to resume, never
    /// deleted by the client on its own (the user decides).
    static func fileKeptParts(_ kept: KeptParts, directory: String) -> ClientNotice {
        let megabytes = (kept.bytes + 999_999) / 1_000_000
        let age = kept.oldestDays == 0 ? "today" : kept.oldestDays == 1 ? "1 day ago" : "\(kept.oldestDays) days ago"
        return ClientNotice(
            .fileKeptParts, .info,
            "\(directory) holds \(kept.count) .part file\(kept.count == 1 ? "" : "s") (\(megabytes) MB) of "
                + "transfers cut off, the oldest from \(age): each resumes if its file is offered again; "
                + "delete those you do not expect")
    }

    static let fileOffered = ClientNotice(
        .fileOffered, .info, "the peer offers a file: /accept [DIR] to receive it, /reject to refuse it")

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

    /// The relay's ERROR, worded from its code alone: the relay's own text (which a hostile relay
    /// chooses) and the code follow in brackets only with `verbose`.
    static func relayError(_ code: RelayErrorCode, _ message: String, verbose: Bool) -> ClientNotice {
        let level: Level = [.roomFull, .invalidRoom, .alreadyJoined].contains(code) ? .error : .warning
        let detail = verbose ? "relay: \(code.rawValue): \(message)" : nil
        return ClientNotice(.relayError, level, withDetail(relayErrorText(code), detail))
    }

    /// What a relay error code means for the user, and what to do (or what the client does).
    static func relayErrorText(_ code: RelayErrorCode) -> String {
        switch code {
        case .roomFull: "the room already has two people in it; check the code with your peer, or start a new room"
        case .seatReserved:
            "the room's other seat is held for a peer that is reconnecting (up to 30 s); the client keeps trying"
        case .invalidRoom: "the relay refused the room code as invalid; check the code"
        case .alreadyJoined: "the relay says this connection is already in a room (a client bug); start again"
        case .noPeer: "the peer is not in the room right now; what you send waits for it"
        case .rateLimited:
            "the relay is slowing this client down (too much sent too fast); nothing is lost, it goes out as allowed"
        case .joinRateLimited: "the relay refuses joins from your address for now (too many); the client keeps trying"
        case .tooManyConnections:
            "the relay has too many connections (from your address, or in all); the client keeps trying"
        case .tooManyRooms: "the relay is full (too many rooms); the client keeps trying, or use another relay"
        case .idleTimeout: "the relay closed this connection as idle; the client reconnects"
        case .joinTimeout: "the relay closed this connection because no room was joined in time; the client reconnects"
        case .tooManyErrors:
            "the relay closed this connection after too many messages it did not understand "
                + "(a different version of securechat?); the client reconnects"
        case .shuttingDown: "the relay is shutting down; the client reconnects when it is back"
        case .internalError: "the relay had an internal error; the client keeps trying"
        case .clusterUnavailable: "the relay cannot reach the rest of its cluster right now; the client keeps trying"
        case .frameTooLarge: "a message was larger than the relay accepts (a different version of securechat?)"
        case .malformedJSON, .unknownType, .unknownField, .missingField, .invalidField, .invalidKind, .invalidBase64,
             .notJoined:
            "the relay did not understand this client (a different version of securechat?); update both"
        }
    }

    static func suspiciousFrame(_ rejection: FrameRejection, verbose: Bool) -> ClientNotice {
        let text = "a message that failed its integrity check was dropped (someone on the path may be tampering); "
            + "the session goes on"
        return ClientNotice(.suspiciousFrame, .warning, withDetail(text, verbose ? "\(rejection)" : nil))
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
        case .userQuit, .signal, nil:
            switch reason {
            case .relayRefused: "the relay refused the room"
            case .userQuit, .authenticationFailed, .incompatiblePeer: "\(reason)"
            }
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
                "/verify followed by the number your peer reads out. Reconnects keep the number (each re-key",
                "proves the keys before it); a restarted peer is a new peer with a new number.",
            ]
        }
        return lines
    }

    // MARK: Start-up warnings (the shell checks; the words are here)

    /// A code given as an argument: it has been wiped from the process's arguments, but was
    /// readable until then.
    public static let codeOnCommandLine = ClientNotice(
        .codeOnCommandLine, .warning,
        "the code was on the command line, where other users of this machine could read it (ps, /proc) until it "
            + "was wiped, and your shell may keep it in its history; next time use --join and type it when asked")

    /// The relay URL is ws:// to a host that is not this machine.
    public static func unencryptedRelay(host: String) -> ClientNotice {
        ClientNotice(
            .unencryptedRelay, .warning,
            "ws:// is not encrypted on the way to \(host): anyone on the network path sees the room, when and how "
                + "much you send, and your address (not your messages or the password, which are end-to-end "
                + "encrypted); use wss:// beyond a network you trust")
    }

    /// Start-up: less memory can be locked than a conversation needs (`limit` nil: unlimited).
    public static func lockedMemoryLow(limitBytes: Int, hardBytes: Int?, neededBytes: Int) -> ClientNotice {
        ClientNotice(
            .memoryNotLocked, .warning,
            "only \(kibibytes(limitBytes)) of memory can be locked (RLIMIT_MEMLOCK, hard limit "
                + "\(hardBytes.map(kibibytes) ?? "unlimited")) and a conversation can need up to "
                + "\(kibibytes(neededBytes)): keys and messages past the limit may be swapped to disk. "
                + raiseLimitAdvice(neededBytes))
    }

    /// Start-up with --require-locked-memory: why the client refuses to run.
    public static func lockedMemoryRefusal(limitBytes: Int, hardBytes: Int?, neededBytes: Int) -> String {
        "--require-locked-memory: only \(kibibytes(limitBytes)) of memory can be locked (RLIMIT_MEMLOCK, hard "
            + "limit \(hardBytes.map(kibibytes) ?? "unlimited")) and a session can need up to "
            + "\(kibibytes(neededBytes)); not starting. " + raiseLimitAdvice(neededBytes)
    }

    /// During the session: a secret could not be locked (the limit was reached since start).
    public static func memoryNotLocked(limitBytes: Int?) -> ClientNotice {
        let limit = limitBytes.map { " (RLIMIT_MEMLOCK, \(kibibytes($0)))" } ?? ""
        return ClientNotice(
            .memoryNotLocked, .warning,
            "a key or message could not be locked in memory\(limit), so it may be swapped to disk; raise the "
                + "limit with `ulimit -l` before the next chat (--require-locked-memory refuses to start without it)")
    }

    private static func raiseLimitAdvice(_ neededBytes: Int) -> String {
        "Raise it with `ulimit -l \((neededBytes + 1023) / 1024)` (the hard limit is set by root: "
            + "/etc/security/limits.conf, or LimitMEMLOCK= in systemd)."
    }

    /// Bytes as KiB or MiB, for people ("64 KiB", "8.9 MiB").
    static func kibibytes(_ bytes: Int) -> String {
        let kib = (bytes + 1023) / 1024
        guard kib >= 1024 else { return "\(kib) KiB" }
        let tenths = (kib * 10 + 512) / 1024
        return tenths % 10 == 0 ? "\(tenths / 10) MiB" : "\(tenths / 10).\(tenths % 10) MiB"
    }

    // MARK: The relay link's problems, for people

    /// One line for people: what happened and what to do. Never a type, an errno or a path of the
    /// build; the raw error is the `detail` shown with --verbose.
    public static func describe(_ problem: RelayProblem) -> String {
        switch problem {
        case let .hostNotFound(host): "cannot find the host \(host); check its spelling in --relay, and the network"
        case let .refused(endpoint):
            "nothing accepts connections at \(endpoint); is the relay running? Check the address and port in --relay"
        case let .unreachable(endpoint): "no route to \(endpoint); check the network and the address in --relay"
        case let .timedOut(endpoint, seconds):
            "no answer from \(endpoint) within \(seconds) s; check the address in --relay and any firewall in between"
        case let .closedDuringHandshake(endpoint, true):
            "\(endpoint) closed the connection during the handshake; is it a securechat relay?"
        case let .closedDuringHandshake(endpoint, false):
            "\(endpoint) closed the connection during the handshake; if the relay uses TLS, use wss:// in --relay"
        case let .notWebSocket(endpoint):
            "\(endpoint) answered, but it is not a securechat relay (a web server?); check the port and path in --relay"
        case let .notHTTP(endpoint):
            "\(endpoint) did not answer in HTTP; if the relay uses TLS, use wss:// in --relay"
        case .certificateUntrusted:
            "the relay's TLS certificate is not trusted (self-signed, or from a private CA?); "
                + "pass that CA's certificate with --ca-file FILE"
        case .certificateExpired:
            "the relay's TLS certificate has expired; its operator must renew it (or this machine's clock is wrong)"
        case .certificateNotYetValid: "the relay's TLS certificate is not valid yet; check this machine's clock"
        case let .certificateWrongHost(host):
            "the relay's TLS certificate is not for \(host); use the host name on its certificate in --relay"
        case let .notTLS(endpoint): "\(endpoint) does not speak TLS; if it is a plain relay, use ws:// in --relay"
        case .tlsFailed:
            "the TLS handshake with the relay failed (no protocol version or cipher in common); it needs TLS 1.2+"
        case let .caFileUnusable(path): "cannot use the CA file \(path); it must be a readable PEM file of certificates"
        case .reset: "the connection was reset (by the relay or the network)"
        case let .proxy(problem, route, relay): describeProxy(problem, route: route, relay: relay)
        case let .onionWithoutTor(host): "\(host) is a Tor onion service, reachable only through Tor: add --tor"
        case .unexpected: "an unexpected network error (--verbose shows it)"
        }
    }

    /// Why an open connection ended: the relay's close frame (`closeCode` its status, nil when it
    /// sent none), or none at all (`closeFrame` false: TCP closed or failed under it).
    public static func linkClosed(closeFrame: Bool, closeCode: Int?) -> String {
        guard closeFrame else { return "the connection closed" }
        return switch closeCode {
        case 1001: "the relay is going away (restarting?)"
        case 1008: "the relay closed the connection for going past its limits"
        case 1009: "a message was larger than the relay accepts"
        case 1011: "the relay had an internal error"
        default: "the relay closed the connection"
        }
    }

    /// `text`, with the raw `detail` in brackets when there is one (--verbose).
    public static func withDetail(_ text: String, _ detail: String?) -> String {
        guard let detail, !detail.isEmpty else { return text }
        return "\(text) [\(detail)]"
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
