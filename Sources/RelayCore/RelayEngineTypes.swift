import ChatCore

/// The bytes of a WebSocket payload, in whatever type the shell holds them: `ByteBuffer` in the
/// NIO relay (so forwarding stays zero-copy), `[UInt8]` in the simulator. The engine reads a text
/// frame's bytes to validate it and hands the very same value back in `.forward`.
public protocol RelayFrameBytes {
    /// The payload's length in bytes.
    var relayByteCount: Int { get }
    /// Call `body` with the payload's bytes.
    func withRelayBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result
    /// A new payload of `count` bytes, written by `initialize` (a binary SIGNAL converted to text
    /// for a peer that did not negotiate binary).
    static func makeRelayFrame(count: Int, _ initialize: (UnsafeMutableRawBufferPointer) -> Void) -> Self
}

extension Array: RelayFrameBytes where Element == UInt8 {
    @inlinable
    public var relayByteCount: Int { count }

    @inlinable
    public func withRelayBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        withUnsafeBytes(body)
    }

    public static func makeRelayFrame(count: Int, _ initialize: (UnsafeMutableRawBufferPointer) -> Void) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes(initialize)
        return bytes
    }
}

extension RelayFrameBytes {
    /// The text form of this binary SIGNAL (`BinarySignal.writeText`); nil when it is not one.
    func textSignal() -> Self? {
        withRelayBytes { bytes -> Self? in
            guard let count = BinarySignal.textCount(bytes) else { return nil }
            return Self.makeRelayFrame(count: count) { out in _ = BinarySignal.writeText(bytes, into: out) }
        }
    }
}

/// A WebSocket close status code (RFC 6455 §7.4), without a dependency on NIO.
public struct CloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16

    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    /// 1000: the purpose of the connection was fulfilled (the relay's default echo).
    public static let normalClosure = CloseCode(rawValue: 1000)
    /// 1001: the relay is shutting down.
    public static let goingAway = CloseCode(rawValue: 1001)
    /// 1002: a WebSocket protocol error.
    public static let protocolError = CloseCode(rawValue: 1002)
    /// 1008: a policy was violated (idle timeout).
    public static let policyViolation = CloseCode(rawValue: 1008)
    /// 1009: a message over the size cap.
    public static let messageTooLarge = CloseCode(rawValue: 1009)
    /// 1013: over a connection cap; try again later.
    public static let tryAgainLater = CloseCode(rawValue: 1013)

    public var description: String { String(rawValue) }
}

/// One complete inbound WebSocket message, as the shell's decoder delivers it (continuations
/// already joined).
public enum InboundFrame<Frame: RelayFrameBytes> {
    /// A text frame's unmasked payload.
    case text(Frame)
    /// A binary frame's unmasked payload: a SIGNAL in binary form on a connection that negotiated
    /// `securechat.binary` (`RelayEngine.upgraded`); on any other, answered with an `ERROR`.
    case binary(Frame)
    /// A ping and its unmasked payload (answered with a pong carrying it).
    case ping(Frame)
    /// A pong (only keeps the connection from going idle).
    case pong
    /// A fragment of a message other than its last (the shell's aggregator joins fragments and
    /// delivers the whole message as `.text`; each earlier fragment is charged one message here).
    case fragment
    /// A close frame and its status code, if it carried one.
    case close(CloseCode?)
    /// A frame with an opcode the WebSocket protocol reserves.
    case reserved
}

/// Something went wrong below the frame level; the shell reports it and the engine decides.
public enum TransportFault: Hashable, Sendable {
    /// A frame's header announced more than the size cap, or fragments added up to more.
    case frameTooLarge
    /// A frame that breaks the WebSocket protocol (bad masking, bad control frame, bad fragments).
    case malformedFrame
    /// The socket failed (reset, TLS error): nothing more can be said on it.
    case ioError
    /// `--trust-proxy proxy-protocol`: the connection did not begin with a valid PROXY protocol
    /// v2 header.
    case badProxyHeader
}

/// What the engine decided about a newly accepted TCP connection.
public struct Acceptance: Hashable, Sendable {
    public enum Disposition: Hashable, Sendable {
        /// Serve it: finish the TLS and WebSocket upgrade, then report `upgraded`.
        case serve
        /// Finish the upgrade anyway, so the client can be told why (`ERROR` then close 1013);
        /// the engine does the telling once `upgraded` is reported.
        case refuse(RelayErrorCode, RejectionReason)
        /// Far over the caps, or shutting down: close the socket now, spending nothing on it.
        /// Report `closed` when it has closed, as for every accepted connection.
        case drop
    }

    /// The connection's number, for every later input and action.
    public var id: ConnectionID
    public var disposition: Disposition
}

/// What the shell must do, in order. Drained with `RelayEngine.nextAction()`.
public enum RelayAction<Frame: RelayFrameBytes> {
    /// Write this relay message to the connection as a text frame.
    case send(ConnectionID, RelayMessage)
    /// Write this frame, byte for byte, to the connection as a text frame (a SIGNAL).
    case forward(ConnectionID, Frame)
    /// Write this frame, byte for byte, to the connection as a binary frame (a binary SIGNAL, to
    /// a connection that negotiated `securechat.binary`).
    case forwardBinary(ConnectionID, Frame)
    /// Answer a ping with a pong carrying its payload; report `pongWritten` once it is written
    /// (the engine keeps one pong in flight per connection and owes the latest ping's meanwhile).
    case pong(ConnectionID, Frame)
    /// Send a ping (empty payload).
    case ping(ConnectionID)
    /// Start the close handshake: write `ERROR error` if there is one, then a close frame with
    /// `code`, and flush. Keep reading (the engine discards what arrives) so that the client's
    /// answer is seen. `disconnectWhenWritten`: close TCP as soon as the close frame is written
    /// (the client's own close is being answered, so the handshake is complete).
    case close(ConnectionID, CloseCode, error: RelayErrorCode?, disconnectWhenWritten: Bool)
    /// Close the TCP connection now.
    case disconnect(ConnectionID)
    /// Stop reading from the connection (TCP backpressure then reaches the client).
    case pauseReading(ConnectionID)
    /// Read from the connection again.
    case resumeReading(ConnectionID)
    /// The shutdown is over: every connection closed, or the grace period ran out.
    case shutdownComplete
    /// Cluster mode: ask Redis (`ClusterCommand`).
    case cluster(ClusterCommand<Frame>)
}

/// Why the relay refused or ended something; one Prometheus label value each.
public enum RejectionReason: String, CaseIterable, Hashable, Sendable {
    case frameTooLarge = "frame_too_large"
    case malformed = "malformed"
    case invalidRoom = "invalid_room"
    case roomFull = "room_full"
    case alreadyJoined = "already_joined"
    case notJoined = "not_joined"
    case noPeer = "no_peer"
    case rateLimited = "rate_limited"
    case joinRateLimited = "join_rate_limited"
    case connectionsMax = "connections_max"
    case connectionsPerAddressMax = "connections_per_address_max"
    case roomsMax = "rooms_max"
    case handshakeTimeout = "handshake_timeout"
    case idleTimeout = "idle_timeout"
    case notWebSocket = "not_websocket"
    case connectionsPerPrefixMax = "connections_per_prefix_max"
    case roomlessConnectionsMax = "roomless_connections_max"
    case joinTimeout = "join_timeout"
    case tooManyErrors = "too_many_errors"
    case badProxyHeader = "bad_proxy_header"
    case seatReserved = "seat_reserved"
    case clusterUnavailable = "cluster_unavailable"

    /// The reason for an `ERROR` code the room logic or codec produced.
    public init(_ code: RelayErrorCode) {
        switch code {
        case .frameTooLarge: self = .frameTooLarge
        case .invalidRoom: self = .invalidRoom
        case .roomFull: self = .roomFull
        case .alreadyJoined: self = .alreadyJoined
        case .notJoined: self = .notJoined
        case .noPeer: self = .noPeer
        case .rateLimited: self = .rateLimited
        case .joinRateLimited: self = .joinRateLimited
        case .tooManyConnections: self = .connectionsMax
        case .tooManyRooms: self = .roomsMax
        case .idleTimeout: self = .idleTimeout
        case .joinTimeout: self = .joinTimeout
        case .tooManyErrors: self = .tooManyErrors
        case .seatReserved: self = .seatReserved
        case .clusterUnavailable: self = .clusterUnavailable
        case .malformedJSON, .unknownType, .unknownField, .missingField, .invalidField, .invalidKind, .invalidBase64,
            .shuttingDown, .internalError:
            self = .malformed
        }
    }

    /// The position of this reason in `allCases` (the index of its counter).
    var ordinal: Int {
        switch self {
        case .frameTooLarge: 0
        case .malformed: 1
        case .invalidRoom: 2
        case .roomFull: 3
        case .alreadyJoined: 4
        case .notJoined: 5
        case .noPeer: 6
        case .rateLimited: 7
        case .joinRateLimited: 8
        case .connectionsMax: 9
        case .connectionsPerAddressMax: 10
        case .roomsMax: 11
        case .handshakeTimeout: 12
        case .idleTimeout: 13
        case .notWebSocket: 14
        case .connectionsPerPrefixMax: 15
        case .roomlessConnectionsMax: 16
        case .joinTimeout: 17
        case .tooManyErrors: 18
        case .badProxyHeader: 19
        case .seatReserved: 20
        case .clusterUnavailable: 21
        }
    }
}

extension RelayErrorCode {
    /// Whether this answer counts toward the connection's protocol errors: a frame no client
    /// following the protocol sends. `NO_PEER` (a SIGNAL racing the peer's departure), `ROOM_FULL`,
    /// the rate limits and `TOO_MANY_ROOMS` are races or policy a correct client meets, so they
    /// are not counted (each is bounded by the rate limits instead).
    var countsAsProtocolError: Bool {
        switch self {
        case .malformedJSON, .unknownType, .unknownField, .missingField, .invalidField, .invalidKind, .invalidBase64,
            .invalidRoom, .alreadyJoined, .notJoined:
            true
        case .frameTooLarge, .roomFull, .noPeer, .rateLimited, .joinRateLimited, .tooManyConnections, .tooManyRooms,
            .idleTimeout, .joinTimeout, .tooManyErrors, .shuttingDown, .internalError, .seatReserved,
            .clusterUnavailable:
            false
        }
    }
}

/// The engine's counts, plain integers; the NIO shell exports them as Prometheus metrics
/// (`relay_<name>`, docs/RELAY.md). Counts only: no room code, no address, no payload.
public struct RelayCounters: Hashable, Sendable {
    /// TCP connections accepted (`connections_accepted_total`).
    public var connectionsAccepted = 0
    /// TCP connections open in any state (`connections_open`).
    public var connectionsOpen = 0
    /// Connections past the WebSocket upgrade and served (`websockets_open`).
    public var webSocketsOpen = 0
    /// Rooms with at least one peer (`rooms_open`).
    public var roomsOpen = 0
    /// Text frames and binary SIGNALs received (`frames_received_total`).
    public var framesReceived = 0
    /// Payload bytes of text frames received (`bytes_received_total`).
    public var bytesReceived = 0
    /// SIGNAL frames forwarded to a peer (`frames_forwarded_total`).
    public var framesForwarded = 0
    /// Payload bytes of SIGNAL frames forwarded (`bytes_forwarded_total`).
    public var bytesForwarded = 0
    /// WebSocket pings sent (`pings_sent_total`).
    public var pingsSent = 0
    /// Seats reserved for a departed peer right now (`seats_reserved`).
    public var seatsReserved = 0
    /// Seats taken back with their reconnect token (`seats_reclaimed_total`), from a reservation
    /// or from a connection of the same client that had not closed yet.
    public var seatsReclaimed = 0
    /// SIGNALs from another node dropped because their local receiver's outbound queue was over
    /// the high watermark (`cluster_signals_dropped_total`): the remote sender cannot be paused.
    public var clusterSignalsDropped = 0
    /// Binary frames received on connections that negotiated binary SIGNALs, malformed ones
    /// included (`binary_signals_received_total`); also counted in `framesReceived`.
    public var binarySignalsReceived = 0
    /// Binary SIGNALs forwarded in their text form to a peer that did not negotiate binary
    /// (`signals_converted_total`).
    public var signalsConverted = 0
    /// Refusals and forced closes, indexed like `RejectionReason.allCases` (`rejections_total`).
    public private(set) var rejectionCounts = [Int](repeating: 0, count: RejectionReason.allCases.count)

    public init() {}

    /// Refusals and forced closes for one reason.
    public func rejections(_ reason: RejectionReason) -> Int {
        rejectionCounts[reason.ordinal]
    }

    mutating func reject(_ reason: RejectionReason) {
        rejectionCounts[reason.ordinal] &+= 1
    }
}

extension RelayAction: Equatable where Frame: Equatable {}

extension RelayAction: Hashable where Frame: Hashable {}
extension InboundFrame: Equatable where Frame: Equatable {}
extension InboundFrame: Hashable where Frame: Hashable {}
extension RelayAction: Sendable where Frame: Sendable {}
extension InboundFrame: Sendable where Frame: Sendable {}
