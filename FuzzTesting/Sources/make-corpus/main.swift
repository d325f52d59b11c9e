// Writes the committed seed corpus: FuzzTesting/Corpus/<target>/<name>, one file per seed.
//
//   swift run --package-path FuzzTesting make-corpus [output-directory]
//
// The seeds cover every message type of both directions and the nasty cases (escapes, surrogates,
// huge numbers, nesting, duplicates, control characters, invalid UTF-8 and base64, longest and
// too-long room codes, oversized frames), room scenarios, and session scenarios that reach every
// state and the MSG/ACK/KEY_CONFIRM paths, honest and hostile. Regenerating is deterministic.
import ChatCore
import Foundation
import FuzzHarness
import RelayCore

let packageDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let output = CommandLine.arguments.count > 1
    ? URL(fileURLWithPath: CommandLine.arguments[1])
    : packageDirectory.appendingPathComponent("Corpus")

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func b64(_ data: [UInt8]) -> String { String(decoding: Base64.encode(data), as: UTF8.self) }

/// A hello payload (KEY_EXCHANGE, or PAKE's associated data): version ‖ instance (16) ‖ epoch (8)
/// ‖ known peer (16) ‖ next expected sequence (8). Version 2 is the current one.
func hello(version: UInt8 = 2, instance: UInt8 = 0x42, epoch: UInt8 = 9, knownPeer: UInt8 = 0, next: UInt8 = 1)
    -> [UInt8]
{
    [version] + Array(repeating: instance, count: 16) + [0, 0, 0, 0, 0, 0, 0, epoch]
        + Array(repeating: knownPeer, count: 16) + [0, 0, 0, 0, 0, 0, 0, next]
}

/// The ristretto255 base point's encoding (RFC 9496): a valid share, though no password gives it.
let ristrettoBase: [UInt8] = [
    0xe2, 0xf2, 0xae, 0x0a, 0x6a, 0xbc, 0x4e, 0x71, 0xa8, 0x84, 0xa9, 0x61, 0xc5, 0x00, 0x51, 0x5f,
    0x58, 0xe3, 0x0b, 0x6a, 0xa5, 0x82, 0xdd, 0x8d, 0xb6, 0xa6, 0x59, 0x45, 0xe0, 0x8d, 0x2d, 0x76,
]

// MARK: Frames a client sends (the relay parses them)

var clientFrames: [(String, [UInt8])] = [
    ("join", bytes(#"{"type":"JOIN","room":"ROOM1"}"#)),
    ("join-token", bytes(#"{"type":"JOIN","room":"ROOM1","token":"0123456789abcdef0123456789abcdef"}"#)),
    ("join-token-uppercase", bytes(#"{"type":"JOIN","room":"ROOM1","token":"0123456789ABCDEF0123456789ABCDEF"}"#)),
    ("join-token-short", bytes(#"{"type":"JOIN","room":"ROOM1","token":"0123"}"#)),
    ("join-token-escaped", bytes(#"{"type":"JOIN","room":"ROOM1","token":"\u0030123456789abcdef0123456789abcdef"}"#)),
    ("join-python-spacing", bytes(#"{"type": "JOIN", "room": "ROOM1"}"#)),
    ("join-whitespace-everywhere", bytes(" \t\r\n{ \"type\" :\n\"JOIN\" , \"room\" : \"R\" }\n ")),
    ("join-room-max-length", bytes(#"{"type":"JOIN","room":""# + String(repeating: "Z9", count: 32) + #""}"#)),
    ("join-room-too-long", bytes(#"{"type":"JOIN","room":""# + String(repeating: "A", count: 65) + #""}"#)),
    ("join-room-empty", bytes(#"{"type":"JOIN","room":""}"#)),
    ("join-room-lowercase", bytes(#"{"type":"JOIN","room":"room1"}"#)),
    ("join-room-escaped-letters", bytes(#"{"type":"JOIN","room":"\u0052OOM\u0031"}"#)),
    ("join-room-escaped-slash", bytes(#"{"type":"JOIN","room":"A\/B"}"#)),
    ("join-room-number", bytes(#"{"type":"JOIN","room":12345}"#)),
    ("join-missing-room", bytes(#"{"type":"JOIN"}"#)),
    ("join-extra-field", bytes(#"{"type":"JOIN","room":"ROOM1","peers":2}"#)),
    ("join-duplicate-type", bytes(#"{"type":"JOIN","type":"SIGNAL","room":"ROOM1"}"#)),
    ("join-duplicate-by-escape", bytes(#"{"type":"JOIN","room":"A","r\u006fom":"B"}"#)),
    ("type-escaped", bytes(#"{"t\u0079pe":"J\u004FIN","room":"R"}"#)),
    ("type-number", bytes(#"{"type":1}"#)),
    ("type-unknown", bytes(#"{"type":"PEER_FOUND"}"#)),
    ("type-missing", bytes(#"{"room":"ROOM1"}"#)),
    ("empty-object", bytes("{}")),
    ("signal-key-exchange-seed-style", bytes(#"{"type":"SIGNAL","kind":"KEY_EXCHANGE","key":""# + b64(Array(repeating: 9, count: 32)) + #""}"#)),
    ("signal-key-exchange-full", WireCodec.encode(ClientMessage.signal(Signal(
        kind: .keyExchange, payload: hello(instance: 7), key: Array(repeating: 9, count: 32))))),
    ("signal-key-confirm", WireCodec.encode(ClientMessage.signal(Signal(kind: .keyConfirm, payload: Array(repeating: 0xA5, count: 64))))),
    ("signal-key-confirm-pake", WireCodec.encode(ClientMessage.signal(Signal(kind: .keyConfirm, payload: Array(repeating: 0x5A, count: 80))))),
    ("signal-msg", WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: Array(0..<56))))),
    ("signal-ack", WireCodec.encode(ClientMessage.signal(Signal(kind: .ack, payload: Array(repeating: 1, count: 32))))),
    ("signal-pake", WireCodec.encode(ClientMessage.signal(Signal(kind: .pake, payload: [1, 2, 3], key: Array(repeating: 4, count: 32))))),
    ("signal-pake-full", WireCodec.encode(ClientMessage.signal(Signal(kind: .pake, payload: hello(instance: 3), key: ristrettoBase)))),
    ("signal-future-kind", bytes(#"{"type":"SIGNAL","kind":"FILE_CHUNK_2","payload":"AAEC"}"#)),
    ("signal-no-payload", bytes(#"{"type":"SIGNAL","kind":"MSG"}"#)),
    ("signal-empty-payload", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":""}"#)),
    ("signal-kind-lowercase", bytes(#"{"type":"SIGNAL","kind":"msg"}"#)),
    ("signal-kind-leading-digit", bytes(#"{"type":"SIGNAL","kind":"1MSG"}"#)),
    ("signal-kind-32", bytes(#"{"type":"SIGNAL","kind":"A"# + String(repeating: "_", count: 31) + #""}"#)),
    ("signal-kind-33", bytes(#"{"type":"SIGNAL","kind":"A"# + String(repeating: "B", count: 32) + #""}"#)),
    ("signal-kind-missing", bytes(#"{"type":"SIGNAL","payload":"AAAA"}"#)),
    ("base64-stray-bits", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QR=="}"#)),
    ("base64-stray-bits-one-pad", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QUJ="}"#)),
    ("base64-no-padding", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QQ"}"#)),
    ("base64-url-alphabet", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"-_-_"}"#)),
    ("base64-inner-padding", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QQ==QQ=="}"#)),
    ("base64-triple-padding", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"Q==="}"#)),
    ("base64-whitespace", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QU JD"}"#)),
    ("base64-escaped", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QUJD\u0044\/\/\/"}"#)),
    ("base64-key-invalid", bytes(#"{"type":"SIGNAL","kind":"KEY_EXCHANGE","key":"****"}"#)),
    ("surrogate-pair", bytes(#"{"type":"JOIN","room":"R","\ud83d\ude00":1}"#)),
    ("surrogate-lone-high", bytes(#"{"type":"JOIN","room":"\ud800"}"#)),
    ("surrogate-lone-low", bytes(#"{"type":"JOIN","room":"\udc00"}"#)),
    ("surrogate-high-high", bytes(#"{"type":"\ud800\ud800"}"#)),
    ("surrogate-truncated", bytes(#"{"type":"\ud83d\u"}"#)),
    ("escape-invalid", bytes(#"{"type":"\x"}"#)),
    ("escape-bad-hex", bytes(#"{"type":"\u12G4"}"#)),
    ("escape-nul-in-key", bytes(#"{"type":"JOIN","room":"R","\u0000":"x"}"#)),
    ("control-raw-newline", bytes("{\"type\":\"JO\nIN\"}")),
    ("control-raw-nul", [UInt8](#"{"type":"JOIN","room":"R"#.utf8) + [0] + [UInt8](#""}"#.utf8)),
    ("control-del-in-string", bytes("{\"type\":\"JOIN\u{7F}\"}")),
    ("number-leading-zero", bytes(#"{"type":"JOIN","room":"R","n":01}"#)),
    ("number-15-digits", bytes(#"{"type":"JOIN","room":"R","n":999999999999999}"#)),
    ("number-16-digits", bytes(#"{"type":"JOIN","room":"R","n":9999999999999999}"#)),
    ("number-huge", bytes(#"{"type":"JOIN","n":"# + String(repeating: "9", count: 400) + "}")),
    ("number-negative", bytes(#"{"type":"JOIN","n":-1}"#)),
    ("number-fraction", bytes(#"{"type":"JOIN","n":1.5}"#)),
    ("number-exponent", bytes(#"{"type":"JOIN","n":1e999}"#)),
    ("literal-true", bytes(#"{"type":true}"#)),
    ("literal-null", bytes(#"{"type":null}"#)),
    ("nested-object", bytes(#"{"type":{"type":{"type":"JOIN"}}}"#)),
    ("nested-array-deep", bytes(#"{"type":"# + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "}")),
    ("nested-object-deep", bytes(String(repeating: #"{"a":"#, count: 2000) + "1" + String(repeating: "}", count: 2000))),
    ("too-many-fields", bytes("{" + (0..<9).map { #""f\#($0)":"\#($0)""# }.joined(separator: ",") + "}")),
    ("trailing-data", bytes(#"{"type":"JOIN","room":"R"}x"#)),
    ("two-objects", bytes(#"{"type":"JOIN","room":"R"}{"type":"JOIN","room":"S"}"#)),
    ("trailing-comma", bytes(#"{"type":"JOIN","room":"R",}"#)),
    ("missing-colon", bytes(#"{"type" "JOIN"}"#)),
    ("single-quotes", bytes("{'type':'JOIN'}")),
    ("truncated-in-string", bytes(#"{"type":"JOIN","room":"ROO"#)),
    ("truncated-after-key", bytes(#"{"type""#)),
    ("not-object-array", bytes("[]")),
    ("not-object-string", bytes(#""JOIN""#)),
    ("not-object-number", bytes("42")),
    ("empty-input", []),
    ("whitespace-only", bytes(" \n\t ")),
    ("utf8-bom", [0xEF, 0xBB, 0xBF] + bytes(#"{"type":"JOIN","room":"R"}"#)),
    ("utf8-invalid-in-type", bytes(#"{"type":"JO"#) + [0xFF, 0xFE] + bytes(#""}"#)),
    ("utf8-overlong-slash", bytes(#"{"type":""#) + [0xC0, 0xAF] + bytes(#""}"#)),
    ("utf8-encoded-surrogate", bytes(#"{"type":""#) + [0xED, 0xA0, 0x80] + bytes(#""}"#)),
    ("utf8-invalid-in-unknown-key", bytes(#"{"type":"JOIN","room":"R",""#) + [0xC3] + bytes(#"":1}"#)),
    ("unicode-key-combining", bytes(#"{"type":"JOIN","room":"R","e"# + String(repeating: "\u{301}", count: 300) + #"":1}"#)),
    ("unicode-type-emoji", bytes(#"{"type":"😀"}"#)),
    ("type-long", bytes(#"{"type":""# + String(repeating: "T", count: 200) + #""}"#)),
    ("frame-too-large", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":""# + String(repeating: "A", count: 131_072) + #""}"#)),
    ("frame-at-cap", bytes(#"{"type":"SIGNAL","kind":"MSG","payload":""# + String(repeating: "A", count: 131_072 - 44) + #""}"#)),
]

// MARK: Frames the relay sends (a client parses them)

var relayFrames: [(String, [UInt8])] = [
    ("joined-1", WireCodec.encode(RelayMessage.joined(room: try! RoomCode("ROOM1"), peers: 1))),
    ("joined-2", WireCodec.encode(RelayMessage.joined(room: try! RoomCode("ROOM1"), peers: 2))),
    ("joined-0", bytes(#"{"type":"JOINED","room":"ROOM1","peers":0}"#)),
    ("joined-3", bytes(#"{"type":"JOINED","room":"ROOM1","peers":3}"#)),
    ("joined-peers-string", bytes(#"{"type":"JOINED","room":"ROOM1","peers":"2"}"#)),
    ("joined-peers-missing", bytes(#"{"type":"JOINED","room":"ROOM1"}"#)),
    ("joined-token", bytes(#"{"type":"JOINED","room":"ROOM1","peers":1,"token":"00000000000000000000000000000001"}"#)),
    ("joined-token-number", bytes(#"{"type":"JOINED","room":"ROOM1","peers":1,"token":1}"#)),
    ("joined-room-max", WireCodec.encode(RelayMessage.joined(room: try! RoomCode(String(repeating: "Q", count: 64)), peers: 2))),
    ("peer-found", WireCodec.encode(RelayMessage.peerFound)),
    ("peer-found-extra", bytes(#"{"type":"PEER_FOUND","room":"ROOM1"}"#)),
    ("peer-left", WireCodec.encode(RelayMessage.peerLeft)),
    ("signal-unknown-kind", bytes(#"{"type":"SIGNAL","kind":"FILE_CHUNK","payload":"AAEC"}"#)),
    ("error-no-message", bytes(#"{"type":"ERROR","code":"ROOM_FULL"}"#)),
    ("error-unknown-code", bytes(#"{"type":"ERROR","code":"TEAPOT","message":"short and stout"}"#)),
    ("error-message-256", bytes(#"{"type":"ERROR","code":"NO_PEER","message":""# + String(repeating: "m", count: 256) + #""}"#)),
    ("error-message-257", bytes(#"{"type":"ERROR","code":"NO_PEER","message":""# + String(repeating: "m", count: 257) + #""}"#)),
    ("error-message-escapes", bytes(#"{"type":"ERROR","code":"INTERNAL_ERROR","message":"\u001b[31mred\u001b[0m\n\t\"q\" \ud83d\ude00"}"#)),
    ("error-code-number", bytes(#"{"type":"ERROR","code":7}"#)),
    ("type-join-from-relay", bytes(#"{"type":"JOIN","room":"ROOM1"}"#)),
]
for code in RelayErrorCode.allCases {
    relayFrames.append(("error-\(code.rawValue.lowercased())", WireCodec.encodeError(code)))
}
for (name, frame) in clientFrames where name.hasPrefix("signal-") || name.hasPrefix("base64-")
    || name.hasPrefix("surrogate-") || name.hasPrefix("escape-") || name.hasPrefix("control-")
    || name.hasPrefix("number-") || name.hasPrefix("nested-") || name.hasPrefix("utf8-") || name.hasPrefix("frame-")
    || name.hasPrefix("not-object") || name.hasPrefix("trunc") || name.hasPrefix("unicode-") {
    relayFrames.append((name, frame))
}

// MARK: Room scenarios

let roomScenarios: [(String, [RoomsStep])] = [
    ("two-peers-signal", [.join(connection: 0, room: 0), .join(connection: 1, room: 0), .signal(connection: 0, kind: 2),
                          .signal(connection: 1, kind: 3), .signal(connection: 0, kind: 5)]),
    ("third-peer-refused", [.join(connection: 0, room: 0), .join(connection: 1, room: 0), .join(connection: 2, room: 0),
                            .signal(connection: 2, kind: 0)]),
    ("leave-and-rejoin", [.join(connection: 0, room: 1), .join(connection: 1, room: 1), .disconnect(connection: 0),
                          .signal(connection: 1, kind: 2), .join(connection: 2, room: 1), .disconnect(connection: 1),
                          .disconnect(connection: 2), .join(connection: 3, room: 1)]),
    ("repeated-join", [.join(connection: 0, room: 4), .join(connection: 0, room: 4), .join(connection: 1, room: 4),
                       .join(connection: 1, room: 4), .join(connection: 0, room: 4)]),
    ("second-room-refused", [.join(connection: 0, room: 0), .join(connection: 0, room: 1)]),
    ("too-many-rooms", [.join(connection: 0, room: 0), .join(connection: 1, room: 1), .join(connection: 2, room: 2),
                        .join(connection: 3, room: 3), .disconnect(connection: 0), .join(connection: 3, room: 3)]),
    ("signal-before-join-and-alone", [.signal(connection: 0, kind: 0), .join(connection: 0, room: 2),
                                      .signal(connection: 0, kind: 1)]),
    ("garbage-frames", [.frame(connection: 0, bytes: bytes(#"{"type":"JOIN","room":"r"}"#)),
                        .frame(connection: 1, bytes: bytes("{")), .join(connection: 1, room: 0),
                        .frame(connection: 1, bytes: bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QR=="}"#)),
                        .frame(connection: 2, bytes: bytes(#"{"type":"JOIN","room":"ROOM1"}"#)),
                        .frame(connection: 1, bytes: bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"QQ=="}"#))]),
    ("disconnect-unknown", [.disconnect(connection: 5), .join(connection: 5, room: 0), .disconnect(connection: 5),
                            .disconnect(connection: 5)]),
    // Seat reservation: tokens are given out in order (#0, #1, ...); 255 presents a made-up one.
    ("seat-reserved-and-taken-back", [.joinWithToken(connection: 0, room: 0, token: 255),
                                      .joinWithToken(connection: 1, room: 0, token: 0), .leave(connection: 0),
                                      .join(connection: 2, room: 0), .joinWithToken(connection: 3, room: 0, token: 0),
                                      .signal(connection: 3, kind: 2), .signal(connection: 1, kind: 3)]),
    ("seat-expires", [.joinWithToken(connection: 0, room: 1, token: 255),
                      .joinWithToken(connection: 1, room: 1, token: 255), .leave(connection: 1),
                      .advance(seconds: 29), .join(connection: 2, room: 1), .advance(seconds: 1),
                      .join(connection: 2, room: 1), .joinWithToken(connection: 3, room: 1, token: 1)]),
    ("both-seats-reserved", [.joinWithToken(connection: 0, room: 2, token: 255),
                             .joinWithToken(connection: 1, room: 2, token: 255), .leave(connection: 0),
                             .leave(connection: 1), .advance(seconds: 10), .joinWithToken(connection: 2, room: 2, token: 1),
                             .signal(connection: 2, kind: 0), .advance(seconds: 25), .leave(connection: 2),
                             .advance(seconds: 39)]),
    ("seat-token-elsewhere", [.joinWithToken(connection: 0, room: 0, token: 255), .leave(connection: 0),
                              .joinWithToken(connection: 1, room: 1, token: 0), .joinWithToken(connection: 1, room: 0, token: 0),
                              .disconnect(connection: 1), .joinWithToken(connection: 2, room: 0, token: 0),
                              .frame(connection: 4, bytes: bytes(#"{"type":"JOIN","room":"ROOM1","token":"00"}"#))]),
]

// MARK: Session scenarios

let a = 0
let b = 1
func text(_ value: String) -> [UInt8] { bytes(value) }
let connectBoth: [WorldStep] = [.transportUp(side: a), .transportUp(side: b), .settle]
func weakKeyExchange(_ key: [UInt8]) -> [UInt8] {
    WireCodec.encode(RelayMessage.signal(Signal(kind: .keyExchange, payload: hello(), key: key)))
}
/// A PAKE opening with `share` (invalid ones: the identity, non-canonical encodings).
func pakeOpening(_ share: [UInt8], instance: UInt8 = 0x42) -> [UInt8] {
    WireCodec.encode(RelayMessage.signal(Signal(kind: .pake, payload: hello(instance: instance), key: share)))
}

let sessionScenarios: [(String, [WorldStep])] = [
    ("honest-chat", connectBoth + [.send(side: a, body: text("hello")), .send(side: b, body: text("hi")), .settle,
                                   .send(side: a, body: text("bye")), .settle]),
    ("step-by-step-handshake", [.transportUp(side: a), .deliverUp(side: a), .deliverDown(side: a), .transportUp(side: b),
                                .deliverUp(side: b), .deliverDown(side: b), .deliverDown(side: b), .deliverDown(side: a),
                                .deliverUp(side: a), .deliverUp(side: b), .deliverDown(side: b), .deliverDown(side: a),
                                .deliverUp(side: a), .deliverUp(side: b), .deliverDown(side: a), .deliverDown(side: b),
                                .send(side: a, body: text("first")), .deliverUp(side: a), .deliverDown(side: b),
                                .deliverUp(side: b), .deliverDown(side: a)]),
    ("queued-before-connect", [.send(side: a, body: text("early 1")), .send(side: a, body: text("early 2")),
                               .transportUp(side: a), .settle, .send(side: b, body: text("early b"))] + connectBoth),
    ("transport-flap-resume", connectBoth + [.send(side: a, body: text("one")), .transportDown(side: a),
                                             .send(side: a, body: text("two")), .send(side: b, body: text("to a")),
                                             .advance(tenthsOfSeconds: 30), .transportUp(side: a), .settle,
                                             .send(side: a, body: text("three")), .settle]),
    ("flap-with-in-flight", connectBoth + [.send(side: a, body: text("x")), .send(side: a, body: text("y")),
                                           .deliverUp(side: a), .transportDown(side: b), .transportUp(side: b),
                                           .settle, .advance(tenthsOfSeconds: 10), .settle]),
    ("peer-restart-undeliverable", connectBoth + [.transportDown(side: a), .send(side: b, body: text("for old a")),
                                                  .restart(side: a), .transportUp(side: a), .settle,
                                                  .send(side: b, body: text("for new a")), .settle]),
    ("quit-with-pending", connectBoth + [.transportDown(side: b), .send(side: a, body: text("never")), .quit(side: a),
                                         .send(side: a, body: text("after quit")), .transportUp(side: b), .settle]),
    ("retransmit-backoff", connectBoth + [.send(side: a, body: text("r1")), .send(side: a, body: text("r2")),
                                          .advance(tenthsOfSeconds: 5), .advance(tenthsOfSeconds: 10),
                                          .advance(tenthsOfSeconds: 20), .settle, .advance(tenthsOfSeconds: 100)]),
    ("handshake-retransmit", [.transportUp(side: a), .transportUp(side: b), .deliverUp(side: a), .deliverUp(side: b),
                              .deliverDown(side: a), .deliverDown(side: b), .deliverDown(side: a), .deliverDown(side: b),
                              .advance(tenthsOfSeconds: 6), .advance(tenthsOfSeconds: 12), .settle]),
    ("join-retransmit", [.transportUp(side: a), .advance(tenthsOfSeconds: 15), .advance(tenthsOfSeconds: 30), .settle,
                         .advance(tenthsOfSeconds: 100)]),
    ("queue-full-and-limits", [.sendEmpty(side: a), .send(side: a, body: Array(repeating: 0x61, count: 200))]
        + (0..<17).map { .send(side: a, body: text("q\($0)")) } + connectBoth + [.advance(tenthsOfSeconds: 20), .settle]),
    ("window-and-acks", connectBoth + (0..<10).map { .send(side: b, body: text("w\($0)")) }
        + [.deliverUp(side: b), .deliverDown(side: a), .deliverUp(side: a), .deliverDown(side: b), .settle]),
    ("both-flap-and-restart", connectBoth + [.send(side: a, body: text("m")), .transportDown(side: a),
                                             .transportDown(side: b), .restart(side: b), .transportUp(side: b),
                                             .transportUp(side: a), .settle, .send(side: b, body: text("n")), .settle]),
    // Hostile.
    ("tamper-msg-payload", connectBoth + [.send(side: a, body: text("secret")), .deliverUp(side: a),
                                          .tamperSignal(side: b, link: .down, index: 0, position: 20, mask: 1, key: false),
                                          .settle, .advance(tenthsOfSeconds: 10), .settle]),
    ("tamper-msg-sequence", connectBoth + [.send(side: a, body: text("s")), .deliverUp(side: a),
                                           .tamperSignal(side: b, link: .down, index: 0, position: 7, mask: 2, key: false),
                                           .settle]),
    ("tamper-key-exchange", [.transportUp(side: a), .transportUp(side: b), .deliverUp(side: a), .deliverUp(side: b),
                             .deliverDown(side: a), .deliverDown(side: b), .deliverDown(side: a), .deliverUp(side: a),
                             .tamperSignal(side: a, link: .up, index: 0, position: 3, mask: 0x80, key: true),
                             .settle, .advance(tenthsOfSeconds: 10), .settle]),
    ("tamper-key-confirm", [.transportUp(side: a), .transportUp(side: b), .settle, .transportDown(side: a),
                            .transportUp(side: a), .deliverUp(side: a), .deliverDown(side: a), .deliverDown(side: b),
                            .deliverUp(side: b), .deliverDown(side: a), .deliverUp(side: a), .deliverUp(side: a),
                            .tamperSignal(side: b, link: .down, index: 1, position: 30, mask: 4, key: false), .settle]),
    ("tamper-ack", connectBoth + [.send(side: a, body: text("ack me")), .deliverUp(side: a), .deliverDown(side: b),
                                  .deliverUp(side: b), .tamperSignal(side: a, link: .down, index: 0, position: 12,
                                                                     mask: 0x10, key: false), .settle]),
    ("tamper-json-bytes", connectBoth + [.send(side: b, body: text("j")), .deliverUp(side: b),
                                         .tamperBytes(side: a, link: .down, index: 0, position: 2, mask: 0x20), .settle]),
    ("truncate-frame", connectBoth + [.send(side: a, body: text("t")), .deliverUp(side: a),
                                      .truncate(side: b, link: .down, index: 0, length: 40), .settle]),
    ("reorder-messages", connectBoth + [.send(side: a, body: text("r1")), .send(side: a, body: text("r2")),
                                        .send(side: a, body: text("r3")), .deliverUp(side: a), .deliverUp(side: a),
                                        .deliverUp(side: a), .reorder(side: b, link: .down, index: 0), .settle]),
    ("duplicate-and-drop", connectBoth + [.send(side: a, body: text("d1")), .send(side: a, body: text("d2")),
                                          .duplicate(side: a, link: .up, index: 0), .drop(side: a, link: .up, index: 1),
                                          .settle, .advance(tenthsOfSeconds: 10), .settle]),
    ("replay-history", connectBoth + [.send(side: a, body: text("p")), .settle, .replay(side: b, index: 0),
                                      .replay(side: b, index: 3), .replay(side: a, index: 5), .replay(side: b, index: 9)]),
    ("inject-garbage", connectBoth + [.inject(side: a, frame: bytes("{")), .inject(side: a, frame: bytes(#"{"type":"PEER_FOUND"}"#)),
                                      .inject(side: a, frame: bytes(#"{"type":"JOINED","room":"ROOM1","peers":2}"#)),
                                      .inject(side: b, frame: bytes(#"{"type":"SIGNAL","kind":"MSG","payload":"AAAAAAAAAAE="}"#)),
                                      .inject(side: b, frame: bytes(#"{"type":"SIGNAL","kind":"ACK","payload":"AAAAAAAAAAEAAAAAAAAAAA=="}"#)),
                                      .inject(side: b, frame: bytes(#"{"type":"SIGNAL","kind":"KEY_CONFIRM"}"#)),
                                      .inject(side: b, frame: bytes(#"{"type":"SIGNAL","kind":"PAKE","payload":"AA=="}"#)),
                                      .inject(side: a, frame: bytes(#"{"type":"ERROR","code":"RATE_LIMITED"}"#)),
                                      .send(side: a, body: text("still fine")), .settle]),
    ("inject-peer-left", connectBoth + [.inject(side: a, frame: bytes(#"{"type":"PEER_LEFT"}"#)),
                                        .send(side: b, body: text("lost?")), .settle, .advance(tenthsOfSeconds: 20)]),
    ("inject-room-full", [.transportUp(side: a), .send(side: a, body: text("doomed")),
                          .inject(side: a, frame: bytes(#"{"type":"ERROR","code":"ROOM_FULL"}"#)), .settle]),
    ("inject-weak-keys", [.transportUp(side: a), .settle,
                          .inject(side: a, frame: weakKeyExchange(Array(repeating: 0, count: 32))),
                          .inject(side: a, frame: weakKeyExchange([1] + Array(repeating: 0, count: 31))),
                          .inject(side: a, frame: weakKeyExchange(Array(repeating: 0xFF, count: 31) + [0x7F])),
                          .inject(side: a, frame: weakKeyExchange(Array(repeating: 7, count: 31))),
                          .transportUp(side: b), .settle]),
    ("inject-key-exchange-versions", [.transportUp(side: a), .settle,
                                      .inject(side: a, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                          kind: .keyExchange, payload: [1] + Array(repeating: 1, count: 24),
                                          key: Array(repeating: 9, count: 32))))),
                                      .inject(side: a, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                          kind: .keyExchange, payload: hello(instance: 0),
                                          key: Array(repeating: 9, count: 32))))),
                                      .inject(side: a, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                          kind: .keyExchange, payload: hello(knownPeer: 0, next: 7),
                                          key: Array(repeating: 9, count: 32))))),
                                      .inject(side: a, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                          kind: .keyExchange, payload: Array(hello().prefix(25)),
                                          key: Array(repeating: 9, count: 32))))),
                                      .inject(side: a, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                          kind: .keyExchange, key: Array(repeating: 9, count: 32)))))]),
    // PAKE openings a session must refuse before its CPace run sees them: the identity, a
    // non-canonical encoding, a wrong length. (Without a password, any PAKE is a mode mismatch.)
    ("inject-invalid-shares", [.transportUp(side: a), .settle,
                               .inject(side: a, frame: pakeOpening(Array(repeating: 0, count: 32))),
                               .inject(side: a, frame: pakeOpening(Array(repeating: 0xFF, count: 32))),
                               .inject(side: a, frame: pakeOpening(Array(repeating: 1, count: 31))),
                               .transportUp(side: b), .settle]),
    // A share that decodes but comes from no password: the run fails confirmation (password) or
    // the modes differ (no password). Either way the session ends, with a typed reason.
    ("inject-foreign-share", [.transportUp(side: a), .transportUp(side: b), .deliverUp(side: a),
                              .deliverUp(side: b), .deliverDown(side: a), .deliverDown(side: b),
                              .inject(side: a, frame: pakeOpening(ristrettoBase, instance: 0x77)), .settle]),
    // A KEY_CONFIRM from another pairing is stale, not fatal; one that is the right length but
    // garbage fails confirmation.
    ("inject-stale-confirmations", [.transportUp(side: a), .transportUp(side: b), .deliverUp(side: a),
                                    .deliverUp(side: b), .deliverDown(side: a), .deliverDown(side: b),
                                    .deliverDown(side: a), .deliverDown(side: b),
                                    .inject(side: a, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                        kind: .keyConfirm, payload: Array(repeating: 0x5A, count: 80))))),
                                    .inject(side: b, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                        kind: .keyConfirm, payload: Array(repeating: 0x5A, count: 64))))),
                                    .inject(side: b, frame: WireCodec.encode(RelayMessage.signal(Signal(
                                        kind: .keyConfirm, payload: Array(repeating: 0x5A, count: 16))))),
                                    .settle]),
    // Many reconnects during handshakes: the guess budget with a password, liveness without.
    ("reconnects-during-handshakes", connectBoth + (0..<6).flatMap { _ -> [WorldStep] in
        [.transportDown(side: a), .transportUp(side: a), .deliverUp(side: a), .deliverDown(side: b), .deliverUp(side: b),
         .deliverDown(side: a)]
    } + [.settle, .send(side: a, body: text("after the flaps")), .settle]),
    // The relay loses a PEER_LEFT: the peer's new KEY_EXCHANGE reaches a side still CONNECTED.
    ("lost-peer-left-rekey-while-connected", connectBoth + [.send(side: a, body: text("before")), .settle,
                                                            .transportDown(side: b), .drop(side: a, link: .down, index: 0),
                                                            .transportUp(side: b), .settle,
                                                            .send(side: a, body: text("after")), .settle]),
    ("replay-old-key-exchanges-after-rekey", connectBoth + [.transportDown(side: b), .transportUp(side: b), .settle]
        + (0..<16).map { .replay(side: a, index: UInt8($0)) } + [.send(side: b, body: text("still")), .settle]),
    ("replay-retired-instance", connectBoth + [.restart(side: b), .transportUp(side: b), .settle]
        + (0..<16).map { .replay(side: a, index: UInt8($0)) } + [.send(side: a, body: text("new b")), .settle]),
]

// MARK: PROXY protocol v2 headers

let ipv4Addresses: [UInt8] = [192, 0, 2, 17, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB]
let ipv6Addresses: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]
    + [UInt8](repeating: 0, count: 15) + [1, 0xC3, 0x50, 0x01, 0xBB]
let proxyHeaders: [(String, [UInt8])] = [
    ("tcp4", proxyHeader(family: 0x11, body: ipv4Addresses) + bytes("GET / HTTP/1.1\r\n")),
    ("tcp6-with-tlvs", proxyHeader(family: 0x21, body: ipv6Addresses + [0x05, 0x00, 0x03, 0x61, 0x62, 0x63,
                                                                       0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0])),
    ("udp4", proxyHeader(family: 0x12, body: ipv4Addresses)),
    ("local", ProxyProtocolV2.signature + [0x20, 0x00, 0x00, 0x00]),
    ("local-with-addresses", ProxyProtocolV2.signature + [0x20, 0x11, 0x00, 0x0C] + ipv4Addresses),
    ("unspec", proxyHeader(family: 0x00, body: [])),
    ("unix", proxyHeader(family: 0x31, body: [UInt8](repeating: 0x2F, count: 216))),
    ("truncated", Array(proxyHeader(family: 0x11, body: ipv4Addresses).prefix(20))),
    ("signature-only", ProxyProtocolV2.signature),
    ("version-1-text", bytes("PROXY TCP4 192.0.2.17 10.0.0.1 50000 443\r\n")),
    ("tls-client-hello", [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]),
    ("bad-version", ProxyProtocolV2.signature + [0x11, 0x11, 0x00, 0x0C] + ipv4Addresses),
    ("bad-command", ProxyProtocolV2.signature + [0x2F, 0x11, 0x00, 0x0C] + ipv4Addresses),
    ("bad-family", ProxyProtocolV2.signature + [0x21, 0x51, 0x00, 0x0C] + ipv4Addresses),
    ("short-for-ipv6", ProxyProtocolV2.signature + [0x21, 0x21, 0x00, 0x0C] + ipv4Addresses),
    ("length-max", ProxyProtocolV2.signature + [0x21, 0x11, 0xFF, 0xFF]),
]

/// FuzzRESP: Redis's replies and pub/sub messages as the cluster relay reads them.
let respSignal = "S 3 7 n2.0000abcd\n{\"type\":\"SIGNAL\",\"kind\":\"MSG\",\"payload\":\"aGk=\"}"
let respSeeds: [(String, [UInt8])] = [
    ("ok", "+OK\r\n"),
    ("error", "-NOSCRIPT No matching script\r\n"),
    ("integer", ":-42\r\n"),
    ("bulk", "$5\r\nhello\r\n"),
    ("null-bulk", "$-1\r\n"),
    ("join-admitted", "*6\r\n$8\r\nadmitted\r\n$11\r\nn2.0000abcd\r\n$1\r\n7\r\n$1\r\n0\r\n$0\r\n\r\n$0\r\n\r\n"),
    ("join-refused", "*2\r\n$7\r\nrefused\r\n$9\r\nROOM_FULL\r\n"),
    ("pubsub-signal", "*3\r\n$7\r\nmessage\r\n$17\r\nsc:ch:n1.0000abcd\r\n$\(respSignal.utf8.count)\r\n\(respSignal)\r\n"),
    ("pubsub-found", "*3\r\n$7\r\nmessage\r\n$17\r\nsc:ch:n1.0000abcd\r\n$17\r\nF 3 7 n2.0000abcd\r\n"),
    ("subscribe", "*3\r\n$9\r\nsubscribe\r\n$17\r\nsc:ch:n1.0000abcd\r\n:1\r\n"),
    ("resp3-types", "%2\r\n+a\r\n,3.5\r\n+b\r\n#t\r\n"),
    ("resp3-push", ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$6\r\nE 1234\r\n"),
    // The subscriber's fast path (`RESPParser.pubSubMessage`): sharded messages, both forms.
    ("smessage-signal",
     "*3\r\n$8\r\nsmessage\r\n$17\r\nsc:ch:n1.0000abcd\r\n$\(respSignal.utf8.count)\r\n\(respSignal)\r\n"),
    ("smessage-push", ">3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$6\r\nE 1234\r\n"),
    ("resp3-misc", "~3\r\n_\r\n(12345678901234567890\r\n=7\r\ntxt:abc\r\n"),
    ("attribute", "|1\r\n+key\r\n+value\r\n:7\r\n"),
    ("nested", "*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n!3\r\nbad\r\n"),
].map { ($0.0, Array($0.1.utf8)) }

// MARK: Write

let fileManager = FileManager.default
func write(_ target: String, _ seeds: [(String, [UInt8])], suffix: String) throws {
    let directory = output.appendingPathComponent(target)
    try? fileManager.removeItem(at: directory)
    try fileManager.createDirectory(at: directory, withIntermediateDirectories: true)
    var names = Set<String>()
    for (name, data) in seeds {
        precondition(names.insert(name).inserted, "duplicate seed name \(name)")
        try Data(data).write(to: directory.appendingPathComponent(name + suffix))
    }
    print("\(target): \(seeds.count) seeds")
}

try write("FuzzRelayFrame", clientFrames, suffix: ".json")
try write("FuzzClientFrame", relayFrames, suffix: ".json")
try write("FuzzRelayRooms", roomScenarios.map { ($0.0, encodeRoomsInput($0.1)) }, suffix: ".bin")
try write("FuzzSessionWorld", sessionScenarios.map { ($0.0, encodeSessionInput($0.1)) }, suffix: ".bin")
try write("FuzzSession", sessionProgramSeeds(), suffix: ".bin")
try write("FuzzSOCKSReply", socksSeeds, suffix: ".bin")
try write("FuzzProxyHeader", proxyHeaders, suffix: ".bin")
try write("FuzzRESP", respSeeds, suffix: ".bin")
