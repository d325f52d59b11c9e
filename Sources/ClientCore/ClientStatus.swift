import ChatCore

/// A notice, with a stable machine-readable kind (for `--json`) and a text for people.
public struct ClientNotice: Hashable, Sendable {
    public enum Level: String, Hashable, Sendable {
        case info
        case warning
        case error
    }

    /// Stable names; scripts match on them.
    public enum Kind: String, Hashable, Sendable {
        case connecting = "connecting"
        case relayConnected = "relay_connected"
        case relayLost = "relay_lost"
        case relayUnreachable = "relay_unreachable"
        case retrying = "retrying"
        case reconnected = "reconnected"
        case joined = "joined"
        case peerFound = "peer_found"
        case peerLeft = "peer_left"
        case peerRestarted = "peer_restarted"
        case secured = "secured"
        case rekeyed = "rekeyed"
        case relayError = "relay_error"
        case authenticationFailed = "authentication_failed"
        case handshakeRefused = "handshake_refused"
        case reauthenticating = "reauthenticating"
        case codeSpent = "code_spent"
        case incompatiblePeer = "incompatible_peer"
        case peerLeaving = "peer_leaving"
        case verified = "verified"
        case verifyMismatch = "verify_mismatch"
        case suspiciousFrame = "suspicious_frame"
        case draining = "draining"
        case gaveUp = "gave_up"
        case confirmQuit = "confirm_quit"
        case unknownCommand = "unknown_command"
        case unreadableInput = "unreadable_input"
        case ended = "ended"
        /// The code was given as an argument (visible to other users until wiped).
        case codeOnCommandLine = "code_on_command_line"
        /// The relay is reached over plain ws:// across a network.
        case unencryptedRelay = "unencrypted_relay"
        /// Secrets cannot all be locked in RAM (RLIMIT_MEMLOCK).
        case memoryNotLocked = "memory_not_locked"
        /// A file could not be offered, stored or answered (the text says which and why).
        case fileProblem = "file_problem"
        /// A path given to `/send` or `--send` is no regular file (a FIFO, a device, a socket, a
        /// directory): refused without reading it, counted as a failed file (exit 8).
        case fileNotRegular = "file_not_regular"
        /// A file offer waits for `/accept` or `/reject`.
        case fileOffered = "file_offered"
        /// The download directory holds `.part`s of transfers cut off earlier (at start).
        case fileKeptParts = "file_kept_parts"
    }

    public var kind: Kind
    public var level: Level
    /// For people. Any part that came from the network is sanitized by the renderer.
    public var text: String

    public init(_ kind: Kind, _ level: Level = .info, _ text: String) {
        self.kind = kind
        self.level = level
        self.text = text
    }
}

/// The state of the relay link, for the status line.
public enum RelayLinkState: Hashable, Sendable {
    case connecting
    case up
    case retrying
    case closed
}

/// Whether the peer is in the room, as far as the client knows.
public enum PeerPresence: String, Hashable, Sendable {
    case absent
    case present
    case unknown
}

/// What the status line shows.
public struct ClientStatus: Hashable, Sendable {
    public var state: SessionState
    public var room: RoomCode
    public var relay: RelayLinkState
    public var peer: PeerPresence
    /// Messages accepted and not yet confirmed by the peer.
    public var pending: Int
    /// How the session's handshakes are authenticated (a password, or safety numbers only).
    public var authentication: SessionAuthentication
    /// The user confirmed the current safety number with `/verify <number>` (reset by every
    /// re-key, which brings a new number).
    public var verified: Bool
    /// How the relay is reached (straight, via Tor, via a proxy).
    public var route: RelayRoute = .direct
    /// File transfers under way, oldest first (the terminal's progress line).
    public var transfers: [FileTransferStatus] = []

    /// Messages are end-to-end encrypted right now.
    public var encrypted: Bool { state == .connected }
}

/// One transfer as the status area shows it: whole percents, so the status changes at most 100
/// times per transfer (the terminal redraws on change).
public struct FileTransferStatus: Hashable, Sendable {
    public var id: FileID
    /// As offered (the peer's, for an incoming file: renderers sanitize it).
    public var name: String
    public var direction: FileDirection
    public var sizeBytes: UInt64
    /// Whole percent acknowledged (outgoing) or written (incoming).
    public var percent: UInt64
    /// The bytes at that percent, for the rate.
    public var bytes: UInt64

    public init(id: FileID, name: String, direction: FileDirection, sizeBytes: UInt64, bytes: UInt64) {
        self.id = id
        self.name = name
        self.direction = direction
        self.sizeBytes = sizeBytes
        self.percent = sizeBytes == 0 ? 100 : bytes * 100 / sizeBytes
        self.bytes = sizeBytes == 0 ? 0 : percent * sizeBytes / 100
    }
}
