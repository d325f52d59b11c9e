import CClientSupport
import ChatCore
import ChatNetworking

#if canImport(Glibc)
import Glibc
#endif

/// What the command line decided.
public struct ClientOptions: Sendable {
    /// The room to join; `created` when this client made it up (and tells the user the peer's command).
    public var room: RoomCode
    public var created: Bool
    public var relay: WebSocketURL
    /// The relay URL as typed (for the peer's command line).
    public var relayText: String
    public var caFilePath: String?
    public var json: Bool
    public var giveUpAfterSeconds: Int
    public var drainTimeoutSeconds: Int

    public init(room: RoomCode, created: Bool, relay: WebSocketURL, relayText: String, caFilePath: String?,
                json: Bool, giveUpAfterSeconds: Int, drainTimeoutSeconds: Int) {
        self.room = room
        self.created = created
        self.relay = relay
        self.relayText = relayText
        self.caFilePath = caFilePath
        self.json = json
        self.giveUpAfterSeconds = giveUpAfterSeconds
        self.drainTimeoutSeconds = drainTimeoutSeconds
    }
}

/// The client's entry points, in the order `main` calls them.
public enum ClientApp {
    /// The relay `./run.sh` starts.
    public static let defaultRelay = "ws://127.0.0.1:8080"

    /// First thing in `main`, before any thread exists: no core dumps (RLIMIT_CORE 0,
    /// PR_SET_DUMPABLE 0), and the terminating signals blocked and routed to a signalfd so
    /// every thread started later inherits the mask. Returns the signalfd.
    public static func prepareProcess() -> Result<Int32, ClientSetupError> {
        guard scl_disable_core_dumps() == 0 else { return .failure(.process("cannot disable core dumps: errno \(errno)")) }
        let signalFD = scl_signals_to_fd()
        guard signalFD >= 0 else { return .failure(.process("cannot set up signal handling: errno \(errno)")) }
        return .success(signalFD)
    }

    /// A fresh room code from the system CSPRNG.
    public static func newRoom() -> RoomCode {
        InvitationCode.generate(entropy: SystemEntropy())
    }

    /// Run the client until it ends; returns the exit status. The terminal is restored and the
    /// session's keys are wiped before this returns, whichever way the session ended.
    public static func run(_ options: ClientOptions, signalFD: Int32) -> ClientExitStatus {
        let stderr = FileOutput(fd: 2)
        let sessionConfiguration = SessionConfiguration(room: options.room)
        let connector: WebSocketRelayConnector
        do {
            connector = try WebSocketRelayConnector(
                url: options.relay, caFilePath: options.caFilePath,
                frameSizeMaxBytes: sessionConfiguration.wireLimits.frameSizeMaxBytes)
        } catch {
            stderr.write("securechat: \(error)\n")
            return .usage
        }
        let interactive = !options.json && isatty(0) == 1 && isatty(1) == 1
        let peerCommand = options.created
            ? InvitationCode.peerCommand(room: options.room, relay: options.relayText, defaultRelay: defaultRelay,
                                         caFile: options.caFilePath)
            : nil
        let driver = ClientDriver(
            configuration: DriverConfiguration(
                session: sessionConfiguration, interactive: interactive, peerCommand: peerCommand,
                giveUpAfter: .seconds(options.giveUpAfterSeconds), drainTimeout: .seconds(options.drainTimeoutSeconds)),
            entropy: SystemEntropy())
        let mailbox = Mailbox()
        let shell: ClientShell
        if interactive {
            prepareLocale()
            let terminal = TerminalUI(status: driver.status, colors: colorsWanted())
            shell = ClientShell(driver: driver, renderer: terminal, terminal: terminal, lineReader: nil,
                                connector: connector, mailbox: mailbox, signalFD: signalFD)
        } else {
            let stdout = FileOutput(fd: 1)
            let renderer: any ClientRenderer = options.json
                ? JSONRenderer(stdout: stdout) : PlainRenderer(stdout: stdout, stderr: stderr)
            // A line may be a little longer than the session accepts, so that the session (not
            // the reader) refuses it with the exact limit.
            let reader = LineReader(fd: 0, lineMaxBytes: sessionConfiguration.messageTextMaxBytes * 4)
            shell = ClientShell(driver: driver, renderer: renderer, terminal: nil, lineReader: reader,
                                connector: connector, mailbox: mailbox, signalFD: signalFD)
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
