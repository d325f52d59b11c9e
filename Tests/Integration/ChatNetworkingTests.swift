import ChatNetworking
import NIOCore
import NIOWebSocket
import Testing

@Suite("ChatNetworking: URLs and masking")
struct ChatNetworkingTests {
    @Test("ws/wss URLs parse into scheme, host, port and request target")
    func parsesURLs() throws {
        let plain = try WebSocketURL("ws://127.0.0.1:8080")
        #expect(plain.scheme == .ws && plain.host == "127.0.0.1" && plain.port == 8080 && plain.requestTarget == "/")
        #expect(plain.hostIsIPAddress)
        let secure = try WebSocketURL("WSS://Relay.Example.org/chat?v=1")
        #expect(secure.usesTLS && secure.host == "relay.example.org" && secure.port == 443)
        #expect(
            secure.requestTarget == "/chat?v=1" && !secure.hostIsIPAddress && secure.hostHeader == "relay.example.org")
        let v6 = try WebSocketURL("ws://[::1]:9000/")
        #expect(v6.host == "::1" && v6.port == 9000 && v6.hostHeader == "[::1]:9000" && v6.hostIsIPAddress)
        #expect(try WebSocketURL("ws://h?x").requestTarget == "/?x")
    }

    @Test(
        "Bad URLs get typed errors",
        arguments: [
            ("http://example.org", WebSocketURLError.unsupportedScheme("http")),
            ("example.org", .unsupportedScheme("")),
            ("ws://", .missingHost),
            ("ws://:80", .missingHost),
            ("ws://host:0", .invalidPort("0")),
            ("ws://host:99999", .invalidPort("99999")),
            ("ws://host:x", .invalidPort("x")),
            ("ws://user:pw@host", .userInfoNotAllowed),
            ("ws://host/#frag", .fragmentNotAllowed),
            ("ws://ho st", .invalidHost),
            ("ws://[::1", .invalidHost),
        ])
    func rejectsURLs(text: String, expected: WebSocketURLError) {
        #expect(throws: expected) { try WebSocketURL(text) }
    }

    @Test("Word-wise unmasking equals NIO's byte-wise unmasking for every length and key")
    func unmasking() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let key = WebSocketMaskingKey.random(using: &generator)
            var masked = ByteBuffer(bytes: payload)
            masked.webSocketMask(key)
            let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: masked)
            #expect(Array(buffer: frame.unmaskedDataWordWise) == payload)
            #expect(Array(buffer: frame.unmaskedDataWordWise) == Array(buffer: frame.unmaskedData))
            // As NIO's decoder hands it on: a slice of a larger buffer, which must stay as it was.
            var whole = ByteBuffer(bytes: [1, 2, 3])
            whole.writeImmutableBuffer(masked)
            whole.writeBytes([4, 5])
            let before = Array(buffer: whole)
            let slice = whole.getSlice(at: 3, length: length)!
            let sliced = WebSocketFrame(fin: true, opcode: .binary, maskKey: key, data: slice)
            #expect(Array(buffer: sliced.unmaskedDataWordWise) == payload)
            #expect(Array(buffer: whole) == before)
        }
    }

    @Test("Close frames carry a code and a reason cut to 123 bytes on a character boundary")
    func closeFrames() {
        let frame = WebSocketFrame.close(
            code: .tryAgainLater, reason: String(repeating: "é", count: 100), masked: false)
        let status = frame.closeStatus
        #expect(status.code == WebSocketErrorCode(codeNumber: 1013))
        #expect(status.reason.utf8.count <= 123 && status.reason.allSatisfy { $0 == "é" })
        #expect(frame.data.readableBytes <= 125)
    }
}
