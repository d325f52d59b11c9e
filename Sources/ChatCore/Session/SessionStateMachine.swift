/// The lifecycle of a chat session (the original design's states).
public enum SessionState: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// Created; no connection to the relay yet.
    case initial = "INIT"
    /// Connected to the relay and joined (or joining) the room; waiting for a peer.
    case searching = "SEARCHING"
    /// A peer is in the room; about to make keys.
    case userFound = "USER_FOUND"
    /// Our key is sent; waiting for the peer's key and its confirmation.
    case keySetup = "KEY_SETUP"
    /// Both sides proved the same keys: messages may be sent and shown.
    case connected = "CONNECTED"
    /// The peer or the relay connection is gone; keys are wiped; queued messages wait.
    case disconnected = "DISCONNECTED"
    /// Ended for good: keys wiped, nothing more happens.
    case destroyed = "DESTROYED"

    public var description: String { rawValue }
}

/// Everything that can happen to a session, as far as its lifecycle is concerned.
public enum SessionEvent: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// The connection to the relay is up (a JOIN goes out).
    case transportUp
    /// The connection to the relay is gone.
    case transportDown
    /// The relay reports a peer in the room (or a peer's handshake shows there is one).
    case peerFound
    /// Our fresh key pair is made and our key is on its way.
    case keysGenerated
    /// The peer proved it holds the same session keys.
    case keyConfirmed
    /// The relay reports that the peer left.
    case peerLeft
    /// The peer began a new handshake (it reconnected or restarted).
    case peerRestarted
    /// The user sends a chat message. (This and `receiveMessage` are CONNECTED's self-loops: they
    /// change nothing, so `SessionManager` does not apply them.)
    case sendMessage
    /// A chat message arrives from the peer.
    case receiveMessage
    /// A failure that ends the session (authentication failed, the room is full, ...).
    case fatalError
    /// The user leaves.
    case quit

    public var description: String { rawValue }
}

/// The session lifecycle as a pure transition table: every (state, event) pair is either a
/// defined transition or a typed rejection. It does no I/O and holds nothing but the state.
public struct SessionStateMachine: Hashable, Sendable {
    /// A (state, event) pair with no transition.
    public struct Rejection: Error, Hashable, Sendable, CustomStringConvertible {
        public let state: SessionState
        public let event: SessionEvent

        public init(state: SessionState, event: SessionEvent) {
            self.state = state
            self.event = event
        }

        public var description: String { "\(event) is not allowed in state \(state)" }
    }

    public private(set) var state: SessionState

    public init(state: SessionState = .initial) {
        self.state = state
    }

    /// Apply `event`: move to the next state, or throw a `Rejection` and stay.
    @discardableResult
    public mutating func apply(_ event: SessionEvent) throws(Rejection) -> SessionState {
        guard let next = Self.transition(from: state, on: event) else {
            throw Rejection(state: state, event: event)
        }
        state = next
        return next
    }

    /// The transition table. `nil` means the event is rejected in that state.
    public static func transition(from state: SessionState, on event: SessionEvent) -> SessionState? {
        switch (state, event) {
        // Leaving is always possible, and final; so is a fatal failure.
        case (.destroyed, _): nil
        case (_, .quit), (_, .fatalError): .destroyed

        case (.initial, .transportUp): .searching

        case (.searching, .peerFound): .userFound
        case (.searching, .transportDown): .disconnected
        // A PEER_LEFT whose PEER_FOUND was lost (or a stale one): still waiting.
        case (.searching, .peerLeft): .searching

        case (.userFound, .keysGenerated): .keySetup
        case (.userFound, .transportDown), (.userFound, .peerLeft): .disconnected

        case (.keySetup, .keyConfirmed): .connected
        case (.keySetup, .transportDown), (.keySetup, .peerLeft): .disconnected
        case (.keySetup, .peerRestarted): .userFound

        case (.connected, .sendMessage), (.connected, .receiveMessage): .connected
        case (.connected, .transportDown), (.connected, .peerLeft), (.connected, .peerRestarted): .disconnected

        case (.disconnected, .transportUp): .searching
        case (.disconnected, .peerFound): .userFound
        case (.disconnected, .transportDown), (.disconnected, .peerLeft): .disconnected

        default: nil
        }
    }
}
