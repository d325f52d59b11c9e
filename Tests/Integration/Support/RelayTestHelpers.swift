import Foundation
import Testing

/// Run `body` against a fresh relay started with `arguments`; the relay is killed afterwards.
func withRelay<T>(_ arguments: [String] = [], _ body: (RelayProcess) async throws -> T) async throws -> T {
    let relay = try await RelayProcess.start(arguments)
    do {
        let result = try await body(relay)
        await relay.kill()
        return result
    } catch {
        await relay.kill()
        throw error
    }
}

/// A relay message as an independent client sees it: a JSON object parsed with Foundation, not
/// with ChatCore's codec (so the tests check the wire, not our own decoder against itself).
struct JSONMessage: CustomStringConvertible {
    let text: String
    let object: [String: Any]

    init(_ text: String) throws {
        self.text = text
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw TestWebSocket.Unexpected(expected: "a JSON object", got: text)
        }
        self.object = object
    }

    var type: String? { object["type"] as? String }
    var code: String? { object["code"] as? String }
    var description: String { text }
}

extension TestWebSocket {
    /// The next text frame, parsed as JSON.
    func nextJSON(timeoutSeconds: Double = 10) async throws -> JSONMessage {
        try JSONMessage(try await nextText(timeoutSeconds: timeoutSeconds))
    }

    /// Read the next message and require `type` (and `code` for an `ERROR`).
    @discardableResult
    func expect(_ type: String, code: String? = nil, timeoutSeconds: Double = 10) async throws -> JSONMessage {
        let message = try await nextJSON(timeoutSeconds: timeoutSeconds)
        #expect(message.type == type, "expected \(type), got \(message)")
        if let code { #expect(message.code == code, "expected \(code), got \(message)") }
        return message
    }
}

/// The original design's §5.2 JOIN, written as a client following only that text would.
func joinFrame(_ room: String) -> String {
    #"{"type": "JOIN", "room": "\#(room)"}"#
}

/// The original design's §5.2 SIGNAL.
func signalFrame(kind: String, payload: String, key: String? = nil) -> String {
    if let key {
        return #"{"type": "SIGNAL", "kind": "\#(kind)", "payload": "\#(payload)", "key": "\#(key)"}"#
    }
    return #"{"type": "SIGNAL", "kind": "\#(kind)", "payload": "\#(payload)"}"#
}

/// `first` then `second` JOIN `room`; both have seen JOINED and PEER_FOUND. Returns `first`'s JOINED.
@discardableResult
func introduce(_ first: TestWebSocket, _ second: TestWebSocket, room: String) async throws -> JSONMessage {
    try await first.send(joinFrame(room))
    let joined = try await first.expect("JOINED")
    try await second.send(joinFrame(room))
    try await second.expect("JOINED")
    try await second.expect("PEER_FOUND")
    try await first.expect("PEER_FOUND")
    return joined
}

/// Connect two clients to `room` and read the join answers: JOINED (+ PEER_FOUND for both).
func joinedPair(_ relay: RelayProcess, room: String) async throws -> (TestWebSocket, TestWebSocket) {
    let first = try await TestWebSocket.connect(relay.url)
    let second = try await TestWebSocket.connect(relay.url)
    try await first.send(joinFrame(room))
    let joined = try await first.expect("JOINED")
    #expect(joined.object["peers"] as? Int == 1)
    try await second.send(joinFrame(room))
    let secondJoined = try await second.expect("JOINED")
    #expect(secondJoined.object["peers"] as? Int == 2)
    try await second.expect("PEER_FOUND")
    try await first.expect("PEER_FOUND")
    return (first, second)
}

/// Check that `sender`'s SIGNAL reaches `receiver` byte for byte.
func expectForwarded(from sender: TestWebSocket, to receiver: TestWebSocket, payload: String = "aGVsbG8=")
    async throws
{
    let frame = signalFrame(kind: "MSG", payload: payload)
    try await sender.send(frame)
    #expect(try await receiver.nextText() == frame)
}
