/// Tunables of a session. Every queue has a bound and every timer a cap.
public struct SessionConfiguration: Sendable {
    /// The room to join (only this part of a code ever reaches the relay).
    public var room: RoomCode
    /// Codec limits for frames from the relay.
    public var wireLimits: WireLimits
    /// First JOIN retransmission interval while no JOINED has arrived.
    public var joinRetransmitInitial: Duration
    /// First handshake retransmission interval in KEY_SETUP.
    public var handshakeRetransmitInitial: Duration
    /// First retransmission timeout for unacknowledged messages.
    public var messageRetransmitInitial: Duration
    /// Cap for every exponential backoff above.
    public var retransmitMax: Duration
    /// Most messages waiting to be sent or acknowledged; more are refused.
    public var sendQueueMax: Int
    /// Most messages in flight (sent, not yet acknowledged).
    public var inFlightMax: Int
    /// Most out-of-order records held for later in-order delivery.
    public var reorderBufferMax: Int
    /// Largest message text, in UTF-8 bytes.
    public var messageTextMaxBytes: Int
    /// With a password: how many CPace tags this side may give out that the peer never confirms,
    /// over the session's whole life (the process's run). Each may have been a relay's password
    /// guess (a tag lets it test one), so at this count no further password handshake starts:
    /// without keys in use the session ends with `AuthenticationFailure.tooManyAttempts` (the
    /// code is spent). Only the first handshake with each peer instance uses the password; later
    /// ones continue with a retained secret. See docs/SECURITY.md ("The guess budget").
    public var passwordRunsUnconfirmedMax: Int
    /// A handshake not confirmed this long after its first opening counts as blocked: without
    /// keys in use the session ends ("authentication failed": frames flow and nothing verifies),
    /// while CONNECTED the re-key is dropped. Above the relay's idle timeout (75 s), so that an
    /// honest peer whose path died is reported by PEER_LEFT first.
    public var handshakeTimeout: Duration

    public init(
        room: RoomCode,
        wireLimits: WireLimits = .default,
        joinRetransmitInitial: Duration = .seconds(1),
        handshakeRetransmitInitial: Duration = .milliseconds(500),
        messageRetransmitInitial: Duration = .milliseconds(400),
        retransmitMax: Duration = .seconds(8),
        sendQueueMax: Int = 1024,
        inFlightMax: Int = 64,
        reorderBufferMax: Int = 64,
        messageTextMaxBytes: Int = 4096,
        passwordRunsUnconfirmedMax: Int = SessionConfiguration.passwordRunsUnconfirmedDefault,
        handshakeTimeout: Duration = .seconds(90)
    ) {
        precondition(sendQueueMax >= 1 && inFlightMax >= 1 && reorderBufferMax >= 0)
        precondition(messageTextMaxBytes >= 1 && messageTextMaxBytes <= 16 * 1024)
        precondition(retransmitMax >= joinRetransmitInitial && retransmitMax >= handshakeRetransmitInitial)
        precondition(retransmitMax >= messageRetransmitInitial)
        precondition(passwordRunsUnconfirmedMax >= 0 && passwordRunsUnconfirmedMax <= 64)
        precondition(handshakeTimeout > retransmitMax)
        self.room = room
        self.wireLimits = wireLimits
        self.joinRetransmitInitial = joinRetransmitInitial
        self.handshakeRetransmitInitial = handshakeRetransmitInitial
        self.messageRetransmitInitial = messageRetransmitInitial
        self.retransmitMax = retransmitMax
        self.sendQueueMax = sendQueueMax
        self.inFlightMax = inFlightMax
        self.reorderBufferMax = reorderBufferMax
        self.messageTextMaxBytes = messageTextMaxBytes
        self.passwordRunsUnconfirmedMax = passwordRunsUnconfirmedMax
        self.handshakeTimeout = handshakeTimeout
    }

    /// The default guess budget (`passwordRunsUnconfirmedMax`).
    public static let passwordRunsUnconfirmedDefault = 2
}

/// The local identifier of a message the user sent, for delivery status in the UI.
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64

    public init(_ value: UInt64) {
        self.value = value
    }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool { lhs.value < rhs.value }

    public var description: String { "#\(value)" }
}

/// What the shell feeds into a session (the user's messages go through `SessionManager.send(_:now:)`).
public enum SessionInput: Hashable, Sendable {
    /// The connection to the relay is open.
    case transportUp
    /// The connection to the relay is closed (or failed).
    case transportDown
    /// One text frame from the relay, as bytes.
    case frame([UInt8])
    /// One binary frame from the relay: a binary SIGNAL (`BinarySignal`), on a connection that
    /// negotiated `securechat.binary`.
    case binaryFrame([UInt8])
    /// The user leaves, saying goodbye: while CONNECTED the session tells the peer (BYE), waits
    /// until its own messages are confirmed and every record the peer sent before learning of it
    /// has arrived, and then ends (`.ended(.userQuit)`). Without keys it waits for them to come
    /// back (and then says goodbye) if there is a conversation whose peer has not said goodbye and
    /// gone; otherwise it ends at once. The caller bounds the wait (`.quit` ends it).
    case leave
    /// The user leaves now (a single BYE tells a connected peer, then the session ends).
    case quit
}

/// A chat message from the peer, authenticated and in order.
public struct IncomingMessage: Hashable, Sendable {
    /// The peer's sequence number for the message (1, 2, ... per conversation).
    public let sequence: UInt64
    /// The text exactly as the peer sent it. Sanitize it (`TerminalText`) before display.
    public let text: String
}

/// Why a message the user typed was not accepted.
public enum SendRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    case empty
    case tooLong(maxBytes: Int)
    case queueFull(max: Int)
    case sessionEnded

    public var description: String {
        switch self {
        case .empty: "empty message"
        case let .tooLong(maxBytes): "message longer than \(maxBytes) bytes"
        case let .queueFull(max): "\(max) messages are already waiting; try again when some are delivered"
        case .sessionEnded: "the session has ended"
        }
    }
}

/// Why messages could not be delivered.
public enum UndeliverableReason: Hashable, Sendable, CustomStringConvertible {
    /// The peer restarted (a new instance) before acknowledging them; they were meant for the
    /// old one and are not sent to the new one.
    case peerChanged
    /// The session ended (quit or a fatal failure) before the peer acknowledged them.
    case sessionEnded
    /// The peer said goodbye (BYE): it left before they reached it, or they were sent after.
    case peerLeft

    public var description: String {
        switch self {
        case .peerChanged: "the peer restarted before confirming them"
        case .sessionEnded: "the session ended before the peer confirmed them"
        case .peerLeft: "the peer left the chat"
        }
    }
}

/// A frame that was refused, and why. The frame is dropped; the session carries on.
public enum FrameRejection: Hashable, Sendable, CustomStringConvertible {
    case wire(WireError)
    case crypto(CryptoError)
    case handshake(HandshakeError)
    case record(RecordError)
    case state(SessionStateMachine.Rejection)

    /// True for rejections that indicate tampering or an attack rather than ordinary network
    /// effects (duplicates and reordering are ordinary; a failed authentication is not).
    public var isSuspicious: Bool {
        switch self {
        case .crypto(.authenticationFailed), .crypto(.weakPublicKey), .crypto(.reflectedPublicKey),
             .handshake(.confirmationFailed), .handshake(.inconsistentResume), .handshake(.invalidShare), .record:
            true
        default:
            false
        }
    }

    public var description: String {
        switch self {
        case let .wire(error): "protocol error: \(error)"
        case let .crypto(error): "crypto: \(error)"
        case let .handshake(error): "handshake: \(error)"
        case let .record(error): "record: \(error)"
        case let .state(rejection): "state: \(rejection)"
        }
    }
}

/// How a session's key exchange is authenticated against a relay in the middle.
public enum SessionAuthentication: String, Hashable, Sendable, CustomStringConvertible {
    /// CPace with the shared password: a relay in the middle makes the handshake fail.
    case password
    /// X25519 without a password: only comparing safety numbers (`/verify`) shows a relay in
    /// the middle.
    case safetyNumber = "safety-number"

    public var description: String { rawValue }
}

/// Why a handshake could not be authenticated. Every case ends the session for good: with a
/// password, the code is spent (a relay may have used the run to test one guess).
public enum AuthenticationFailure: Hashable, Sendable, CustomStringConvertible {
    /// The peer's key confirmation did not verify: the two sides used different passwords, or
    /// a relay in the middle guessed one and missed.
    case passwordMismatch
    /// More CPace runs than the budget ended unconfirmed after we gave out our confirmation tag
    /// (each may have been a relay's guess).
    case tooManyAttempts(Int)
    /// We have a password; the peer's handshake has none (a plain KEY_EXCHANGE).
    case peerHasNoPassword
    /// The peer's handshake uses a password (PAKE); we have none.
    case peerHasPassword
    /// A confirmation named our pairing and did not prove it (another transcript, or a proof
    /// that does not open), or named an opening we never made: the keys or hellos were
    /// substituted on the way.
    case confirmationMismatch
    /// The peer instance whose keys we confirmed came back unable to key with any secret we keep
    /// for it (without a password): someone else using its public identity.
    case continuityNotProven
    /// The handshake was not confirmed within `SessionConfiguration.handshakeTimeout` while the
    /// peer was in the room: blocked.
    case handshakeTimedOut

    public var description: String {
        switch self {
        case .passwordMismatch: "the password did not match (or someone tried to intercept)"
        case let .tooManyAttempts(count):
            "\(count) password handshakes ended unconfirmed (someone may be guessing the password)"
        case .peerHasNoPassword: "the peer joined without the password (or someone tried to intercept)"
        case .peerHasPassword: "the peer uses a password and you joined without one"
        case .confirmationMismatch: "the keys did not match (someone in the middle substituted them)"
        case .continuityNotProven: "the peer could not prove the earlier keys (someone may be impersonating it)"
        case .handshakeTimedOut: "the handshake did not complete although the peer is there (someone may be blocking it)"
        }
    }
}

/// Why a session ended for good.
public enum SessionEndReason: Hashable, Sendable, CustomStringConvertible {
    case userQuit
    case relayRefused(RelayErrorCode)
    /// The handshake could not be authenticated (DESTROYED before any message was encrypted).
    case authenticationFailed(AuthenticationFailure)
    /// The peer speaks another version of the session protocol (its hello's first byte).
    case incompatiblePeer(version: UInt8)

    public var description: String {
        switch self {
        case .userQuit: "you left"
        case let .relayRefused(code): "the relay refused the room (\(code.rawValue))"
        case let .authenticationFailed(failure): "authentication failed: \(failure)"
        case let .incompatiblePeer(version):
            "the peer speaks session protocol version \(version), this client \(HandshakeHello.version)"
        }
    }
}

/// Things the UI should tell the user about. None of them carries a key.
public enum SessionNotice: Hashable, Sendable {
    /// The relay accepted the JOIN; `peersPresent` counts us too.
    case joined(room: RoomCode, peersPresent: Int)
    case peerFound
    case peerLeft
    /// The handshake just confirmed is with a new instance of the peer (its process restarted):
    /// a new conversation (messages meant for the old one were reported undeliverable) and,
    /// without a password, a new and unverified peer. Reported with the `secured` notice.
    case peerRestarted
    /// With a password: a password handshake beyond the session's first gave out its tag (the
    /// peer began again as a new process, or someone is trying): `attempt` of the unconfirmed
    /// tags allowed (`passwordRunsUnconfirmedMax`).
    case reauthenticating(attempt: Int, of: Int)
    /// While CONNECTED, a new handshake that could not be authenticated was refused; the session
    /// carries on with its proven keys.
    case handshakeRefused(AuthenticationFailure)
    /// The peer said goodbye: it leaves once what it sent has arrived; what is sent to it from
    /// now on is reported undeliverable (`peerLeft`).
    case peerLeaving
    /// The handshake is being retransmitted (attempt 2, 3, ...).
    case handshakeRetransmitted(attempt: Int)
    /// Keys confirmed. `resumed`: the same peer instance as before, the conversation continues.
    /// `safetyNumber`: this handshake's, the same on both sides unless someone is in the middle.
    case secured(resumed: Bool, authentication: SessionAuthentication, safetyNumber: SafetyNumber)
    /// The relay sent an ERROR.
    case relayError(code: RelayErrorCode, message: String)
    /// A frame was refused (typed); nothing from it was shown.
    case frameRejected(FrameRejection)
    /// The session ended.
    case ended(SessionEndReason)
}

/// What a session asks its shell to do or show.
public enum SessionOutput: Hashable, Sendable {
    /// Send this text frame to the relay.
    case transmit([UInt8])
    /// The lifecycle state changed.
    case stateChanged(from: SessionState, to: SessionState)
    /// A message from the peer, to show.
    case received(IncomingMessage)
    /// The peer confirmed receipt of these messages.
    case delivered([MessageID])
    /// These messages will never be confirmed.
    case undeliverable([MessageID], UndeliverableReason)
    /// Something to tell the user.
    case notice(SessionNotice)
    /// The session is over; close the connection.
    case closeTransport
    /// A file message from the peer, for `FileTransfers` (docs/PROTOCOL.md, "File transfer").
    case file(FileSessionMessage)
}

/// What the session hands on, unread, to the file transfers.
public enum FileSessionMessage: Hashable, Sendable {
    /// A file control record (type 2), opened and in order like a chat record.
    case control([UInt8])
    /// An `FCHUNK` or `FACK` SIGNAL, received while CONNECTED (sealed under a file's key, which
    /// only the transfers hold).
    case signal(Signal)
}
