import ArgumentParser
import CBuildInfo
import CClientSupport
import ChatClient
import ChatCore
import ChatNetworking
import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// `securechat [--join] [--relay URL]`: an ephemeral, end-to-end encrypted chat.
struct Securechat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "securechat",
        abstract: "Ephemeral, end-to-end encrypted chat through a blind relay.",
        discussion: """
            Without --join, creates a room and prints its code, ROOM-word-word, and the command your \
            peer should type: securechat --join, which asks for the code (Tab completes its words; \
            without a terminal it reads the environment variable SECURECHAT_CODE, else the first line \
            of stdin). A code given as an argument still works, but other users of the machine can \
            read arguments (ps, /proc) and the shell keeps them in its history: the client wipes it \
            from its arguments at once and warns. Only the room part ever reaches the relay: \
            the words are a password that authenticates the key exchange (CPace), so a relay in the \
            middle makes the handshake fail instead of reading the chat. A code works once: after a \
            failed authentication, start a new room. Keys live only in locked memory and are wiped on \
            exit; nothing is ever written to disk but files you accept. The client raises its locked-memory limit \
            (RLIMIT_MEMLOCK) to the hard limit and warns when secrets may still be swapped to disk; \
            --require-locked-memory refuses to run instead.

            A room-only CODE (no words) has no password unless --password is given: the keys are then \
            authenticated only by comparing safety numbers (/verify) with your peer out of band. \
            --password asks for a password of your own on the terminal (echo off; twice when creating \
            a room); without a terminal it reads the environment variable SECURECHAT_PASSWORD. A \
            password is never taken from the command line, where other users can read it.

            When SECURECHAT_PEER_COMMAND is set (run.sh sets it), a new room's invitation shows \
            "$SECURECHAT_PEER_COMMAND --join" for this machine and "securechat --join --relay URL" for \
            another one.

            Tor and other SOCKS5 proxies: --tor reaches the relay through the Tor daemon on this machine \
            (127.0.0.1:9050), with fresh random SOCKS credentials per run so that Tor gives this run \
            circuits of its own (IsolateSOCKSAuth); --proxy socks5://HOST:PORT through any SOCKS5 proxy \
            (HOST an IP address; SECURECHAT_PROXY sets the same, "tor" for --tor; the proxy's username \
            and password, if it wants them, come from SECURECHAT_PROXY_USERNAME and \
            SECURECHAT_PROXY_PASSWORD, never from the command line). The relay's host name goes to the \
            proxy: with a proxy the client connects to nothing else and looks up no name, not even on \
            reconnects or errors. A .onion relay is refused without a proxy. The relay then sees the \
            proxy's (or Tor's) address instead of yours, but still the room and when and how much you \
            send.

            Errors say what happened and what to do in one line; --verbose adds the raw error in \
            brackets. A plain ws:// relay that is not on this machine gets a warning: anyone on the \
            network path sees the room, when and how much you send, and your address.

            Interactive (stdin is a terminal): type a line and press Enter to send it. \
            Commands: /help, /verify (show the safety number; /verify NUMBER checks the one your \
            peer reads out), /status (the session, and how the relay is reached), /clear, /quit. Ctrl-C and Ctrl-D leave. NO_COLOR turns colours off.

            Pipe mode (stdin is not a terminal): each line of stdin is one message; each \
            message from the peer is one line on stdout (control characters made visible); \
            states and notices go to stderr. At end of input, pending messages are sent \
            (waiting up to --drain-timeout for the peer to confirm them), then it leaves.

            Files: --send PATH offers a file (repeatable; interactively /send PATH), end-to-end \
            encrypted in 94 KiB chunks and checked by its BLAKE2b-256 hash; in pipe mode the client \
            leaves once every file was stored and confirmed (exit 8 if one was refused or failed). \
            --accept-files DIR accepts every offer into DIR (interactively /accept [DIR], /reject, \
            /cancel); the peer's name is reduced to a safe basename and nothing is ever overwritten.

            \(jsonEventsHelp)

            \(ClientExitStatus.helpText)
            """,
        version: "securechat " + String(cString: securechat_build_description())
    )

    @Argument(help: ArgumentHelp(
        "The code your peer gave you: better typed at the prompt of --join (other users can read arguments).",
        valueName: "code"))
    var code: String?

    @Flag(help: ArgumentHelp(
        "Join a room: asks for the code (Tab completes its words).",
        discussion: "Without a terminal: SECURECHAT_CODE, else the first line of stdin."))
    var join = false

    @Flag(help: ArgumentHelp(
        "Use a password of your own (asked on the terminal, or from SECURECHAT_PASSWORD without one).",
        discussion: "Only with a room-only code, or when creating a room."))
    var password = false

    @Option(help: ArgumentHelp("The relay, ws://HOST:PORT or wss://HOST:PORT.", valueName: "url"))
    var relay: String = ClientApp.defaultRelay

    @Option(name: .customLong("ca-file"),
            help: ArgumentHelp("A PEM file of CA certificates to trust for wss:// (in addition to the system's).",
                               valueName: "path"))
    var caFile: String?

    @Option(help: ArgumentHelp(
        "Reach the relay through this SOCKS5 proxy, socks5://HOST:PORT (HOST an IP address); also SECURECHAT_PROXY.",
        discussion: "Credentials, if the proxy wants them: SECURECHAT_PROXY_USERNAME, SECURECHAT_PROXY_PASSWORD.",
        valueName: "url"))
    var proxy: String?

    @Flag(help: "Reach the relay through Tor (socks5://127.0.0.1:9050, a fresh circuit for this run).")
    var tor = false

    @Flag(help: "Pipe mode: write one JSON object per event on stdout instead of plain lines.")
    var json = false

    @Option(help: ArgumentHelp("Give up (exit 3) when the relay has been unreachable this long.", valueName: "seconds"))
    var giveUpAfter: Int = 300

    @Option(help: ArgumentHelp("Pipe mode: after end of input, wait this long for the peer to confirm pending messages.",
                               valueName: "seconds"))
    var drainTimeout: Int = 30

    @Option(help: ArgumentHelp(
        "Ping the relay after this long without hearing from it; no answer within as long again means the "
            + "connection is dead, and the client reconnects.", valueName: "seconds"))
    var keepalive: Int = 15

    @Flag(help: "Add the raw error (TLS, socket, the relay's own text) to each explanation, in brackets.")
    var verbose = false

    // For tests and benchmarks of the JSON text path: the relay is not offered binary SIGNALs.
    @Flag(help: ArgumentHelp("Send every SIGNAL as JSON text (no binary SIGNALs).", visibility: .hidden))
    var textSignals = false

    @Flag(help: ArgumentHelp(
        "Refuse to run unless every secret can be locked in RAM (RLIMIT_MEMLOCK; exit 5).",
        discussion: "The send queue is shortened to what the limit can hold, if need be."))
    var requireLockedMemory = false

    @Option(name: .customLong("send"), help: ArgumentHelp(
        "Offer this file to the peer, end-to-end encrypted (repeatable); in pipe mode the client exits once "
            + "every file was received and confirmed (exit 8 if one was refused or failed).", valueName: "path"))
    var send: [String] = []

    @Option(name: .customLong("accept-files"), help: ArgumentHelp(
        "Accept every file the peer offers into this directory (never overwriting: name (1).ext).",
        discussion: "Without it, pipe mode declines offers; interactively, /accept or /reject.",
        valueName: "dir"))
    var acceptFiles: String?

    @Option(name: .customLong("max-file-bytes"), help: ArgumentHelp(
        "Refuse offered files larger than this many bytes.", valueName: "bytes"))
    var maxFileBytes: UInt64?

    func validate() throws {
        if let code {
            let parsed = try parseCode(code)
            if password && parsed.wordCount > 0 {
                throw ValidationError("the code already carries a password (its words); --password is for "
                    + "room-only codes")
            }
        }
        let relayURL = try parseRelay()
        try checkRoute(relayURL, proxy: try proxySetting(credentials: nil))
        guard (1...86_400).contains(giveUpAfter) else { throw ValidationError("--give-up-after must be 1...86400") }
        guard (0...86_400).contains(drainTimeout) else { throw ValidationError("--drain-timeout must be 0...86400") }
        guard (1...3_600).contains(keepalive) else { throw ValidationError("--keepalive must be 1...3600") }
        if let acceptFiles {
            var info = stat()
            guard stat(acceptFiles, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
                throw ValidationError("--accept-files: \(acceptFiles) is not a directory")
            }
        }
    }

    private func parseCode(_ text: String) throws -> ChatCode {
        do {
            return try ChatCode.parse(text)
        } catch {
            throw ValidationError("invalid code: \(error)")
        }
    }

    private func parseRelay() throws -> WebSocketURL {
        do {
            return try WebSocketURL(relay)
        } catch {
            throw ValidationError("--relay: \(error)")
        }
    }

    /// The proxy from --tor, --proxy or SECURECHAT_PROXY (in that order), or nil. `credentials`:
    /// for a --proxy, the user's (nil: random ones, which a proxy that needs none ignores).
    func proxySetting(credentials: SOCKSCredentials?) throws -> SOCKSProxy? {
        if tor && proxy != nil { throw ValidationError("--tor and --proxy: choose one") }
        if tor { return .tor() }
        let fromEnvironment = getenv("SECURECHAT_PROXY").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        guard let text = proxy ?? fromEnvironment else { return nil }
        let source = proxy != nil ? "--proxy" : "SECURECHAT_PROXY"
        if text.lowercased() == "tor" { return .tor() }
        do {
            return try SOCKSProxy(url: text, credentials: credentials)
        } catch {
            throw ValidationError("\(source): \(error)")
        }
    }

    /// The proxy's username and password from the environment (both or neither), never argv. The
    /// password's value is overwritten once read, as SECURECHAT_CODE's: gone from /proc/PID/environ.
    static func proxyCredentials() throws -> SOCKSCredentials? {
        let read = { (name: String, wipe: Bool) -> String? in
            guard let value = getenv(name), value.pointee != 0 else { return nil }
            defer { if wipe { memset(value, 0, strlen(value)) } }
            return String(cString: value)
        }
        switch (read("SECURECHAT_PROXY_USERNAME", false), read("SECURECHAT_PROXY_PASSWORD", true)) {
        case (nil, nil): return nil
        case let (username?, password?):
            do {
                return try SOCKSCredentials(username: Array(username.utf8), password: Array(password.utf8))
            } catch {
                throw ValidationError("SECURECHAT_PROXY_USERNAME/PASSWORD: \(error)")
            }
        default: throw ValidationError("set both SECURECHAT_PROXY_USERNAME and SECURECHAT_PROXY_PASSWORD, or neither")
        }
    }

    /// Fail closed before anything is opened: an onion service only through a proxy, and wss://
    /// through one only to a name (the certificate is checked against the relay's name; NIOSSL would
    /// check an IP address against the socket's peer, which is the proxy).
    private func checkRoute(_ relay: WebSocketURL, proxy: SOCKSProxy?) throws {
        if relay.hostIsOnion && proxy == nil {
            throw ValidationError("--relay: \(relay.host) is a Tor onion service, reachable only through Tor: "
                + "add --tor (or --proxy); the client never tries to reach a .onion address directly")
        }
        if proxy != nil && relay.usesTLS && relay.hostIsIPAddress {
            throw ValidationError("--relay: wss:// through a proxy needs the relay's host name, not an IP address "
                + "(its certificate is checked against the name)")
        }
    }

    /// Whether the client will run interactively (as `ClientApp.run` decides).
    var interactive: Bool { !json && isatty(0) == 1 && isatty(1) == 1 }

    /// The code: the argument, or with --join the prompt, SECURECHAT_CODE or stdin's first line
    /// (asked again, up to three times, when a typed code is not valid); nil to create a room.
    func chatCode(signalFD: Int32) throws -> ChatCode? {
        if let code { return try parseCode(code) }
        guard join else { return nil }
        let attempts = interactive ? 3 : 1
        for attempt in 1...attempts {
            switch CodeInput.read(interactive: interactive, signalFD: signalFD) {
            case let .success(text):
                do {
                    return try ChatCode.parse(text)
                } catch {
                    if attempt == attempts { throw ValidationError("invalid code: \(error)") }
                    printError("securechat: invalid code: \(error); try again")
                }
            case let .failure(.interrupted(signal)): throw Interrupted(signal: signal)
            case let .failure(failure): throw ValidationError("\(failure)")
            }
        }
        return nil
    }

    /// The options, with the code and the password asked for (or read from the environment).
    func options(signalFD: Int32) throws -> ClientOptions {
        let joining = try chatCode(signalFD: signalFD)
        if self.password, let joining, joining.wordCount > 0 {
            throw ValidationError("the code already carries a password (its words); --password is for room-only codes")
        }
        let chatCode = joining ?? ChatCode.generate(entropy: SystemEntropy())
        var password = chatCode.password
        if self.password {
            switch PasswordInput.read(confirm: joining == nil, signalFD: signalFD) {
            case let .success(own): password = own
            case let .failure(.interrupted(signal)): throw Interrupted(signal: signal)
            case let .failure(failure): throw ValidationError("\(failure)")
            }
        }
        let invitation = joining != nil ? nil : ClientApp.invitation(
            code: self.password ? chatCode.room.value : chatCode.revealForSharing(), ownPassword: self.password,
            relayText: relay, caFilePath: caFile)
        var options = ClientOptions(
            room: chatCode.room, password: password, invitation: invitation, relay: try parseRelay(),
            caFilePath: caFile, json: json, giveUpAfterSeconds: giveUpAfter, drainTimeoutSeconds: drainTimeout,
            keepaliveSeconds: keepalive)
        options.verbose = verbose
        options.binarySignals = !textSignals
        options.proxy = try proxySetting(credentials: try Self.proxyCredentials())
        options.files.sendPaths = send
        options.files.acceptDirectory = acceptFiles
        if let maxFileBytes { options.files.maxFileBytes = min(maxFileBytes, FileTransfers.fileBytesMax) }
        return options
    }
}

/// Ctrl-C (or another terminating signal) at the code or password prompt.
struct Interrupted: Error {
    var signal: Int32
}

/// Write to stderr without Foundation.
func printError(_ text: String) {
    let bytes = Array((text.hasSuffix("\n") ? text : text + "\n").utf8)
    bytes.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
}

// Before anything else, and before any thread exists: no core dumps, signals to a signalfd.
let signalFD: Int32
switch ClientApp.prepareProcess() {
case let .success(fd): signalFD = fd
case let .failure(error):
    printError("securechat: \(error)")
    exit(ClientExitStatus.internalFailure.code)
}
// Also before any secret exists: every process may raise its soft limit to the hard one.
let memoryLimits = MemoryLockLimits.raise()

let command: Securechat
do {
    command = try Securechat.parse()
} catch {
    // --help is a "clean exit" with the help text on stdout; everything else is a usage error.
    if Securechat.exitCode(for: error) == .success {
        print(Securechat.fullMessage(for: error))
        exit(ClientExitStatus.success.code)
    }
    printError(Securechat.fullMessage(for: error))
    exit(ClientExitStatus.usage.code)
}

// glibc gives freed heap memory back to the kernel whenever 128 KiB lie free at the top of a heap
// (the main one or an NIO thread's), so a file transfer, which frees a chunk buffer of about 94 KiB
// per frame, faulted in fresh zeroed pages all the time: a third or more of the receiver's kernel
// time for 1 GiB (BENCHMARKS.md, "File transfer"). Up to 64 MiB freed is kept for reuse (the files'
// RSS bound); 4 MiB or more (a hash slice) is a mapping of its own, returned when freed.
_ = scl_malloc_keep_freed(64 << 20, 4 << 20)

// A code typed as an argument: out of /proc/PID/cmdline (and ps) at once; the warning is shown
// when the client starts.
var startNotices: [ClientNotice] = []
if let code = command.code {
    CommandLineSecret.erase(code)
    startNotices.append(.codeOnCommandLine)
}

// Before the first secret is allocated: can they all be locked in RAM?
let memoryCheck: LockedMemoryCheck.Outcome
switch LockedMemoryCheck.run(limits: memoryLimits, require: command.requireLockedMemory) {
case let .success(outcome): memoryCheck = outcome
case let .failure(error):
    printError("securechat: error: \(error)")
    exit(ClientExitStatus.internalFailure.code)
}
if let warning = memoryCheck.warning { startNotices.append(warning) }

do {
    var options = try command.options(signalFD: signalFD)
    options.notices = startNotices
    options.memoryLockLimits = memoryLimits
    if command.requireLockedMemory { options.sendQueueMax = memoryCheck.sendQueueMax }
    exit(ClientApp.run(options, signalFD: signalFD).code)
} catch let interrupted as Interrupted {
    exit(ClientExitStatus.signal(interrupted.signal).code)
} catch {
    printError("securechat: \(error)")
    exit(ClientExitStatus.usage.code)
}
