/// The process exit status of `securechat`, documented in `--help`. The numbers never change
/// meaning (scripts depend on them).
public enum ClientExitStatus: Hashable, Sendable, CustomStringConvertible {
    /// The user left (or input ended) and every message sent was confirmed by the peer.
    case success
    /// Bad command line: unknown option, malformed code, relay URL or CA file.
    case usage
    /// The relay refused the room (it already has two peers, or the code is invalid).
    case relayRefused
    /// The relay could not be reached, or the connection failed in a way retrying cannot fix
    /// (an untrusted certificate, not a WebSocket server), or it stayed down past `--give-up-after`.
    case connectionFailed
    /// The session ended with messages the peer never confirmed (they were reported).
    case undelivered
    /// A local failure (the terminal or the process could not be set up, or with
    /// `--require-locked-memory` too little memory can be locked for the secrets).
    case internalFailure
    /// The handshake could not be authenticated: a different password, a peer with or without a
    /// password when this side has the opposite, keys substituted on the way, a peer that could
    /// not prove the earlier keys, a blocked handshake, or too many unconfirmed attempts. The
    /// code is spent.
    case authenticationFailed
    /// The peer's securechat speaks another version of the session protocol.
    case incompatiblePeer
    /// A file transfer was refused, cancelled or failed (each was reported); messages all delivered.
    case filesFailed
    /// Ended by SIGTERM, SIGHUP or SIGQUIT: 128 + the signal number, as shells report it.
    case signal(Int32)

    public var code: Int32 {
        switch self {
        case .success: 0
        case .usage: 1
        case .relayRefused: 2
        case .connectionFailed: 3
        case .undelivered: 4
        case .internalFailure: 5
        case .authenticationFailed: 6
        case .incompatiblePeer: 7
        case .filesFailed: 8
        case let .signal(number): 128 + number
        }
    }

    public var description: String { "exit \(code)" }

    /// The table printed by `--help`.
    public static let helpText = """
        Exit status:
          0    you left (/quit, Ctrl-C, Ctrl-D, end of input); all delivered
          1    usage error: bad option, code, relay URL or CA file
          2    the relay refused the room (two peers already, invalid code)
          3    the relay was unreachable past --give-up-after, or failed in a
               way retrying cannot fix (untrusted certificate, not a relay)
          4    messages were left undelivered at exit (each was reported)
          5    local failure (terminal or process set-up; too little lockable
               memory with --require-locked-memory)
          6    authentication failed: a mistyped code, or someone in the middle
               (keys substituted, a wrong password, a blocked key exchange); the
               code is spent, start a new room
          7    the peer runs a securechat that speaks another protocol version
          8    a file transfer was refused, cancelled or failed (each was reported)
          129, 131, 143  SIGHUP, SIGQUIT, SIGTERM (128 + signal); keys wiped
        """
}
