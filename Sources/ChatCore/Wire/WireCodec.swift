/// Limits the codec enforces before and during parsing.
public struct WireLimits: Hashable, Sendable {
    /// The largest frame accepted, checked before a single byte is parsed.
    public var frameSizeMaxBytes: Int
    /// The longest `message` text accepted in an `ERROR`.
    public var errorMessageMaxBytes: Int

    public init(frameSizeMaxBytes: Int = 128 * 1024, errorMessageMaxBytes: Int = 256) {
        precondition(frameSizeMaxBytes >= 64, "a frame cap below 64 bytes cannot carry a JOIN")
        self.frameSizeMaxBytes = frameSizeMaxBytes
        self.errorMessageMaxBytes = errorMessageMaxBytes
    }

    public static let `default` = WireLimits()
}

/// What the relay needs to know about a client frame: which room to join, or that it is a
/// well-formed SIGNAL to forward as it is. The SIGNAL's payload is validated but never decoded.
public enum ClientFrame: Hashable, Sendable {
    /// A JOIN, with the reconnect token of the seat it asks back, if any.
    case join(RoomCode, token: ReconnectToken?)
    case signal
}

/// Encoder and strict decoders for the relay protocol (docs/PROTOCOL.md).
public enum WireCodec {
    // MARK: Client → relay

    /// The relay's view of a client frame: full validation, no payload decoding, no copies.
    public static func inspectClientFrame(
        _ bytes: UnsafeRawBufferPointer, limits: WireLimits = .default
    ) throws(WireError) -> ClientFrame {
        let object = try scan(bytes, limits: limits)
        switch try messageType(object, in: bytes) {
        case "JOIN":
            try object.rejectUnknownFields(allowed: ["type", "room", "token"])
            return .join(try roomCode(object, in: bytes), token: try token(object, in: bytes))
        case "SIGNAL":
            try object.rejectUnknownFields(allowed: ["type", "kind", "payload", "key"])
            _ = try kindToken(object, in: bytes)
            try withBase64Text(object, "payload", in: bytes) { _ in }
            try withBase64Text(object, "key", in: bytes) { _ in }
            return .signal
        case let other:
            throw .unknownType(other)
        }
    }

    /// Decode a client frame completely (payloads decoded). Used by tests, fuzzers and tools. A
    /// JOIN's reconnect token is checked and left out (see `ClientMessage`).
    public static func decodeClientMessage(
        _ bytes: UnsafeRawBufferPointer, limits: WireLimits = .default
    ) throws(WireError) -> ClientMessage {
        let object = try scan(bytes, limits: limits)
        switch try messageType(object, in: bytes) {
        case "JOIN":
            try object.rejectUnknownFields(allowed: ["type", "room", "token"])
            let room = try roomCode(object, in: bytes)
            _ = try token(object, in: bytes)
            return .join(room)
        case "SIGNAL":
            return .signal(try signal(object, in: bytes, knownKindsOnly: false))
        case let other:
            throw .unknownType(other)
        }
    }

    public static func decodeClientMessage(_ bytes: [UInt8], limits: WireLimits = .default) throws(WireError)
        -> ClientMessage
    {
        try withBytes(bytes) { buffer throws(WireError) in try decodeClientMessage(buffer, limits: limits) }
    }

    public static func encode(_ message: ClientMessage) -> [UInt8] {
        switch message {
        case let .join(room):
            return encodeJoin(room, token: nil)
        case let .signal(signal):
            var output: [UInt8] = []
            appendSignal(signal, to: &output)
            return output
        }
    }

    /// A JOIN of `room`, presenting the reconnect token of the seat held there before, if any:
    /// `{"type":"JOIN","room":"ROOM1","token":"<32 hex>"}`.
    public static func encodeJoin(_ room: RoomCode, token: ReconnectToken?) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(80 + room.value.utf8.count)
        output.append(contentsOf: #"{"type":"JOIN","room":"#.utf8)
        JSONString.appendQuoted(room.value, to: &output)
        appendToken(token, to: &output)
        output.append(UInt8(ascii: "}"))
        return output
    }

    // MARK: Relay → client

    /// Decode a relay frame strictly, as a client does: unknown kinds are errors.
    public static func decodeRelayMessage(
        _ bytes: UnsafeRawBufferPointer, limits: WireLimits = .default
    ) throws(WireError) -> RelayMessage {
        let object = try scan(bytes, limits: limits)
        switch try messageType(object, in: bytes) {
        case "JOINED":
            try object.rejectUnknownFields(allowed: ["type", "room", "peers", "token"])
            let room = try roomCode(object, in: bytes)
            guard let peersValue = object.value("peers") else { throw .missingField("peers") }
            guard case let .integer(peers) = peersValue, (1...2).contains(peers) else {
                throw .wrongFieldType("peers", expected: .smallInteger)
            }
            guard let token = try token(object, in: bytes) else { return .joined(room: room, peers: Int(peers)) }
            return .joinedWithToken(room: room, peers: Int(peers), token: token)
        case "PEER_FOUND":
            try object.rejectUnknownFields(allowed: ["type"])
            return .peerFound
        case "PEER_LEFT":
            try object.rejectUnknownFields(allowed: ["type"])
            return .peerLeft
        case "SIGNAL":
            return .signal(try signal(object, in: bytes, knownKindsOnly: true))
        case "ERROR":
            try object.rejectUnknownFields(allowed: ["type", "code", "message"])
            let codeText = try requiredString(object, "code", in: bytes, maxBytes: 64)
            guard let code = RelayErrorCode(rawValue: codeText) else { throw .unknownErrorCode(codeText) }
            var message = code.defaultMessage
            if object.value("message") != nil {
                message = try requiredString(object, "message", in: bytes, maxBytes: limits.errorMessageMaxBytes)
            }
            return .error(code: code, message: message)
        case let other:
            throw .unknownType(other)
        }
    }

    public static func decodeRelayMessage(_ bytes: [UInt8], limits: WireLimits = .default) throws(WireError)
        -> RelayMessage
    {
        try withBytes(bytes) { buffer throws(WireError) in try decodeRelayMessage(buffer, limits: limits) }
    }

    public static func encode(_ message: RelayMessage) -> [UInt8] {
        var output: [UInt8] = []
        switch message {
        case let .joined(room, peers):
            appendJoined(room, peers: peers, token: nil, to: &output)
        case let .joinedWithToken(room, peers, token):
            appendJoined(room, peers: peers, token: token, to: &output)
        case .peerFound:
            output.append(contentsOf: #"{"type":"PEER_FOUND"}"#.utf8)
        case .peerLeft:
            output.append(contentsOf: #"{"type":"PEER_LEFT"}"#.utf8)
        case let .signal(signal):
            appendSignal(signal, to: &output)
        case let .error(code, message):
            output.append(contentsOf: #"{"type":"ERROR","code":"#.utf8)
            JSONString.appendQuoted(code.rawValue, to: &output)
            output.append(contentsOf: #","message":"#.utf8)
            JSONString.appendQuoted(message, to: &output)
            output.append(UInt8(ascii: "}"))
        }
        return output
    }

    /// The canonical `ERROR` frame for a code (with its default message).
    public static func encodeError(_ code: RelayErrorCode) -> [UInt8] {
        encode(.error(code: code, message: code.defaultMessage))
    }

    // MARK: Shared pieces

    private static func withBytes<R>(
        _ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(WireError) -> R
    ) throws(WireError) -> R {
        // Array.withUnsafeBytes is rethrows, which erases the typed error; carry it out by hand.
        let result: Result<R, WireError> = bytes.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try body(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private static func scan(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError)
        -> FlatJSONObject
    {
        // The cap comes first: nothing of an oversized frame is looked at.
        guard bytes.count <= limits.frameSizeMaxBytes else {
            throw .frameTooLarge(size: bytes.count, max: limits.frameSizeMaxBytes)
        }
        return try FlatJSONObject(scanning: bytes)
    }

    private static func appendJoined(_ room: RoomCode, peers: Int, token: ReconnectToken?, to output: inout [UInt8]) {
        precondition((1...2).contains(peers))
        output.append(contentsOf: #"{"type":"JOINED","room":"#.utf8)
        JSONString.appendQuoted(room.value, to: &output)
        output.append(contentsOf: #","peers":"#.utf8)
        output.append(contentsOf: String(peers).utf8)
        appendToken(token, to: &output)
        output.append(UInt8(ascii: "}"))
    }

    /// `,"token":"<32 hex>"`, or nothing.
    private static func appendToken(_ token: ReconnectToken?, to output: inout [UInt8]) {
        guard let token else { return }
        output.append(contentsOf: #","token":""#.utf8)
        token.appendHex(to: &output)
        output.append(UInt8(ascii: "\""))
    }

    /// The optional `token` field: 32 lowercase hexadecimal digits.
    private static func token(_ object: FlatJSONObject, in bytes: UnsafeRawBufferPointer) throws(WireError)
        -> ReconnectToken?
    {
        try withStringBytes(object, "token", in: bytes, required: false) { text throws(WireError) in
            guard let token = ReconnectToken(hex: text) else { throw .invalidToken }
            return token
        }
    }

    private static func appendSignal(_ signal: Signal, to output: inout [UInt8]) {
        output.reserveCapacity(
            64 + Base64.encodedCount(signal.payload?.count ?? 0) + Base64.encodedCount(signal.key?.count ?? 0))
        output.append(contentsOf: #"{"type":"SIGNAL","kind":"#.utf8)
        JSONString.appendQuoted(signal.kind.rawValue, to: &output)
        if let payload = signal.payload {
            output.append(contentsOf: #","payload":""#.utf8)
            payload.withUnsafeBytes { Base64.append($0, to: &output) }
            output.append(UInt8(ascii: "\""))
        }
        if let key = signal.key {
            output.append(contentsOf: #","key":""#.utf8)
            key.withUnsafeBytes { Base64.append($0, to: &output) }
            output.append(UInt8(ascii: "\""))
        }
        output.append(UInt8(ascii: "}"))
    }

    private static func signal(_ object: FlatJSONObject, in bytes: UnsafeRawBufferPointer, knownKindsOnly: Bool)
        throws(WireError) -> Signal
    {
        try object.rejectUnknownFields(allowed: ["type", "kind", "payload", "key"])
        let token = try kindToken(object, in: bytes)
        guard let kind = SignalKind(token) else { throw .invalidKind }
        if knownKindsOnly && !SignalKind.known.contains(kind) { throw .unknownKind(token) }
        let payload = try decodedBase64(object, "payload", in: bytes)
        let key = try decodedBase64(object, "key", in: bytes)
        return Signal(kind: kind, payload: payload, key: key)
    }

    private static func messageType(_ object: FlatJSONObject, in bytes: UnsafeRawBufferPointer) throws(WireError)
        -> String
    {
        try requiredString(object, "type", in: bytes, maxBytes: 32)
    }

    private static func roomCode(_ object: FlatJSONObject, in bytes: UnsafeRawBufferPointer) throws(WireError)
        -> RoomCode
    {
        try withStringBytes(object, "room", in: bytes, required: true) { text throws(WireError) in
            do throws(RoomCode.Invalid) {
                return try RoomCode(validating: text)
            } catch {
                throw .invalidRoomCode(error)
            }
        }!
    }

    private static func kindToken(_ object: FlatJSONObject, in bytes: UnsafeRawBufferPointer) throws(WireError)
        -> String
    {
        try withStringBytes(object, "kind", in: bytes, required: true) { text throws(WireError) in
            guard SignalKind.isWellFormed(text) else { throw .invalidKind }
            return String(decoding: text, as: UTF8.self)
        }!
    }

    private static func requiredString(
        _ object: FlatJSONObject, _ name: StaticString, in bytes: UnsafeRawBufferPointer, maxBytes: Int
    ) throws(WireError) -> String {
        try withStringBytes(object, name, in: bytes, required: true) { text throws(WireError) in
            guard text.count <= maxBytes else { throw .fieldTooLong("\(name)", max: maxBytes) }
            guard let string = UTF8Text.string(validating: text) else { throw .invalidUTF8(field: "\(name)") }
            return string
        }!
    }

    /// Lend a base64 field's text (unescaped if needed) to `body` after checking it is canonical.
    @discardableResult
    private static func withBase64Text<R>(
        _ object: FlatJSONObject, _ name: StaticString, in bytes: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) -> R?
    ) throws(WireError) -> R? {
        try withStringBytes(object, name, in: bytes, required: false) { text throws(WireError) in
            guard Base64.isCanonical(text), let result = body(text) else { throw .invalidBase64(field: "\(name)") }
            return result
        }
    }

    /// A base64 field decoded, checked as it is decoded (one pass over a file chunk's text, not a
    /// check and then a decoding: `Base64.decode` accepts exactly what `isCanonical` accepts).
    private static func decodedBase64(
        _ object: FlatJSONObject, _ name: StaticString, in bytes: UnsafeRawBufferPointer
    ) throws(WireError) -> [UInt8]? {
        try withStringBytes(object, name, in: bytes, required: false) { text throws(WireError) in
            guard let decoded = Base64.decode(text) else { throw .invalidBase64(field: "\(name)") }
            return decoded
        }
    }

    /// Lend the bytes of a string field to `body`: a slice of the input when the string has no
    /// escapes (the common case, no allocation), else its unescaped copy.
    private static func withStringBytes<R>(
        _ object: FlatJSONObject, _ name: StaticString, in bytes: UnsafeRawBufferPointer, required: Bool,
        _ body: (UnsafeRawBufferPointer) throws(WireError) -> R
    ) throws(WireError) -> R? {
        guard let value = object.value(name) else {
            if required { throw .missingField("\(name)") }
            return nil
        }
        guard case let .string(range, hasEscapes) = value else {
            throw .wrongFieldType("\(name)", expected: .string)
        }
        if !hasEscapes {
            return try body(UnsafeRawBufferPointer(rebasing: bytes[range]))
        }
        let unescaped = try JSONString.unescape(bytes, range)
        let result: Result<R, WireError> = unescaped.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try body(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
