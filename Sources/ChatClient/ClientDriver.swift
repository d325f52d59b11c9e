import ChatCore

#if canImport(Glibc)
import Glibc
#endif

/// Settings of a `ClientDriver`.
public struct DriverConfiguration: Sendable {
    /// The session's own settings (room, limits, retransmission).
    public var session: SessionConfiguration
    /// Interactive: lines starting with `/` are commands and `/quit` asks again when messages
    /// are pending. In pipe mode every line is a message.
    public var interactive: Bool
    /// The room was created by this client: tell the user the code and the peer's commands.
    public var invitation: Invitation?
    /// Give up on an attempt to open a connection after this long.
    public var connectTimeout: Duration
    /// Reconnect backoff: first ceiling and cap.
    public var reconnectInitialDelay: Duration
    public var reconnectMaximumDelay: Duration
    /// Give up (exit 3) when the relay has not accepted us for this long.
    public var giveUpAfter: Duration
    /// After end of input, wait this long for pending messages to be confirmed.
    public var drainTimeout: Duration

    public init(
        session: SessionConfiguration,
        interactive: Bool,
        invitation: Invitation? = nil,
        connectTimeout: Duration = .seconds(25),
        reconnectInitialDelay: Duration = .milliseconds(500),
        reconnectMaximumDelay: Duration = .seconds(30),
        giveUpAfter: Duration = .seconds(300),
        drainTimeout: Duration = .seconds(30)
    ) {
        precondition(connectTimeout > .zero && giveUpAfter > .zero && drainTimeout >= .zero)
        self.session = session
        self.interactive = interactive
        self.invitation = invitation
        self.connectTimeout = connectTimeout
        self.reconnectInitialDelay = reconnectInitialDelay
        self.reconnectMaximumDelay = reconnectMaximumDelay
        self.giveUpAfter = giveUpAfter
        self.drainTimeout = drainTimeout
    }
}

/// The client's brain outside the session: the relay connection's lifecycle (connect, lose,
/// back off, reconnect, give up), the user's lines and commands, end of input, signals, and the
/// exit status. Sans-IO like `SessionManager`, which it drives: inputs with an injected `now`,
/// actions drained with `pollAction()`, timers through `pollTimeout()`.
///
/// The shell owns sockets, timers and the terminal; the driver (and the session inside it)
/// owns every decision. It is not thread-safe: one thread feeds it.
public final class ClientDriver {
    public let configuration: DriverConfiguration
    private let entropy: any EntropySource
    /// The session. Exposed read-only for the UI (`/verify`, status).
    public let session: SessionManager
    private var actions: [ClientAction] = []

    private enum Link: Hashable {
        case idle
        case connecting(ConnectionID, deadline: Instant)
        case up(ConnectionID)
        case waiting(retryAt: Instant)
        case closed
    }

    private var link = Link.idle
    private var nextConnection: UInt64 = 1
    private var backoff: ReconnectBackoff
    /// Since when the relay has not accepted us (nil while joined): the give-up clock.
    private var unjoinedSince: Instant?
    /// The relay link was up at least once (so the next up is a reconnection).
    private var linkWasUp = false
    /// The link went down after being up, and has not come back yet.
    private var linkLost = false

    private var peer = PeerPresence.absent
    /// Texts of messages not yet confirmed, for reporting what was lost. Bounded by the
    /// session's send queue (`sendQueueMax`): an entry exists only while the session holds it.
    private var pendingTexts: [MessageID: String] = [:]
    private var quitArmed = false
    private var drainDeadline: Instant?

    private enum EndCause: Hashable {
        case userQuit
        case signal(Int32)
        case gaveUp
        case permanentFailure
        case drainTimedOut
    }

    private var endCause: EndCause?
    private var relayRefused = false
    private var authenticationFailed = false
    /// The safety number the user confirmed with `/verify <number>` (for the status line).
    private var verifiedNumber: SafetyNumber?
    private var undeliveredAtExit = 0
    private var exited = false

    /// - Parameter password: the chat password (the code's words or the user's own), or nil; the
    ///   session keeps its own copy, so the caller wipes this one when it likes.
    public init(configuration: DriverConfiguration, password: Password? = nil, entropy: any EntropySource) {
        self.configuration = configuration
        self.entropy = entropy
        self.session = SessionManager(configuration: configuration.session, password: password, entropy: entropy)
        self.backoff = ReconnectBackoff(
            initialDelay: configuration.reconnectInitialDelay, maximumDelay: configuration.reconnectMaximumDelay)
    }

    // MARK: Public view

    /// The status line's content.
    public var status: ClientStatus {
        let relay: RelayLinkState = switch link {
        case .idle, .connecting: linkWasUp ? .retrying : .connecting
        case .up: .up
        case .waiting: .retrying
        case .closed: .closed
        }
        return ClientStatus(
            state: session.state, room: configuration.session.room, relay: relay, peer: peer,
            pending: session.pendingCount, authentication: session.authentication,
            verified: verifiedNumber != nil && verifiedNumber == session.safetyNumber)
    }

    /// True once the driver has asked the shell to exit.
    public var hasExited: Bool { exited }

    /// The next action, or nil. Drain after every input.
    public func pollAction() -> ClientAction? {
        actions.isEmpty ? nil : actions.removeFirst()
    }

    /// Every pending action, oldest first.
    public func drainActions() -> [ClientAction] {
        defer { actions.removeAll(keepingCapacity: true) }
        return actions
    }

    /// When `handleTimeout(now:)` should next run, or nil.
    public func pollTimeout() -> Instant? {
        guard !exited else { return nil }
        var earliest = session.pollTimeout()
        func consider(_ candidate: Instant?) {
            guard let candidate else { return }
            if earliest == nil || candidate < earliest! { earliest = candidate }
        }
        switch link {
        case let .connecting(_, deadline): consider(deadline)
        case let .waiting(retryAt): consider(retryAt)
        default: break
        }
        consider(drainDeadline)
        return earliest
    }

    // MARK: Inputs

    /// Feed one event at `now` (monotonic).
    public func handle(_ event: ClientEvent, now: Instant) {
        guard !exited else { return }
        switch event {
        case .start:
            start(now: now)
        case let .transportUp(id):
            guard case let .connecting(current, _) = link, current == id else { return }
            link = .up(id)
            if linkLost {
                show(.notice(ClientNotice(.reconnected, .info, "reconnected to the relay; re-keying with fresh keys")))
            } else {
                show(.notice(ClientNotice(.relayConnected, .info, "connected to the relay")))
            }
            linkWasUp = true
            linkLost = false
            feed(.transportUp, now: now)
        case let .transportFrame(id, bytes):
            guard case let .up(current) = link, current == id else { return }
            feed(.frame(bytes), now: now)
        case let .transportClosed(id, reason):
            transportEnded(id, reason: reason, permanent: false, now: now)
        case let .transportFailed(id, failure):
            transportEnded(id, reason: failure.reason, permanent: failure.permanent, now: now)
        case let .line(text):
            userLine(text, now: now)
        case let .unreadableLine(reason):
            show(.refused("line not sent: \(reason)"))
        case .endOfInput:
            endOfInput(now: now)
        case let .signal(number):
            quit(.signal(number), now: now)
        }
        settle(now: now)
    }

    /// After every input: leave when input has ended and nothing is pending, and stop once the
    /// session is over (it can also end from inside, when the relay refuses the room).
    private func settle(now: Instant) {
        checkDrained(now: now)
        if session.state == .destroyed { finish() }
    }

    /// Run the timers due at `now`.
    public func handleTimeout(now: Instant) {
        guard !exited else { return }
        if let due = session.pollTimeout(), due <= now {
            session.handleTimeout(now: now)
            process(session.drainOutputs(), now: now)
        }
        switch link {
        case let .connecting(id, deadline) where deadline <= now:
            actions.append(.close(id))
            transportEnded(id, reason: "timed out", permanent: false, now: now)
        case let .waiting(retryAt) where retryAt <= now:
            connect(now: now)
        default:
            break
        }
        if let deadline = drainDeadline, deadline <= now, endCause == nil {
            quit(.drainTimedOut, now: now)
        }
        settle(now: now)
    }

    // MARK: Connection lifecycle

    private func start(now: Instant) {
        guard case .idle = link else { return }
        if let invitation = configuration.invitation {
            show(.roomCreated(room: configuration.session.room, invitation: invitation))
        }
        unjoinedSince = now
        connect(now: now)
    }

    private func connect(now: Instant) {
        let id = ConnectionID(nextConnection)
        nextConnection += 1
        link = .connecting(id, deadline: now.advanced(by: configuration.connectTimeout))
        if !linkWasUp && id.value == 1 {
            show(.notice(ClientNotice(.connecting, .info, "connecting to the relay")))
        }
        actions.append(.connect(id))
    }

    private func transportEnded(_ id: ConnectionID, reason: String, permanent: Bool, now: Instant) {
        switch link {
        case let .up(current) where current == id:
            link = .idle
            linkLost = true
            peer = .unknown
            show(.notice(ClientNotice(.relayLost, .warning, "connection to the relay lost (\(reason))")))
            feed(.transportDown, now: now)
        case let .connecting(current, _) where current == id:
            link = .idle
            if permanent {
                show(.notice(ClientNotice(.relayUnreachable, .error, "cannot use the relay: \(reason)")))
                quit(.permanentFailure, now: now)
                return
            }
            show(.notice(ClientNotice(.relayUnreachable, .warning, "cannot reach the relay (\(reason))")))
        default:
            return  // A stale connection, or already closed.
        }
        guard endCause == nil else { return }
        scheduleRetry(now: now)
    }

    private func scheduleRetry(now: Instant) {
        if let since = unjoinedSince, now.duration(since: since) >= configuration.giveUpAfter {
            let seconds = configuration.giveUpAfter.wholeMilliseconds / 1000
            show(.notice(ClientNotice(.gaveUp, .error, "giving up: no relay for \(seconds) s")))
            quit(.gaveUp, now: now)
            return
        }
        let attempt = backoff.attempt + 1
        let delay = backoff.nextDelay(entropy: entropy)
        link = .waiting(retryAt: now.advanced(by: delay))
        show(.notice(ClientNotice(
            .retrying, .info, "retrying in \(Self.seconds(delay)) s (attempt \(attempt))")))
    }

    /// A duration as seconds with one decimal, without Foundation.
    static func seconds(_ duration: Duration) -> String {
        let tenths = (duration.wholeMilliseconds + 50) / 100
        return "\(tenths / 10).\(tenths % 10)"
    }

    // MARK: User input

    private func userLine(_ text: String, now: Instant) {
        guard configuration.interactive else {
            if text.isEmpty { return }  // A blank line in a script is not a message.
            send(text, now: now)
            return
        }
        let line = text.trimmingASCIIWhitespace()
        if line.isEmpty { return }
        if line.hasPrefix("//") {
            send(String(text.dropFirst()), now: now)  // "//x" sends "/x".
            return
        }
        guard line.hasPrefix("/") else {
            quitArmed = false
            send(text, now: now)
            return
        }
        let command = line.split(separator: " ", maxSplits: 1).first.map(String.init) ?? line
        switch command.lowercased() {
        case "/help":
            show(.info(Self.helpLines))
        case "/quit", "/exit":
            if session.pendingCount > 0 && !quitArmed {
                quitArmed = true
                show(.notice(ClientNotice(.confirmQuit, .warning,
                    "\(session.pendingCount) message(s) not yet confirmed by the peer; /quit again to leave anyway")))
                return
            }
            quit(.userQuit, now: now)
        case "/verify":
            let argument = line.split(separator: " ", maxSplits: 1).dropFirst().first.map(String.init)
            if let argument {
                compareSafetyNumber(argument)
            } else {
                show(.info(verificationReport()))
            }
        case "/clear":
            show(.clear)
        default:
            show(.notice(ClientNotice(.unknownCommand, .warning,
                "unknown command \(command.prefix(32)); /help lists them, //text sends a line starting with /")))
        }
    }

    /// The interactive commands.
    public static let helpLines = [
        "Commands:",
        "  /help     this list",
        "  /verify   show the safety number to compare with your peer (out of band: phone, in person)",
        "  /verify N confirm that the number your peer read out is N (all 60 digits)",
        "  /clear    clear the screen",
        "  /quit     leave (asks again if messages are not yet confirmed); also Ctrl-C, Ctrl-D",
        "  //text    send a message that starts with /",
        "Anything else is sent to the peer, end-to-end encrypted.",
    ]

    private func send(_ text: String, now: Instant) {
        guard endCause == nil else {
            show(.refused("the session is ending; not sent"))
            return
        }
        switch session.send(text, now: now) {
        case let .success(id):
            pendingTexts[id] = text
            show(.sent(SentMessage(id: id, text: text), queued: session.state != .connected))
        case let .failure(refusal):
            show(.refused("not sent: \(refusal)"))
        }
        process(session.drainOutputs(), now: now)
    }

    private func endOfInput(now: Instant) {
        if configuration.interactive {
            quit(.userQuit, now: now)
            return
        }
        guard drainDeadline == nil, endCause == nil else { return }
        drainDeadline = now.advanced(by: configuration.drainTimeout)
        if session.pendingCount > 0 {
            let seconds = configuration.drainTimeout.wholeMilliseconds / 1000
            show(.notice(ClientNotice(.draining, .info,
                "end of input: waiting up to \(seconds) s for \(session.pendingCount) message(s) to be confirmed")))
        }
    }

    /// After end of input: leave as soon as nothing is pending.
    private func checkDrained(now: Instant) {
        guard drainDeadline != nil, endCause == nil, !exited, session.pendingCount == 0 else { return }
        quit(.userQuit, now: now)
    }

    private func quit(_ cause: EndCause, now: Instant) {
        guard endCause == nil else { return }
        endCause = cause
        feed(.quit, now: now)
    }

    // MARK: Session

    private func feed(_ input: SessionInput, now: Instant) {
        session.handle(input, now: now)
        process(session.drainOutputs(), now: now)
    }

    private func process(_ outputs: [SessionOutput], now: Instant) {
        for output in outputs {
            switch output {
            case let .transmit(frame):
                if case let .up(id) = link { actions.append(.send(id, frame)) }
            case let .stateChanged(from, to):
                switch to {
                case .userFound, .keySetup, .connected: peer = .present
                default: break
                }
                show(.state(from: from, to: to))
            case let .received(message):
                show(.message(message))
            case let .delivered(ids):
                for id in ids { pendingTexts[id] = nil }
                show(.delivered(ids))
            case let .undeliverable(ids, reason):
                let lost = ids.map { SentMessage(id: $0, text: pendingTexts.removeValue(forKey: $0) ?? "") }
                if reason == .sessionEnded { undeliveredAtExit += ids.count }
                show(.undeliverable(lost, reason))
            case let .notice(notice):
                sessionNotice(notice, now: now)
            case .closeTransport:
                switch link {
                case let .up(id), let .connecting(id, _): actions.append(.close(id))
                default: break
                }
                link = .closed
            }
        }
    }

    private func sessionNotice(_ notice: SessionNotice, now: Instant) {
        switch notice {
        case let .joined(_, peersPresent):
            // The relay accepted us: the link works, so backoff and the give-up clock restart.
            backoff.reset()
            unjoinedSince = nil
            peer = peersPresent >= 2 ? .present : .absent
            let waiting = peersPresent >= 2 ? "the peer is here" : "waiting for the peer"
            show(.notice(ClientNotice(.joined, .info, "joined the room; \(waiting)")))
        case .peerFound:
            peer = .present
            show(.notice(ClientNotice(.peerFound, .info, "peer found; exchanging keys")))
        case .peerLeft:
            peer = .absent
            show(.notice(ClientNotice(.peerLeft, .warning,
                "the peer left (it quit or lost its connection); waiting for it to come back")))
        case .peerRestarted:
            show(.notice(ClientNotice(.peerRestarted, .info, "the peer reconnected; re-keying")))
        case .handshakeRetransmitted:
            break  // Routine on a lossy link; the state shows KEY_SETUP meanwhile.
        case let .secured(resumed, authentication, safetyNumber):
            peer = .present
            let how = switch authentication {
            case .password: "authenticated by the password"
            case .safetyNumber where configuration.interactive: "no password: compare safety numbers with /verify"
            case .safetyNumber: "no password: compare the safety number with your peer's"
            }
            if session.statistics.handshakesCompleted <= 1 {
                show(.notice(ClientNotice(.secured, .info, "end-to-end encrypted; \(how)")))
            } else {
                let conversation = resumed ? "conversation resumed" : "the peer restarted: new conversation"
                show(.notice(ClientNotice(.rekeyed, .info,
                    "re-keyed with fresh keys (a new safety number); \(how); \(conversation)")))
            }
            show(.safetyNumber(safetyNumber, authentication: authentication))
        case let .relayError(code, message):
            let level: ClientNotice.Level = [.roomFull, .invalidRoom, .alreadyJoined].contains(code) ? .error : .warning
            show(.notice(ClientNotice(.relayError, level, "relay: \(code.rawValue): \(message)")))
        case let .frameRejected(rejection):
            // Ordinary network effects (duplicates, reordering) are routine; only what points at
            // tampering is worth the user's attention.
            if rejection.isSuspicious {
                show(.notice(ClientNotice(.suspiciousFrame, .warning,
                    "a frame failed authentication and was dropped (\(rejection))")))
            }
        case let .ended(reason):
            if case .relayRefused = reason { relayRefused = true }
            if case let .authenticationFailed(failure) = reason {
                authenticationFailed = true
                show(.notice(ClientNotice(.authenticationFailed, .error, Self.authenticationFailureText(failure))))
            }
            let why: String = switch endCause {
            case .gaveUp, .permanentFailure: "no relay"
            case .drainTimedOut: "the peer did not confirm in time"
            case let .signal(number) where number != SIGINT: "signal \(number)"
            default: "\(reason)"
            }
            show(.notice(ClientNotice(.ended, .info, "session ended (\(why)); keys wiped")))
        }
    }

    /// What the user is told when the handshake could not be authenticated: what happened and
    /// what to do next.
    static func authenticationFailureText(_ failure: AuthenticationFailure) -> String {
        let newRoom = "start a new room with `securechat` and share the new code"
        switch failure {
        case .passwordMismatch:
            return "authentication failed: the password did not match (or someone tried to intercept). "
                + "This code is spent; \(newRoom)."
        case let .tooManyAttempts(count):
            return "authentication failed: \(count) handshakes ended before the peer proved the password "
                + "(someone may be guessing it). This code is spent; \(newRoom)."
        case .peerHasNoPassword:
            return "authentication failed: the peer joined without the password (or someone tried to "
                + "intercept). This code is spent; \(newRoom), and make sure your peer types all of it."
        case .peerHasPassword:
            return "authentication failed: your peer uses a password and you joined without one. "
                + "Join again with the whole code your peer gave you (ROOM-word-word), or with --password."
        }
    }

    /// The verification report for `/verify`: the safety number, and what comparing it proves.
    public func verificationReport() -> [String] {
        guard let number = session.safetyNumber else {
            return ["No safety number yet: wait until the status line says CONNECTED."]
        }
        var lines = ["Safety number (the same on both sides unless someone is in the middle):"]
        lines += number.displayLines.map { "    " + $0 }
        switch session.authentication {
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

    /// `/verify NUMBER`: compare the number the peer read out with ours.
    private func compareSafetyNumber(_ typed: String) {
        guard let number = session.safetyNumber else {
            show(.info(["No safety number yet: wait until the status line says CONNECTED."]))
            return
        }
        if number.matches(typed) {
            verifiedNumber = number
            show(.notice(ClientNotice(.verified, .info,
                "safety number verified: the same on both sides, nobody is in the middle of this session")))
        } else {
            verifiedNumber = nil
            show(.notice(ClientNotice(.verifyMismatch, .error,
                "the safety numbers DIFFER (or a digit was mistyped; all 60 are needed): someone may be in the "
                    + "middle. Do not trust this session; /quit and start a new room with a password.")))
        }
    }

    /// The session has ended: close, decide the exit status, and stop.
    private func finish() {
        guard !exited else { return }
        exited = true
        let status: ClientExitStatus
        if authenticationFailed {
            status = .authenticationFailed
        } else if relayRefused {
            status = .relayRefused
        } else {
            switch endCause {
            case .gaveUp, .permanentFailure: status = .connectionFailed
            case let .signal(number) where number != SIGINT: status = .signal(number)  // Ctrl-C is a quit key.
            default: status = undeliveredAtExit > 0 ? .undelivered : .success
            }
        }
        actions.append(.exit(status))
    }

    private func show(_ event: DisplayEvent) {
        actions.append(.display(event))
    }
}
