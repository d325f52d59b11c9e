/// The name of a SIGNAL's content, a token matching `^[A-Z][A-Z0-9_]{0,31}$`.
///
/// The relay forwards every well-formed kind without looking inside; a client accepts only the
/// kinds it knows (`known`).
public struct SignalKind: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let lengthMax = 32

    /// The original design's key exchange: `key` carries the sender's X25519 public key.
    public static let keyExchange = SignalKind(unchecked: "KEY_EXCHANGE")
    /// Key confirmation: proof that the sender derived the same session keys.
    public static let keyConfirm = SignalKind(unchecked: "KEY_CONFIRM")
    /// An encrypted chat record.
    public static let message = SignalKind(unchecked: "MSG")
    /// An authenticated cumulative acknowledgement.
    public static let ack = SignalKind(unchecked: "ACK")
    /// A CPace share (password-authenticated key exchange).
    public static let pake = SignalKind(unchecked: "PAKE")
    /// A sealed goodbye: the sender leaves, or answers one that does (protocol v3).
    public static let goodbye = SignalKind(unchecked: "BYE")
    /// A chunk of a file, sealed under the file's own key (docs/PROTOCOL.md, "File transfer").
    public static let fileChunk = SignalKind(unchecked: "FCHUNK")
    /// The receiver's acknowledgement of a file's chunks, sealed under the file's key.
    public static let fileAck = SignalKind(unchecked: "FACK")

    /// Every kind this client understands.
    public static let known: [SignalKind] = [
        .keyExchange, .keyConfirm, .message, .ack, .pake, .goodbye, .fileChunk, .fileAck,
    ]

    public let rawValue: String

    private init(unchecked rawValue: String) {
        self.rawValue = rawValue
    }

    /// Validate a kind token.
    public init?(_ rawValue: String) {
        var bytes = Array(rawValue.utf8)
        let valid = bytes.withUnsafeMutableBytes { SignalKind.isWellFormed(UnsafeRawBufferPointer($0)) }
        guard valid else { return nil }
        self.rawValue = rawValue
    }

    /// `^[A-Z][A-Z0-9_]{0,31}$`, checked without allocating.
    public static func isWellFormed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let first = bytes.first, bytes.count <= lengthMax,
              first >= UInt8(ascii: "A"), first <= UInt8(ascii: "Z") else { return false }
        for byte in bytes.dropFirst() {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                continue
            default:
                return false
            }
        }
        return true
    }

    public static func < (lhs: SignalKind, rhs: SignalKind) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { rawValue }
}

/// A SIGNAL: opaque content that the relay forwards to the other peer.
public struct Signal: Hashable, Sendable {
    public var kind: SignalKind
    /// The decoded `payload` (absent in the original design's KEY_EXCHANGE).
    public var payload: [UInt8]?
    /// The decoded `key` (the original design's public-key field).
    public var key: [UInt8]?

    public init(kind: SignalKind, payload: [UInt8]? = nil, key: [UInt8]? = nil) {
        self.kind = kind
        self.payload = payload
        self.key = key
    }
}

/// A message from a client to the relay.
///
/// A JOIN's reconnect token is not here: `WireCodec.encodeJoin(_:token:)` writes a JOIN with one,
/// the relay's `WireCodec.inspectClientFrame` returns it (`ClientFrame.join(_:token:)`), and
/// `decodeClientMessage` checks it and leaves it out, so that code written before the token reads
/// every JOIN as it did (the tools and the testing worlds decode what clients send).
public enum ClientMessage: Hashable, Sendable {
    /// `{"type":"JOIN","room":"ROOM1"}` (and `"token":"<32 hex>"` after a reconnect).
    case join(RoomCode)
    /// `{"type":"SIGNAL","kind":"MSG","payload":"<base64>","key":"<base64, optional>"}`
    case signal(Signal)
}

/// A message from the relay to a client.
public enum RelayMessage: Hashable, Sendable {
    /// The JOIN was accepted; `peers` counts the connections now in the room (1 or 2). From a
    /// relay that reserves seats this comes as `joinedWithToken`.
    case joined(room: RoomCode, peers: Int)
    /// JOINED with the reconnect token of the seat the JOIN took (`"token":"<32 hex>"`): the
    /// client presents it in its JOIN after a reconnect to take the seat back during the grace
    /// period. A separate case, not a third value of `joined`, so that code matching
    /// `.joined(room, peers)` keeps compiling; `joinedRoom` reads either.
    case joinedWithToken(room: RoomCode, peers: Int, token: ReconnectToken)
    /// A second peer is in the room (sent to both).
    case peerFound
    /// The other peer's connection ended.
    case peerLeft
    /// A SIGNAL forwarded from the other peer, byte for byte.
    case signal(Signal)
    /// A refusal, with a stable machine-readable code and a human-readable message.
    case error(code: RelayErrorCode, message: String)
}

extension RelayMessage {
    /// The room and peer count of a JOINED, with or without a token; nil for any other message.
    public var joinedRoom: (room: RoomCode, peers: Int)? {
        switch self {
        case let .joined(room, peers), let .joinedWithToken(room, peers, _): (room, peers)
        case .peerFound, .peerLeft, .signal, .error: nil
        }
    }
}

/// The stable error codes of the relay protocol. The raw values never change meaning.
public enum RelayErrorCode: String, CaseIterable, Hashable, Sendable {
    case malformedJSON = "MALFORMED_JSON"
    case frameTooLarge = "FRAME_TOO_LARGE"
    case unknownType = "UNKNOWN_TYPE"
    case unknownField = "UNKNOWN_FIELD"
    case missingField = "MISSING_FIELD"
    case invalidField = "INVALID_FIELD"
    case invalidKind = "INVALID_KIND"
    case invalidBase64 = "INVALID_BASE64"
    case invalidRoom = "INVALID_ROOM"
    case roomFull = "ROOM_FULL"
    case alreadyJoined = "ALREADY_JOINED"
    case notJoined = "NOT_JOINED"
    case noPeer = "NO_PEER"
    case rateLimited = "RATE_LIMITED"
    case joinRateLimited = "JOIN_RATE_LIMITED"
    case tooManyConnections = "TOO_MANY_CONNECTIONS"
    case tooManyRooms = "TOO_MANY_ROOMS"
    case idleTimeout = "IDLE_TIMEOUT"
    case joinTimeout = "JOIN_TIMEOUT"
    case tooManyErrors = "TOO_MANY_ERRORS"
    /// The room's second seat is reserved for a peer that is reconnecting (with its token).
    case seatReserved = "SEAT_RESERVED"
    case shuttingDown = "SHUTTING_DOWN"
    case internalError = "INTERNAL_ERROR"
    /// A cluster relay node cannot reach the cluster's Redis: it takes no new JOIN (retryable).
    case clusterUnavailable = "CLUSTER_UNAVAILABLE"

    /// The default human-readable text for the code.
    public var defaultMessage: String {
        switch self {
        case .malformedJSON: "frame is not a well-formed JSON object"
        case .frameTooLarge: "frame exceeds the size cap"
        case .unknownType: "unknown message type"
        case .unknownField: "unknown or duplicate field"
        case .missingField: "a required field is missing"
        case .invalidField: "a field has an invalid value"
        case .invalidKind: "SIGNAL kind is not a valid token"
        case .invalidBase64: "a field is not valid base64"
        case .invalidRoom: "room codes are 1-64 characters of A-Z and 0-9"
        case .roomFull: "room full: it already has two peers"
        case .alreadyJoined: "this connection has already joined a room"
        case .notJoined: "JOIN a room before sending a SIGNAL"
        case .noPeer: "no peer in the room yet; the SIGNAL was not delivered"
        case .rateLimited: "too many messages or bytes; slow down"
        case .joinRateLimited: "too many joins from this address; try again later"
        case .tooManyConnections: "too many connections"
        case .tooManyRooms: "the relay is at its room limit"
        case .idleTimeout: "connection idle for too long"
        case .joinTimeout: "no room joined in time"
        case .tooManyErrors: "too many protocol errors"
        case .seatReserved: "a seat is held for a peer that is reconnecting"
        case .shuttingDown: "the relay is shutting down"
        case .internalError: "internal relay error"
        case .clusterUnavailable: "the relay cannot reach its cluster right now; try again"
        }
    }
}
