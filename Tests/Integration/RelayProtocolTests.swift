import Foundation
import NIOWebSocket
import Testing

/// The relay against the original design's protocol (§5.2), with real processes and sockets.
@Suite("relay: the original protocol end to end")
struct RelayProtocolTests {
    @Test("Two §5.2 clients: JOIN, PEER_FOUND, KEY_EXCHANGE both ways, MSG, a future kind, PEER_LEFT")
    func originalFlow() async throws {
        try await withRelay { relay in
            let (alice, bob) = try await joinedPair(relay, room: "ROOM1")
            // The seed's KEY_EXCHANGE: the public key in "key"; forwarded unchanged, spacing and all.
            let aliceKey = Data((0..<32).map { UInt8($0) }).base64EncodedString()
            let bobKey = Data((0..<32).map { UInt8(255 - $0) }).base64EncodedString()
            let aliceExchange = signalFrame(kind: "KEY_EXCHANGE", payload: "", key: aliceKey)
            let bobExchange = signalFrame(kind: "KEY_EXCHANGE", payload: "", key: bobKey)
            try await alice.send(aliceExchange)
            #expect(try await bob.nextText() == aliceExchange)
            try await bob.send(bobExchange)
            #expect(try await alice.nextText() == bobExchange)
            // Encrypted messages are opaque base64 to the relay.
            let ciphertext = Data((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }).base64EncodedString()
            try await expectForwarded(from: alice, to: bob, payload: ciphertext)
            try await expectForwarded(from: bob, to: alice, payload: ciphertext)
            // A kind the relay has never heard of is forwarded blind.
            let future = signalFrame(kind: "FILE_CHUNK", payload: "AAEC")
            try await alice.send(future)
            #expect(try await bob.nextText() == future)
            // Leaving tells the other peer.
            try await alice.close()
            try await alice.waitUntilEnded()
            try await bob.expect("PEER_LEFT")
        }
    }

    @Test("A third peer is refused with ROOM_FULL; it can use another room; the full room keeps working")
    func thirdPeerRefused() async throws {
        try await withRelay { relay in
            let (alice, bob) = try await joinedPair(relay, room: "FULL")
            let carol = try await TestWebSocket.connect(relay.url)
            try await carol.send(joinFrame("FULL"))
            try await carol.expect("ERROR", code: "ROOM_FULL")
            try await carol.send(joinFrame("OTHER"))
            try await carol.expect("JOINED")
            try await expectForwarded(from: alice, to: bob)
            try await expectForwarded(from: bob, to: alice)
            #expect(try await relay.metric(#"relay_rejections_total{reason="room_full"}"#) == 1)
        }
    }

    @Test("Malformed and invalid input gets a typed ERROR and the connection is kept")
    func malformedInput() async throws {
        try await withRelay { relay in
            let client = try await TestWebSocket.connect(relay.url)
            let cases: [(frame: String, code: String)] = [
                ("not json", "MALFORMED_JSON"),
                ("{\"type\":\"JOIN\",\"room\":\"A\"", "MALFORMED_JSON"),
                ("[1,2,3]", "MALFORMED_JSON"),
                (#"{"type":"JOIN"}"#, "MISSING_FIELD"),
                (#"{"type":"JOIN","room":"lower-case"}"#, "INVALID_ROOM"),
                (#"{"type":"JOIN","room":""}"#, "INVALID_ROOM"),
                (#"{"type":"JOIN","room":"\#(String(repeating: "A", count: 65))"}"#, "INVALID_ROOM"),
                (#"{"type":"JOIN","room":"A","extra":1}"#, "UNKNOWN_FIELD"),
                (#"{"type":"NOPE"}"#, "UNKNOWN_TYPE"),
                (#"{"type":"SIGNAL","kind":"MSG","payload":"aGk="}"#, "NOT_JOINED"),
                (#"{"type":"SIGNAL","kind":"MSG","payload":"***"}"#, "INVALID_BASE64"),
                (#"{"type":"SIGNAL","kind":"lower","payload":"aGk="}"#, "INVALID_KIND"),
            ]
            for (frame, code) in cases {
                try await client.send(frame)
                try await client.expect("ERROR", code: code)
            }
            // Bytes that are not UTF-8, and a binary frame.
            try await client.send(binary: [0xFF, 0xFE, 0x00])
            try await client.expect("ERROR", code: "MALFORMED_JSON")
            // After all that, the same connection still works.
            try await client.send(joinFrame("STILLHERE"))
            try await client.expect("JOINED")
            try await client.send(signalFrame(kind: "MSG", payload: "aGk="))
            try await client.expect("ERROR", code: "NO_PEER")
            #expect(try await relay.metric(#"relay_rejections_total{reason="malformed"}"#) ?? 0 >= 9)
        }
    }

    @Test("An oversized frame gets FRAME_TOO_LARGE and close 1009; other rooms keep working")
    func oversizedFrame() async throws {
        try await withRelay(["--frame-size-max-bytes", "1024", "--byte-burst", "4096"]) { relay in
            let (alice, bob) = try await joinedPair(relay, room: "SMALL")
            let mallory = try await TestWebSocket.connect(relay.url)
            try await mallory.send(joinFrame("BIG"))
            try await mallory.expect("JOINED")
            // Just under the cap is fine (it is a SIGNAL with no peer yet: NO_PEER).
            let fits = signalFrame(kind: "MSG", payload: String(repeating: "A", count: 900))
            try await mallory.send(fits)
            try await mallory.expect("ERROR", code: "NO_PEER")
            try await mallory.send(signalFrame(kind: "MSG", payload: String(repeating: "A", count: 2000)))
            let (code, texts) = try await mallory.untilClose()
            #expect(code == .messageTooLarge)
            #expect(texts.count == 1)
            #expect(try texts.first.map { try JSONMessage($0).code } == "FRAME_TOO_LARGE")
            try await expectForwarded(from: alice, to: bob)
            #expect(try await relay.metric(#"relay_rejections_total{reason="frame_too_large"}"#) == 1)
        }
    }

    @Test("A fragmented message is joined before the size check and the codec")
    func fragmentedMessage() async throws {
        try await withRelay { relay in
            let (alice, bob) = try await joinedPair(relay, room: "FRAG")
            let frame = signalFrame(kind: "MSG", payload: String(repeating: "QUJD", count: 100))
            let bytes = Array(frame.utf8)
            try await RawWebSocket.withConnection(relay.url) { raw in
                try await raw.send(joinFrame("FRAG2"))
                _ = try await raw.nextText()
                try await raw.sendFragmented(bytes, fragmentSize: 50)
                let answer = try JSONMessage(try await raw.nextText())
                #expect(answer.code == "NO_PEER", "the joined message was parsed as one SIGNAL: \(answer)")
            }
            try await alice.send(frame)
            #expect(try await bob.nextText() == frame)
        }
    }
}
