@_spi(CPaceInternals) import ChatCore
import Foundation
import Testing

/// "The password never reaches the relay", shown on a real client's bytes: two `securechat`
/// processes chat through a recording proxy in front of a real relay, and every byte each client
/// sent is decoded (RFC 6455, independently of NIO) and searched for the code's words, the
/// password, the CPace generator they make and every message text, raw and inside every base64
/// run at every alignment.
@Suite("securechat: what a client sends holds no password and no message")
struct ClientWireSecrecyTests {
    /// Two words of six letters or more, so that no chance match in random bytes is plausible
    /// (2^-48 per position), and a room of the test's own.
    static let words = ["umbrella", "velvet"]

    static func secrets(room: RoomCode, texts: [String]) -> [(name: String, bytes: [UInt8])] {
        let password = words.joined(separator: "-")
        let generator = Array(password.utf8).withUnsafeBytes { prs in
            CPace.calculateGenerator(prs: prs, ci: CPaceParty.channelIdentifier(room: room), sid: [])
                .withUnsafeBytes { Array($0) }
        }
        var secrets = words.map { (name: "word \($0)", bytes: Array($0.utf8)) }
        secrets.append((name: "password \(password)", bytes: Array(password.utf8)))
        secrets.append((name: "the CPace generator of the password", bytes: generator))
        secrets += texts.map { (name: "message \($0)", bytes: Array($0.utf8)) }
        return secrets
    }

    @Test("Through a whole chat, no frame either client sends holds the code's words, the password or a message")
    func nothingSecretOnTheWire() async throws {
        try await withRelay { relay in
            let proxy = try RecordingProxy(relayPort: relay.port)
            defer { proxy.stop() }
            let room = uniqueRoom("WIRE")
            let code = ([room] + Self.words).joined(separator: "-")
            let alice = try ClientProcess("alice", [code, "--relay", proxy.url, "--json"])
            let bob = try ClientProcess("bob", [code, "--relay", proxy.url, "--json"])
            try await alice.state("CONNECTED")
            try await bob.state("CONNECTED")
            let fromAlice = ["alice's first confidential line", "alice: the meeting moves to Thursday"]
            let fromBob = ["bob's reply, also confidential", "bob: Thursday suits me fine"]
            for text in fromAlice { try alice.type(text) }
            for text in fromBob { try bob.type(text) }
            #expect(try await bob.messages(count: fromAlice.count) == fromAlice)
            #expect(try await alice.messages(count: fromBob.count) == fromBob)
            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit() == 0)
            #expect(try await bob.waitForExit() == 0)
            proxy.stop()

            let secrets = Self.secrets(room: try RoomCode(room), texts: fromAlice + fromBob)
            let connections = proxy.connections
            #expect(connections.count == 2, "one connection per client")
            for (index, bytes) in connections.enumerated() {
                let stream = try WebSocketStream(bytes)
                // RFC 6455 §5.3: a client masks every frame (the relay would close otherwise).
                #expect(stream.frames.allSatisfy { $0.masked }, "connection \(index): an unmasked frame")
                // The scan sees the protocol: the room in the JOIN, and the chat's records.
                let texts = stream.messages.map { String(decoding: $0, as: UTF8.self) }
                #expect(texts.contains { $0.contains(#""JOIN""#) && $0.contains(room) },
                        "connection \(index): \(texts)")
                // A chat record is a MSG SIGNAL, as JSON text or, with the relay's `securechat.binary`,
                // as a binary frame (kind length 3, "MSG", the sealed record raw: scanned raw below).
                let records = stream.messages.filter {
                    $0.starts(with: [3] + Array("MSG".utf8)) || String(decoding: $0, as: UTF8.self).contains(#""MSG""#)
                }
                #expect(records.count >= 2, "connection \(index): \(texts)")
                var leaks = SecretScanner.leaks(in: stream.request, secrets: secrets).map { "request: \($0)" }
                for (number, frame) in stream.frames.enumerated() {
                    leaks += SecretScanner.leaks(in: frame.payload, secrets: secrets).map { "frame \(number): \($0)" }
                }
                for (number, message) in stream.messages.enumerated() {
                    leaks += SecretScanner.leaks(in: message, secrets: secrets).map { "message \(number): \($0)" }
                }
                #expect(leaks.isEmpty, "connection \(index) sent: \(leaks.joined(separator: "; "))")
            }
        }
    }

    @Test("The scanner finds a secret raw and base64-encoded at any alignment, inside a masked frame")
    func scannerSelfCheck() throws {
        let secret = Array("umbrella-velvet".utf8)
        let secrets = [(name: "password", bytes: secret)]
        for prefix in 0..<3 {
            for suffix in 0..<3 {
                let payload = [UInt8](repeating: 0xA5, count: prefix) + secret + [UInt8](repeating: 0x5A, count: suffix)
                let frame = Array(#"{"type":"SIGNAL","kind":"MSG","payload":""#.utf8)
                    + Array(Data(payload).base64EncodedString().utf8) + Array(#""}"#.utf8)
                #expect(!frame.contains(subsequence: secret), "the raw frame shows only base64")
                let stream = try WebSocketStream(Self.clientStream([frame]))
                #expect(stream.messages == [frame])
                #expect(SecretScanner.leaks(in: stream.messages[0], secrets: secrets) == ["password"],
                        "prefix \(prefix), suffix \(suffix)")
                // Inside a longer run that does not start on the encoding's boundary.
                let shifted = Array("QUJD".utf8.dropFirst(prefix)) + Array(Data(payload).base64EncodedString().utf8)
                #expect(SecretScanner.leaks(in: shifted, secrets: secrets) == ["password"], "shifted \(prefix)")
            }
        }
        #expect(SecretScanner.leaks(in: Array(#"{"note":"umbrella-velvet"}"#.utf8), secrets: secrets) == ["password"])
        #expect(SecretScanner.leaks(in: Array(#"{"payload":"QUJDREVG"}"#.utf8), secrets: secrets).isEmpty)
    }

    /// A client's byte stream as the proxy records it: an upgrade request, then `messages` as
    /// masked text frames.
    static func clientStream(_ messages: [[UInt8]]) -> [UInt8] {
        var bytes = Array("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n".utf8)
        for message in messages {
            let key: [UInt8] = [0x12, 0x34, 0x56, 0x78]
            bytes += [0x81, 0x80 | 126, UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + key
            bytes += message.enumerated().map { $1 ^ key[$0 % 4] }
        }
        return bytes
    }
}
