/// Why a frame could not be decoded. Every decoding failure is one of these; no input crashes.
public enum WireError: Error, Hashable, Sendable {
    /// What went wrong inside the JSON text itself.
    public enum JSONFailure: String, Hashable, Sendable {
        case unexpectedEnd = "unexpected end of input"
        case expectedKey = "expected a string key"
        case expectedColon = "expected ':'"
        case expectedValue = "expected a value"
        case expectedCommaOrEnd = "expected ',' or '}'"
        case badEscape = "invalid escape sequence"
        case controlCharacterInString = "control character inside a string"
        case badNumber = "invalid number"
        case trailingData = "data after the object"
    }

    /// The JSON type a field should have had.
    public enum ExpectedType: String, Hashable, Sendable {
        case string
        case smallInteger = "small non-negative integer"
        case stringOrInteger = "string or integer"
    }

    /// The frame is larger than the cap; checked before any parsing.
    case frameTooLarge(size: Int, max: Int)
    /// The frame is not valid UTF-8 JSON text.
    case malformedJSON(offset: Int, reason: JSONFailure)
    /// Valid JSON, but not an object.
    case notAnObject
    /// More fields than any protocol message has.
    case tooManyFields(max: Int)
    /// The same key appears twice.
    case duplicateField(String)
    /// A key that this message type does not have.
    case unknownField(String)
    /// A required key is absent.
    case missingField(String)
    /// A key has a value of the wrong JSON type.
    case wrongFieldType(String, expected: ExpectedType)
    /// The `type` field names no protocol message (or one this side does not accept).
    case unknownType(String)
    /// The SIGNAL `kind` is not a well-formed token (`^[A-Z][A-Z0-9_]{0,31}$`).
    case invalidKind
    /// The SIGNAL `kind` is well formed but not one this client understands.
    case unknownKind(String)
    /// A base64 field is not canonical standard base64 with padding.
    case invalidBase64(field: String)
    /// A decoded field is longer than allowed.
    case fieldTooLong(String, max: Int)
    /// The room code is empty, too long, or has characters outside `A-Z0-9`.
    case invalidRoomCode(RoomCode.Invalid)
    /// A string field that must be text is not valid UTF-8.
    case invalidUTF8(field: String)
    /// An `ERROR` carries a code this side does not know.
    case unknownErrorCode(String)
    /// A `token` field is not 32 lowercase hexadecimal digits.
    case invalidToken
    /// A binary SIGNAL that is empty or ends inside its kind (docs/PROTOCOL.md, "Binary SIGNALs").
    case malformedBinarySignal

    /// The stable, machine-readable code the relay sends back for this failure.
    public var relayErrorCode: RelayErrorCode {
        switch self {
        case .frameTooLarge: .frameTooLarge
        case .malformedJSON, .notAnObject, .invalidUTF8, .malformedBinarySignal: .malformedJSON
        case .tooManyFields, .duplicateField, .unknownField: .unknownField
        case .missingField: .missingField
        case .wrongFieldType, .fieldTooLong: .invalidField
        case .unknownType: .unknownType
        case .invalidKind, .unknownKind: .invalidKind
        case .invalidBase64: .invalidBase64
        case .invalidRoomCode: .invalidRoom
        case .unknownErrorCode, .invalidToken: .invalidField
        }
    }
}

extension WireError: CustomStringConvertible {
    /// At most `maxBytes` UTF-8 bytes of `text`, cut at a scalar boundary.
    ///
    /// Descriptions echo pieces of untrusted input, and the relay sends a description back in an
    /// ERROR whose `message` a client accepts only up to 256 bytes. `prefix(32)` counted
    /// Characters, and one Character can hold any number of combining scalars, so a key of one
    /// letter and 300 accents made an ERROR no client could read (found by the FuzzRelayFrame
    /// harness; regression FuzzTesting/Regressions/FuzzRelayFrame/).
    static func excerpt(_ text: String, maxBytes: Int = 32) -> String {
        var byteCount = 0
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let width = UTF8.width(scalar)
            guard byteCount + width <= maxBytes else { break }
            byteCount += width
            scalars.append(scalar)
        }
        return String(scalars)
    }

    public var description: String {
        switch self {
        case let .frameTooLarge(size, max): "frame of \(size) bytes exceeds the \(max)-byte cap"
        case let .malformedJSON(offset, reason): "malformed JSON at byte \(offset): \(reason.rawValue)"
        case .notAnObject: "message is not a JSON object"
        case let .tooManyFields(max): "more than \(max) fields"
        case let .duplicateField(name): "duplicate field \"\(Self.excerpt(name))\""
        case let .unknownField(name): "unknown field \"\(Self.excerpt(name))\""
        case let .missingField(name): "missing field \"\(name)\""
        case let .wrongFieldType(name, expected): "field \"\(Self.excerpt(name))\" must be a \(expected.rawValue)"
        case let .unknownType(type): "unknown message type \"\(Self.excerpt(type))\""
        case .invalidKind: "SIGNAL kind must match ^[A-Z][A-Z0-9_]{0,31}$"
        case let .unknownKind(kind): "unknown SIGNAL kind \"\(kind)\""
        case let .invalidBase64(field): "field \"\(field)\" is not valid base64"
        case let .fieldTooLong(name, max): "field \"\(name)\" longer than \(max) bytes"
        case let .invalidRoomCode(reason): "invalid room code: \(reason.rawValue)"
        case let .invalidUTF8(field): "field \"\(field)\" is not valid UTF-8"
        case let .unknownErrorCode(code): "unknown error code \"\(Self.excerpt(code))\""
        case .invalidToken: "field \"token\" must be 32 lowercase hexadecimal digits"
        case .malformedBinarySignal: "binary SIGNAL is empty or ends inside its kind"
        }
    }
}
