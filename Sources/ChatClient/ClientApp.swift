import CClientSupport
import ChatCore
import ChatNetworking
import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// What the command line decided.
public struct ClientOptions {
    /// The room to join (the only part of a code the relay ever sees).
    public var room: RoomCode
    /// The chat password (the code's words, or the user's own from `--password`), or nil for a
    /// room-only code: then the handshake is X25519 and only safety numbers authenticate it.
    /// `ClientApp.run` wipes it when the session is over.
    public var password: Password?
    /// This client created the room: what to tell the user to pass on.
    public var invitation: Invitation?
    public var relay: WebSocketURL
    public var caFilePath: String?
    public var json: Bool
    public var giveUpAfterSeconds: Int
    public var drainTimeoutSeconds: Int
    /// Ping the relay after this long without a frame from it; as long again without one means the
    /// connection is dead (a relay or network that vanished without a FIN), and the client reconnects.
    public var keepaliveSeconds: Int
    /// Notices carry the raw error after the words for people (`--verbose`).
    public var verbose = false
    /// Offer the relay binary SIGNALs (`securechat.binary`, docs/PROTOCOL.md); off only for tests
    /// and benchmarks of the JSON text path (`--text-signals`, hidden).
    public var binarySignals = true
    /// The session's send queue, when the locked-memory check shortened it (`--require-locked-memory`).
    public var sendQueueMax: Int?
    /// Warnings of the start-up checks (the code on the command line, locked memory), shown first.
    public var notices: [ClientNotice] = []
    /// The memory-lock limit, for the warning when a secret cannot be locked during the session.
    public var memoryLockLimits = MemoryLockLimits(softBytes: nil, hardBytes: nil)
    /// Every connection goes through this SOCKS5 proxy (`--proxy`, `--tor`, `SECURECHAT_PROXY`).
    public var proxy: SOCKSProxy?
    /// File transfers: `--send`, `--accept-files`, `--max-file-bytes`.
    public var files = FilePolicy()

    /// How the relay is reached, for the status line and the notices.
    public var route: RelayRoute {
        guard let proxy else { return .direct }
        return proxy.isTor ? .tor(endpoint: proxy.endpoint) : .proxy(endpoint: proxy.endpoint)
    }

    public init(room: RoomCode, password: Password?, invitation: Invitation?, relay: WebSocketURL,
                caFilePath: String?, json: Bool, giveUpAfterSeconds: Int, drainTimeoutSeconds: Int,
                keepaliveSeconds: Int = 15) {
        precondition(keepaliveSeconds > 0, "the keepalive interval must be positive")
        self.room = room
        self.password = password
        self.invitation = invitation
        self.relay = relay
        self.caFilePath = caFilePath
        self.json = json
        self.giveUpAfterSeconds = giveUpAfterSeconds
        self.drainTimeoutSeconds = drainTimeoutSeconds
        self.keepaliveSeconds = keepaliveSeconds
    }
}

/// The client's entry points, in the order `main` calls them.
public enum ClientApp {
    /// The relay `./run.sh` starts.
    public static let defaultRelay = "ws://127.0.0.1:8080"

    /// The driver's deadline for opening a connection through a proxy: past the connector's own
    /// handshake timeout (`WebSocketRelayConnector.proxiedHandshakeTimeoutSeconds`), so that the
    /// proxy's typed error, when there is one, is what the user reads.
    public static let proxiedConnectTimeout = Duration.seconds(75)

    /// First thing in `main`, before any thread exists: no core dumps (RLIMIT_CORE 0,
    /// PR_SET_DUMPABLE 0), and the terminating signals blocked and routed to a signalfd so
    /// every thread started later inherits the mask. Returns the signalfd.
    public static func prepareProcess() -> Result<Int32, ClientSetupError> {
        guard scl_disable_core_dumps() == 0 else {
            return .failure(.process("cannot disable core dumps (\(String(cString: strerror(errno))))"))
        }
        let signalFD = scl_signals_to_fd()
        guard signalFD >= 0 else {
            return .failure(.process("cannot set up signal handling (\(String(cString: strerror(errno))))"))
        }
        return .success(signalFD)
    }

    /// The environment variable that names the command joining a room from this machine
    /// (`run.sh` sets it to `./run.sh`); the invitation then also shows the other-machine command.
    public static let peerCommandVariable = "SECURECHAT_PEER_COMMAND"

    /// The invitation for a room this client created: `code` to pass on (the revealed
    /// `ROOM-word-word`, or the room alone when the password is the user's own).
    public static func invitation(code: String, ownPassword: Bool, relayText: String, caFilePath: String?)
        -> Invitation
    {
        let sameMachine = getenv(peerCommandVariable).map { String(cString: $0) }
        return Invitation.make(
            code: code, ownPassword: ownPassword, relay: relayText, defaultRelay: defaultRelay, caFile: caFilePath,
            sameMachineCommand: sameMachine)
    }

    /// Run the client until it ends; returns the exit status. The terminal is restored and the
    /// session's keys are wiped before this returns, whichever way the session ended.
    public static func run(_ options: ClientOptions, signalFD: Int32) -> ClientExitStatus {
        defer { options.password?.wipe() }  // Whichever way this returns; the session has its own copy.
        let stderr = FileOutput(fd: 2)
        var sessionConfiguration = SessionConfiguration(room: options.room)
        if let queue = options.sendQueueMax { sessionConfiguration.sendQueueMax = queue }
        let connector: WebSocketRelayConnector
        do {
            connector = try WebSocketRelayConnector(
                url: options.relay, caFilePath: options.caFilePath,
                frameSizeMaxBytes: sessionConfiguration.wireLimits.frameSizeMaxBytes, proxy: options.proxy,
                verbose: options.verbose, binarySignals: options.binarySignals)
        } catch {
            stderr.write("securechat: error: \(error)\n")
            return .usage
        }
        let interactive = !options.json && isatty(0) == 1 && isatty(1) == 1
        var driverConfiguration = DriverConfiguration(
            session: sessionConfiguration, interactive: interactive, invitation: options.invitation,
            connectTimeout: options.proxy == nil ? .seconds(25) : Self.proxiedConnectTimeout,
            giveUpAfter: .seconds(options.giveUpAfterSeconds), drainTimeout: .seconds(options.drainTimeoutSeconds),
            keepalive: .seconds(options.keepaliveSeconds), verbose: options.verbose, route: options.route)
        driverConfiguration.files = options.files
        // The store touches the disk only when a transfer asks: a chat-only session writes nothing.
        let driver = ClientDriver(
            configuration: driverConfiguration, password: options.password, entropy: SystemEntropy(),
            fileStore: DiskFileStore())
        // The session keeps (and wipes) its own copy of the password; this one is done with.
        options.password?.wipe()
        let notices = options.notices + [options.relay.exposureWarning(route: options.route)].compactMap { $0 }
        let watch = LockedMemoryWatch(
            limits: options.memoryLockLimits, alreadyWarned: notices.contains { $0.kind == .memoryNotLocked })
        let mailbox = Mailbox()
        let shell: ClientShell
        if interactive {
            prepareLocale()
            let terminal = TerminalUI(status: driver.status, colors: colorsWanted())
            for notice in notices { terminal.render(.notice(notice), status: driver.status) }
            shell = ClientShell(driver: driver, renderer: terminal, terminal: terminal, lineReader: nil,
                                connector: connector, mailbox: mailbox, signalFD: signalFD, lockedMemory: watch)
        } else {
            let stdout = FileOutput(fd: 1)
            let renderer: any ClientRenderer = options.json
                ? JSONRenderer(stdout: stdout) : PlainRenderer(stdout: stdout, stderr: stderr)
            for notice in notices { renderer.render(.notice(notice), status: driver.status) }
            // A line may be a little longer than the session accepts, so that the session (not
            // the reader) refuses it with the exact limit.
            let reader = LineReader(fd: 0, lineMaxBytes: sessionConfiguration.messageTextMaxBytes * 4)
            shell = ClientShell(driver: driver, renderer: renderer, terminal: nil, lineReader: reader,
                                connector: connector, mailbox: mailbox, signalFD: signalFD, lockedMemory: watch)
        }
        return shell.run()
    }

    /// Colours unless NO_COLOR is set to anything non-empty (no-color.org) or TERM is dumb.
    static func colorsWanted() -> Bool {
        if let value = getenv("NO_COLOR"), value.pointee != 0 { return false }
        if let term = getenv("TERM"), String(cString: term) == "dumb" { return false }
        return true
    }

    /// libedit needs a UTF-8 character locale to edit non-ASCII text; fall back to C.UTF-8
    /// when the environment names none.
    static func prepareLocale() {
        if let name = setlocale(LC_CTYPE, ""), String(cString: name) != "C", String(cString: name) != "POSIX" {
            return
        }
        _ = setlocale(LC_CTYPE, "C.UTF-8")
    }
}

/// Why the process could not be set up.
public enum ClientSetupError: Error, Hashable, Sendable, CustomStringConvertible {
    case process(String)

    public var description: String {
        switch self {
        case let .process(text): text
        }
    }
}
