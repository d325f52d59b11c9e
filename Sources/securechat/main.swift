import ArgumentParser
import ChatClient
import ChatCore
import ChatNetworking

#if canImport(Glibc)
import Glibc
#endif

/// `securechat [CODE] [--relay URL]`: an ephemeral, end-to-end encrypted chat.
struct Securechat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "securechat",
        abstract: "Ephemeral, end-to-end encrypted chat through a blind relay.",
        discussion: """
            Without CODE, creates a room and prints the command your peer should type; with \
            CODE, joins that room. Keys live only in locked memory and are wiped on exit; \
            nothing is ever written to disk.

            Interactive (stdin is a terminal): type a line and press Enter to send it. \
            Commands: /help, /verify (compare keys with your peer), /clear, /quit. \
            Ctrl-C and Ctrl-D leave. NO_COLOR turns colours off.

            Pipe mode (stdin is not a terminal): each line of stdin is one message; each \
            message from the peer is one line on stdout (control characters made visible); \
            states and notices go to stderr. At end of input, pending messages are sent \
            (waiting up to --drain-timeout for the peer to confirm them), then it leaves.

            \(jsonEventsHelp)

            \(ClientExitStatus.helpText)
            """
    )

    @Argument(help: "The code your peer gave you (letters and digits). Omit it to create a room.")
    var code: String?

    @Option(help: ArgumentHelp("The relay, ws://HOST:PORT or wss://HOST:PORT.", valueName: "url"))
    var relay: String = ClientApp.defaultRelay

    @Option(name: .customLong("ca-file"),
            help: ArgumentHelp("A PEM file of CA certificates to trust for wss:// (in addition to the system's).",
                               valueName: "path"))
    var caFile: String?

    @Flag(help: "Pipe mode: write one JSON object per event on stdout instead of plain lines.")
    var json = false

    @Option(help: ArgumentHelp("Give up (exit 3) when the relay has been unreachable this long.", valueName: "seconds"))
    var giveUpAfter: Int = 300

    @Option(help: ArgumentHelp("Pipe mode: after end of input, wait this long for the peer to confirm pending messages.",
                               valueName: "seconds"))
    var drainTimeout: Int = 30

    func validate() throws {
        if let code { _ = try parseCode(code) }
        _ = try parseRelay()
        guard (1...86_400).contains(giveUpAfter) else { throw ValidationError("--give-up-after must be 1...86400") }
        guard (0...86_400).contains(drainTimeout) else { throw ValidationError("--drain-timeout must be 0...86400") }
    }

    private func parseCode(_ text: String) throws -> RoomCode {
        do {
            return try InvitationCode.parse(text)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    private func parseRelay() throws -> WebSocketURL {
        do {
            return try WebSocketURL(relay)
        } catch {
            throw ValidationError("--relay: \(error)")
        }
    }

    func options() throws -> ClientOptions {
        let room = try code.map(parseCode) ?? ClientApp.newRoom()
        return ClientOptions(
            room: room, created: code == nil, relay: try parseRelay(), relayText: relay, caFilePath: caFile,
            json: json, giveUpAfterSeconds: giveUpAfter, drainTimeoutSeconds: drainTimeout)
    }
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

do {
    let options = try command.options()
    exit(ClientApp.run(options, signalFD: signalFD).code)
} catch {
    printError("securechat: \(error)")
    exit(ClientExitStatus.usage.code)
}
