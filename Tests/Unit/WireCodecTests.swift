import ChatCore
import Testing

@Suite("Wire codec: round trips and a table of malformed input")
struct WireCodecTests {
    static let room = try! RoomCode("ROOM1")

    static let clientMessages: [ClientMessage] = [
        .join(room),
        .join(try! RoomCode(String(repeating: "Z9", count: 32))),
        .signal(Signal(kind: .keyExchange, payload: [1, 2, 3], key: Array(repeating: 0xAB, count: 32))),
        .signal(Signal(kind: .keyExchange, key: Array(repeating: 1, count: 32))),
        .signal(Signal(kind: .message, payload: Array(0...255))),
        .signal(Signal(kind: .message, payload: [])),
        .signal(Signal(kind: .ack, payload: [0, 0, 0, 0, 0, 0, 0, 1])),
        .signal(Signal(kind: .keyConfirm, payload: [9])),
        .signal(Signal(kind: SignalKind("FILE_CHUNK_2")!, payload: [7, 7])),
    ]

    static let relayMessages: [RelayMessage] = [
        .joined(room: room, peers: 1),
        .joined(room: room, peers: 2),
        .joinedWithToken(room: room, peers: 1, token: ReconnectToken(high: 0x0123_4567_89AB_CDEF, low: 0)),
        .joinedWithToken(room: room, peers: 2, token: ReconnectToken(high: .max, low: 0xFEDC_BA98_7654_3210)),
        .peerFound,
        .peerLeft,
        .signal(Signal(kind: .message, payload: [0xFF, 0x00], key: nil)),
        .signal(Signal(kind: .keyExchange, payload: [1], key: Array(repeating: 2, count: 32))),
    ] + RelayErrorCode.allCases.map { .error(code: $0, message: $0.defaultMessage) }

    @Test("Every client message type round-trips", arguments: clientMessages)
    func clientRoundTrip(message: ClientMessage) throws {
        let encoded = WireCodec.encode(message)
        #expect(try WireCodec.decodeClientMessage(encoded) == message)
        // The relay's blind inspection agrees on what the frame is.
        let inspected = try encoded.withUnsafeBytes { try WireCodec.inspectClientFrame($0) }
        switch message {
        case let .join(room): #expect(inspected == .join(room, token: nil))
        case .signal: #expect(inspected == .signal)
        }
    }

    @Test("Every relay message type round-trips", arguments: relayMessages)
    func relayRoundTrip(message: RelayMessage) throws {
        #expect(try WireCodec.decodeRelayMessage(WireCodec.encode(message)) == message)
    }

    @Test("The original design's messages decode as written (spaces, field order, no payload)")
    func originalDesignFrames() throws {
        #expect(try WireCodec.decodeClientMessage(#"{"type": "JOIN", "room": "ROOM1"}"#.bytes) == .join(Self.room))
        let keyExchange = #"{ "key": "AAEC", "kind": "KEY_EXCHANGE", "type": "SIGNAL" }"#.bytes
        #expect(try WireCodec.decodeClientMessage(keyExchange)
            == .signal(Signal(kind: .keyExchange, payload: nil, key: [0, 1, 2])))
        // Escaped solidus in base64 (some JSON encoders write "\/").
        let escaped = #"{"type":"SIGNAL","kind":"MSG","payload":"\/w=="}"#.bytes
        #expect(try WireCodec.decodeClientMessage(escaped) == .signal(Signal(kind: .message, payload: [0xFF])))
        #expect(try WireCodec.decodeRelayMessage(#"{"type":"PEER_FOUND"}"#.bytes) == .peerFound)
    }

    static let malformed: [(String, WireError)] = [
        ("", .malformedJSON(offset: 0, reason: .unexpectedEnd)),
        ("   ", .malformedJSON(offset: 3, reason: .unexpectedEnd)),
        ("[]", .notAnObject),
        ("\"JOIN\"", .notAnObject),
        ("{", .malformedJSON(offset: 1, reason: .unexpectedEnd)),
        (#"{"type":"JOIN","room":"R1"} x"#, .malformedJSON(offset: 28, reason: .trailingData)),
        (#"{"type":"JOIN","room":"R1"}{}"#, .malformedJSON(offset: 27, reason: .trailingData)),
        (#"{"type":"JOIN" "room":"R1"}"#, .malformedJSON(offset: 15, reason: .expectedCommaOrEnd)),
        (#"{"type" "JOIN"}"#, .malformedJSON(offset: 8, reason: .expectedColon)),
        (#"{type:"JOIN"}"#, .malformedJSON(offset: 1, reason: .expectedKey)),
        (#"{"type":"JOIN",}"#, .malformedJSON(offset: 15, reason: .expectedKey)),
        (#"{"type":JOIN}"#, .malformedJSON(offset: 8, reason: .expectedValue)),
        (#"{"type":"JO\qIN"}"#, .malformedJSON(offset: 12, reason: .badEscape)),
        (#"{"type":"JO\u12G4"}"#, .malformedJSON(offset: 15, reason: .badEscape)),
        ("{\"type\":\"JO\u{01}IN\"}", .malformedJSON(offset: 11, reason: .controlCharacterInString)),
        (#"{"type":"JOIN","room":"R1","room":"R2"}"#, .duplicateField("room")),
        (#"{"type":"JOIN","ty\u0070e":"JOIN","room":"R1"}"#, .duplicateField("type")),
        (#"{"room":"R1"}"#, .missingField("type")),
        (#"{"type":"JOIN"}"#, .missingField("room")),
        (#"{"type":7,"room":"R1"}"#, .wrongFieldType("type", expected: .string)),
        (#"{"type":"JOIN","room":["R1"]}"#, .wrongFieldType("room", expected: .stringOrInteger)),
        (#"{"type":"JOIN","room":{"a":1}}"#, .wrongFieldType("room", expected: .stringOrInteger)),
        (#"{"type":"JOIN","room":null}"#, .wrongFieldType("room", expected: .stringOrInteger)),
        (#"{"type":"JOIN","room":-1}"#, .wrongFieldType("room", expected: .stringOrInteger)),
        (#"{"type":"JOIN","room":1.5}"#, .wrongFieldType("room", expected: .smallInteger)),
        (#"{"type":"JOIN","room":"R1","extra":"x"}"#, .unknownField("extra")),
        (#"{"type":"LEAVE"}"#, .unknownType("LEAVE")),
        (#"{"type":"PEER_FOUND"}"#, .unknownType("PEER_FOUND")),
        (#"{"type":"JOIN","room":""}"#, .invalidRoomCode(.empty)),
        (#"{"type":"JOIN","room":"room1"}"#, .invalidRoomCode(.badCharacter)),
        (#"{"type":"JOIN","room":"R-1"}"#, .invalidRoomCode(.badCharacter)),
        (#"{"type":"JOIN","room":"R\u0000"}"#, .invalidRoomCode(.badCharacter)),
        ("{\"type\":\"JOIN\",\"room\":\"" + String(repeating: "A", count: 65) + "\"}", .invalidRoomCode(.tooLong)),
        (#"{"type":"SIGNAL","payload":"AA=="}"#, .missingField("kind")),
        (#"{"type":"SIGNAL","kind":"msg","payload":"AA=="}"#, .invalidKind),
        (#"{"type":"SIGNAL","kind":"","payload":"AA=="}"#, .invalidKind),
        (#"{"type":"SIGNAL","kind":"MSG","payload":"AA="}"#, .invalidBase64(field: "payload")),
        (#"{"type":"SIGNAL","kind":"MSG","payload":"A@=="}"#, .invalidBase64(field: "payload")),
        (#"{"type":"SIGNAL","kind":"MSG","payload":"AB=="}"#, .invalidBase64(field: "payload")),
        (#"{"type":"SIGNAL","kind":"MSG","payload":"A==="}"#, .invalidBase64(field: "payload")),
        (#"{"type":"SIGNAL","kind":"MSG","payload":"AA==AA=="}"#, .invalidBase64(field: "payload")),
        (#"{"type":"SIGNAL","kind":"MSG","key":"*"}"#, .invalidBase64(field: "key")),
        (#"{"type":"SIGNAL","kind":"MSG","payload":1}"#, .wrongFieldType("payload", expected: .string)),
        ("{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1}", .tooManyFields(max: 8)),
        (#"{"type":"JOIN","room":"R1","token":"0123456789ABCDEF0123456789abcdef"}"#, .invalidToken),
        (#"{"type":"JOIN","room":"R1","token":"0123456789abcdef0123456789abcde"}"#, .invalidToken),
        (#"{"type":"JOIN","room":"R1","token":"0123456789abcdef0123456789abcdef0"}"#, .invalidToken),
        (#"{"type":"JOIN","room":"R1","token":"0123456789abcdef0123456789abcdeg"}"#, .invalidToken),
        (#"{"type":"JOIN","room":"R1","token":""}"#, .invalidToken),
        (#"{"type":"JOIN","room":"R1","token":17}"#, .wrongFieldType("token", expected: .string)),
        (#"{"type":"SIGNAL","kind":"MSG","token":"0123456789abcdef0123456789abcdef"}"#, .unknownField("token")),
    ]

    @Test("Each malformed client frame gives its typed error", arguments: malformed)
    func malformedClientFrames(input: String, expected: WireError) {
        #expect(throws: expected) { try WireCodec.decodeClientMessage(input.bytes) }
        // The relay's inspection path refuses it with the same error.
        #expect(throws: expected) { try input.bytes.withUnsafeBytes { try WireCodec.inspectClientFrame($0) } }
    }

    @Test("The size cap is checked before parsing")
    func sizeCap() {
        let limits = WireLimits(frameSizeMaxBytes: 100)
        let big = [UInt8](repeating: UInt8(ascii: "{"), count: 101)
        #expect(throws: WireError.frameTooLarge(size: 101, max: 100)) {
            try WireCodec.decodeClientMessage(big, limits: limits)
        }
        #expect(throws: WireError.frameTooLarge(size: 101, max: 100)) {
            try WireCodec.decodeRelayMessage(big, limits: limits)
        }
    }

    static let malformedRelay: [(String, WireError)] = [
        (#"{"type":"SIGNAL","kind":"FILE_CHUNK","payload":"AA=="}"#, .unknownKind("FILE_CHUNK")),
        (#"{"type":"JOINED","room":"R1"}"#, .missingField("peers")),
        (#"{"type":"JOINED","room":"R1","peers":3}"#, .wrongFieldType("peers", expected: .smallInteger)),
        (#"{"type":"JOINED","room":"R1","peers":01}"#, .malformedJSON(offset: 37, reason: .badNumber)),
        (#"{"type":"JOINED","room":"R1","peers":1234567890123456}"#,
         .wrongFieldType("peers", expected: .smallInteger)),
        (#"{"type":"ERROR","code":"NOPE"}"#, .unknownErrorCode("NOPE")),
        (#"{"type":"ERROR"}"#, .missingField("code")),
        (#"{"type":"PEER_LEFT","room":"R1"}"#, .unknownField("room")),
        (#"{"type":"JOIN","room":"R1"}"#, .unknownType("JOIN")),
        ("{\"type\":\"ERROR\",\"code\":\"ROOM_FULL\",\"message\":\"\(String(repeating: "x", count: 257))\"}",
         .fieldTooLong("message", max: 256)),
        (#"{"type":"ERROR","code":"ROOM_FULL","message":"\ud800"}"#, .malformedJSON(offset: 52, reason: .badEscape)),
        (#"{"type":"JOINED","room":"R1","peers":1,"token":"0123"}"#, .invalidToken),
        (#"{"type":"PEER_FOUND","token":"0123456789abcdef0123456789abcdef"}"#, .unknownField("token")),
    ]

    @Test("The reconnect token: JOIN and JOINED carry it as 32 lowercase hex digits; without it they are as before")
    func reconnectToken() throws {
        let token = try #require(ReconnectToken(hex: "0123456789abcdef00ff00ff00ff00fe"))
        #expect(token == ReconnectToken(high: 0x0123_4567_89AB_CDEF, low: 0x00FF_00FF_00FF_00FE))
        #expect(token.hex == "0123456789abcdef00ff00ff00ff00fe")
        let join = WireCodec.encodeJoin(Self.room, token: token)
        #expect(String(decoding: join, as: UTF8.self)
            == #"{"type":"JOIN","room":"ROOM1","token":"0123456789abcdef00ff00ff00ff00fe"}"#)
        #expect(try join.withUnsafeBytes { try WireCodec.inspectClientFrame($0) } == .join(Self.room, token: token))
        // The relay's full decoder checks the token and leaves it out (ClientMessage has none).
        #expect(try WireCodec.decodeClientMessage(join) == .join(Self.room))
        #expect(WireCodec.encodeJoin(Self.room, token: nil) == WireCodec.encode(ClientMessage.join(Self.room)))
        let joined = #"{"type":"JOINED","room":"ROOM1","peers":2,"token":"0123456789abcdef00ff00ff00ff00fe"}"#
        #expect(try WireCodec.decodeRelayMessage(joined.bytes) == .joinedWithToken(room: Self.room, peers: 2, token: token))
        #expect(WireCodec.encode(RelayMessage.joinedWithToken(room: Self.room, peers: 2, token: token)) == joined.bytes)
        // A JOINED from a relay that reserves no seats is what it always was.
        let plain = #"{"type":"JOINED","room":"ROOM1","peers":1}"#
        #expect(try WireCodec.decodeRelayMessage(plain.bytes) == .joined(room: Self.room, peers: 1))
        #expect(RelayMessage.joinedWithToken(room: Self.room, peers: 2, token: token).joinedRoom?.peers == 2)
        #expect(RelayMessage.peerFound.joinedRoom == nil)
    }

    @Test("Each malformed relay frame gives its typed error", arguments: malformedRelay)
    func malformedRelayFrames(input: String, expected: WireError) {
        #expect(throws: expected) { try WireCodec.decodeRelayMessage(input.bytes) }
    }

    @Test("Invalid UTF-8 in a text field is a typed error")
    func invalidUTF8() {
        var frame = #"{"type":"ERROR","code":"ROOM_FULL","message":"ab"}"#.bytes
        frame[frame.count - 3] = 0xFF
        #expect(throws: WireError.invalidUTF8(field: "message")) { try WireCodec.decodeRelayMessage(frame) }
    }

    @Test("Unicode escapes, including surrogate pairs, decode to UTF-8")
    func unicodeEscapes() throws {
        let frame = #"{"type":"ERROR","code":"ROOM_FULL","message":"caf\u00e9 \ud83d\ude00 \" \\ \n"}"#.bytes
        #expect(try WireCodec.decodeRelayMessage(frame) == .error(code: .roomFull, message: "café 😀 \" \\ \n"))
    }

    @Test("Every error code maps to a stable string and back")
    func errorCodes() {
        for code in RelayErrorCode.allCases {
            #expect(RelayErrorCode(rawValue: code.rawValue) == code)
            let wellFormed = code.rawValue.utf8.allSatisfy { byte in
                (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "_")
            }
            #expect(wellFormed, "\(code.rawValue)")
        }
        #expect(Set(RelayErrorCode.allCases.map(\.rawValue)).count == RelayErrorCode.allCases.count)
    }

    @Test("Base64: canonical check agrees with the decoder")
    func base64() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let text = Base64.encode(bytes)
            #expect(text.withUnsafeBytes { Base64.isCanonical($0) })
            #expect(text.withUnsafeBytes { Base64.decode($0) } == bytes)
        }
        for bad in ["A", "AB", "ABC", "A===", "AB=A", "=AAA", "AB==\n", "AB ==", "QQ=", "QR=="] {
            #expect(bad.bytes.withUnsafeBytes { Base64.decode($0) } == nil, "\(bad)")
            #expect(!bad.bytes.withUnsafeBytes { Base64.isCanonical($0) }, "\(bad)")
        }
    }
}
