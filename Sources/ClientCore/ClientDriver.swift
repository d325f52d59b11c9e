import ChatCore

/// The client's brain outside the session: the relay link's lifecycle (connect, keep alive, lose,
/// back off, reconnect, give up), the user's lines and commands, end of input, signals, and the
/// exit status. Sans-IO like `SessionManager`, which it drives: inputs with an injected `now`,
/// actions drained with `pollAction()`, timers through `pollTimeout()` and `handleTimeout(now:)`.
///
/// The shell owns sockets, clocks and the terminal and carries out the actions; the driver (and
/// the session inside it) owns every decision, so the simulator runs this very code with virtual
/// time, seeded entropy and an in-memory network. Not thread-safe: one thread feeds it.
///
/// Its state is two enums whose cases carry the data valid in them (`Link`, `Phase`, in
/// ClientDriverState.swift); the inputs are handled in ClientDriver+Link.swift (the relay
/// connection), ClientDriver+Input.swift (lines, commands, end of input) and
/// ClientDriver+Session.swift (what the session reports); the texts are in ClientNoticeTexts.swift.
public final class ClientDriver {
    public let configuration: DriverConfiguration
    let entropy: any EntropySource
    /// The session. Exposed read-only for the UI (`/verify`, status).
    public let session: SessionManager

    /// Actions not yet taken by the shell: `actions[nextAction...]`.
    private var actions: [ClientAction] = []
    private var nextAction = 0

    var link = Link.idle
    /// The connection on which the relay selected `securechat.binary` (nil: none, or not yet).
    var binaryLink: ConnectionID?
    /// The connection whose outbound buffer is over its high watermark (nil: none): no file chunk
    /// is sent on it until it says it is writable again. A new connection starts writable.
    var unwritableLink: ConnectionID?
    var phase = Phase.running(quitAsked: false)
    /// The identifier of the next connection (never reused, so a stale link's events are recognised).
    var nextConnection: UInt64 = 1
    var backoff: ReconnectBackoff

    /// What the status line says about the peer.
    var peer = PeerPresence.absent
    /// Texts of messages not yet confirmed, for reporting what was lost. Bounded by the
    /// session's send queue (`sendQueueMax`): an entry exists only while the session holds it.
    var pendingTexts: [MessageID: String] = [:]
    /// The safety number the user confirmed with `/verify <number>` (for the status line).
    var verifiedNumber: SafetyNumber?
    /// Messages reported undeliverable because the session ended or the peer left (exit 4 when any).
    var undeliveredAtEnd = 0
    /// The peer said goodbye (its PEER_LEFT then means it is gone for good).
    var peerSaidGoodbye = false

    /// File transfers (ClientDriver+Files.swift): the decisions, the store that does the I/O,
    /// which store file belongs to which transfer, and the session messages that carry them.
    var files: FileTransfers
    let fileStore: (any FileStore)?
    var storedFiles: [(id: FileID, direction: FileDirection, file: StoredFile)] = []
    var savedPaths: [(id: FileID, path: String)] = []
    /// File control messages in the session's queue, by message: their delivery is not the user's
    /// news, and one lost to the peer's goodbye ends its transfer.
    var fileControls: [MessageID: [UInt8]] = [:]
    /// File control messages the session's full queue refused, in order, with those made after
    /// them: sent as its queue makes room (at most `heldFileControlsMax`).
    var heldFileControls: [[UInt8]] = []
    /// The peer instance of the last confirmed handshake (a later one with another is a new peer).
    var securedPeer: InstanceID?
    /// Files that could not even be offered (unreadable `--send` paths).
    var fileFailuresLocal = 0
    /// Prefixes of kept `.part`s (ours) or of our files (a peer's resume) being hashed, a slice per
    /// turn of the shell's loop (and our files whose hash follows their offers, `hashFileSlice`);
    /// the instant the next slice is due (the last input's).
    var prefixJobs: [PrefixHashJob] = []
    var hashSliceDue: Instant?

    /// - Parameter password: the chat password (the code's words or the user's own), or nil; the
    ///   session keeps its own copy, so the caller wipes this one when it likes.
    ///   - fileStore: the disk for file transfers (nil: none are possible, as in the simulator).
    public init(
        configuration: DriverConfiguration, password: Password? = nil, entropy: any EntropySource,
        fileStore: (any FileStore)? = nil
    ) {
        self.configuration = configuration
        self.entropy = entropy
        self.fileStore = fileStore
        self.files = FileTransfers(configuration: configuration.files.transfer)
        self.session = SessionManager(configuration: configuration.session, password: password, entropy: entropy)
        self.backoff = ReconnectBackoff(
            initialDelay: configuration.reconnectInitialDelay, maximumDelay: configuration.reconnectMaximumDelay)
    }

    // MARK: Public view

    /// The status line's content.
    public var status: ClientStatus {
        var status = ClientStatus(
            state: session.state, room: configuration.session.room, relay: link.relayState, peer: peer,
            pending: session.pendingCount, authentication: session.authentication,
            verified: verifiedNumber != nil && verifiedNumber == session.safetyNumber, route: configuration.route)
        status.transfers = files.active.map {
            FileTransferStatus(
                id: $0.info.id, name: $0.info.name, direction: $0.direction, sizeBytes: $0.info.sizeBytes, bytes: $0.bytes)
        }
        return status
    }

    /// True once the driver has asked the shell to exit (`ClientAction.exit`); it then ignores
    /// every input and has no timer.
    public var hasExited: Bool {
        if case .exited = phase { true } else { false }
    }

    /// The next action, or nil. Drain after every input and timeout.
    public func pollAction() -> ClientAction? {
        guard nextAction < actions.count else {
            if !actions.isEmpty {
                actions.removeAll(keepingCapacity: true)
                nextAction = 0
            }
            return nil
        }
        defer { nextAction += 1 }
        return actions[nextAction]
    }

    /// Every pending action, oldest first.
    public func drainActions() -> [ClientAction] {
        defer {
            actions.removeAll(keepingCapacity: true)
            nextAction = 0
        }
        return Array(actions[nextAction...])
    }

    /// When `handleTimeout(now:)` should next run, or nil.
    public func pollTimeout() -> Instant? {
        if case .exited = phase { return nil }
        var earliest = session.pollTimeout()
        if let due = link.deadline { earliest = min(earliest ?? due, due) }
        if let deadline = phase.deadline { earliest = min(earliest ?? deadline, deadline) }
        if let due = files.pollTimeout() { earliest = min(earliest ?? due, due) }
        if let due = hashSliceDue { earliest = min(earliest ?? due, due) }  // Due at once: a hash slice.
        return earliest
    }

    // MARK: Inputs

    /// Feed one event at `now` (monotonic, never earlier than the previous input's).
    public func handle(_ event: ClientEvent, now: Instant) {
        if case .exited = phase { return }
        switch event {
        case .start:
            start(now: now)
            reportKeptParts()
            for path in configuration.files.sendPaths { offerFile(path: path, now: now) }
        case let .transportUp(id): linkOpened(id, now: now)
        case let .transportFrame(id, bytes): if heard(id, now: now) { feed(.frame(bytes), now: now) }
        case let .transportBinarySignals(id): if case let .up(current, _, _) = link, current == id { binaryLink = id }
        case let .transportBinaryFrame(id, bytes):
            // Without the negotiation a binary frame is read as text, as a client from before binary
            // SIGNALs reads it (and refuses it, typed): a relay may not send one then.
            if heard(id, now: now) { feed(binaryLink == id ? .binaryFrame(bytes) : .frame(bytes), now: now) }
        case let .transportPing(id, payload): if heard(id, now: now) { act(.pong(id, payload)) }
        case let .transportPong(id): _ = heard(id, now: now)
        case let .transportWritable(id, writable):
            guard case let .up(current, _, _) = link, current == id else { break }  // A stale link's: ignored.
            unwritableLink = writable ? nil : id
        case let .transportClosed(id, reason): linkEnded(id, reason: reason, permanent: false, now: now)
        case let .transportFailed(id, failure):
            linkEnded(id, reason: failure.reason, permanent: failure.permanent, now: now)
        case let .line(text): userLine(text, now: now)
        case let .unreadableLine(reason): show(.refused("line not sent: \(reason)"))
        case .endOfInput: endOfInput(now: now)
        case let .signal(number): quit(.signal(number), now: now)
        }
        pumpFiles(now: now)
        settle(now: now)
    }

    /// Run the timers due at `now`.
    public func handleTimeout(now: Instant) {
        if case .exited = phase { return }
        if let due = session.pollTimeout(), due <= now {
            session.handleTimeout(now: now)
            process(session.drainOutputs(), now: now)
        }
        linkTimeout(now: now)
        if let due = files.pollTimeout(), due <= now { files.handleTimeout(now: now) }
        pumpFiles(now: now)
        if let deadline = phase.deadline, deadline <= now { quit(.drainTimedOut, now: now) }
        settle(now: now)
    }

    /// After every input: say goodbye when input has ended and nothing is pending, and tell the
    /// shell to exit once the session is over (it can also end from inside: the goodbye is done,
    /// the relay refused the room, the handshake failed authentication).
    private func settle(now: Instant) {
        if case let .draining(deadline) = phase, session.pendingCount == 0, files.isIdle {
            leave(deadline: deadline, now: now)
        }
        if case let .ended(status) = phase {
            dropHeldFileControls { _ in true }
            phase = .exited(status)
            act(.exit(status))
        }
    }

    // MARK: Ending

    /// This client ends the session now (the session's `ended` notice then decides the exit status).
    func quit(_ cause: EndCause, now: Instant) {
        switch phase {
        case .running, .draining, .leaving: break
        case .ending, .ended, .exited: return
        }
        phase = .ending(cause)
        feed(.quit, now: now)
    }

    /// This client leaves saying goodbye: the session ends once the peer has had its say (its
    /// records in flight arrived), or at `deadline`.
    func leave(deadline: Instant, now: Instant) {
        switch phase {
        case .running, .draining: break
        case .leaving, .ending, .ended, .exited: return
        }
        phase = .leaving(deadline: deadline)
        // Before the first BYE: the peer numbers nothing new once it reads it, so no transfer may
        // wait for it (pipe mode's drain waited for them; /quit cuts them off).
        files.startLeaving()
        feed(.leave, now: now)
        pumpFiles(now: now)
    }

    /// The exit status once the session has ended for `reason`, this client having asked for it
    /// for `cause` (nil when the session ended from inside).
    func exitStatus(_ reason: SessionEndReason, cause: EndCause?) -> ClientExitStatus {
        switch reason {
        case .authenticationFailed: return .authenticationFailed
        case .relayRefused: return .relayRefused
        case .incompatiblePeer: return .incompatiblePeer
        case .userQuit: break
        }
        switch cause {
        case .gaveUp, .permanentFailure: return .connectionFailed
        case let .signal(number) where number != ClientEvent.interruptSignal: return .signal(number)  // Ctrl-C quits.
        case .userQuit, .signal, .drainTimedOut, nil:
            if undeliveredAtEnd > 0 { return .undelivered }
            return fileFailures > 0 ? .filesFailed : .success
        }
    }

    // MARK: Plumbing

    /// Feed the session one input and act on what it reports.
    func feed(_ input: SessionInput, now: Instant) {
        session.handle(input, now: now)
        process(session.drainOutputs(), now: now)
    }

    func act(_ action: ClientAction) {
        actions.append(action)
    }

    func show(_ event: DisplayEvent) {
        actions.append(.display(event))
    }

    func notify(_ notice: ClientNotice) {
        actions.append(.display(.notice(notice)))
    }
}
