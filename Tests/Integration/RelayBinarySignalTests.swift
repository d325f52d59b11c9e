import Foundation
import NIOWebSocket
import Testing

/// Binary SIGNALs (docs/PROTOCOL.md, "Binary SIGNALs") through a real relay process: the
/// `securechat.binary` subprotocol negotiated at the upgrade, binary frames forwarded byte for byte
/// between clients that negotiated it and converted to the text form for one that did not, typed
/// errors for malformed ones, and today's answer to a binary frame without the negotiation.
/// The frames are built here by hand from the specification, not with the code under test.
@Suite("relay: binary SIGNALs, negotiated, converted for text-only peers")
struct RelayBinarySignalTests {
    static let subprotocol = "securechat.binary"

    /// The binary form: kind length, kind, payload.
    static func binary(kind: String, _ payload: [UInt8]) -> [UInt8] {
        [UInt8(kind.utf8.count)] + Array(kind.utf8) + payload
    }

    /// The text form the relay makes of it, as a text client writes a SIGNAL (no spaces).
    static func text(kind: String, _ payload: [UInt8]) -> String {
        #"{"type":"SIGNAL","kind":"\#(kind)","payload":"\#(Data(payload).base64EncodedString())"}"#
    }

    /// Payloads of every size class: empty, one byte, the three base64 remainders, a file chunk.
    static let payloads: [[UInt8]] = [
        [], [0], [1, 2], [3, 4, 5], (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) },
        // The largest whose text form fits the default 128 KiB cap (a sealed 94 KiB file chunk is smaller).
        (0..<98_268).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) },
    ]

    /// A binary client and a text-only one in `room`, joined and introduced.
    static func mixedPair(_ first: String, _ second: String, room: String) async throws
        -> (binary: TestWebSocket, legacy: TestWebSocket)
    {
        let binary = try await TestWebSocket.connect(first, subprotocols: [subprotocol])
        let legacy = try await TestWebSocket.connect(second)
        #expect(binary.subprotocol == subprotocol, "the relay did not select securechat.binary")
        #expect(legacy.subprotocol == nil)
        try await introduce(binary, legacy, room: room)
        return (binary, legacy)
    }

    /// Two binary clients in `room`.
    static func binaryPair(_ first: String, _ second: String, room: String) async throws
        -> (TestWebSocket, TestWebSocket)
    {
        let alice = try await TestWebSocket.connect(first, subprotocols: [subprotocol])
        let bob = try await TestWebSocket.connect(second, subprotocols: ["other.protocol", subprotocol])
        #expect(alice.subprotocol == subprotocol && bob.subprotocol == subprotocol)
        try await introduce(alice, bob, room: room)
        return (alice, bob)
    }

    /// Binary from the binary client arrives as its text form; text from the text client arrives
    /// as it was sent.
    static func expectInterop(binary: TestWebSocket, legacy: TestWebSocket) async throws {
        for payload in payloads {
            try await binary.send(binary: Self.binary(kind: "FCHUNK", payload))
            let received = try await legacy.nextText()
            #expect(received == text(kind: "FCHUNK", payload), "text form of a \(payload.count)-byte payload")
            let decoded = try JSONMessage(received).object["payload"] as? String
            #expect(decoded.flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) }?.elementsEqual(payload) == true)
        }
        for payload in payloads.prefix(5) {
            // Spacing and all: a text SIGNAL is never re-encoded, whatever the receiver negotiated.
            let frame = signalFrame(kind: "MSG", payload: Data(payload).base64EncodedString())
            try await legacy.send(frame)
            #expect(try await binary.nextText() == frame)
        }
    }

    /// Binary both ways, byte for byte.
    static func expectBinaryForwarded(_ alice: TestWebSocket, _ bob: TestWebSocket) async throws {
        for payload in payloads {
            let frame = binary(kind: "FCHUNK", payload)
            try await alice.send(binary: frame)
            #expect(try await bob.nextBinary().elementsEqual(frame), "a \(payload.count)-byte payload to bob")
            try await bob.send(binary: frame)
            #expect(try await alice.nextBinary().elementsEqual(frame), "a \(payload.count)-byte payload to alice")
        }
    }

    @Test("A binary client and a text-only client in one room: binary arrives as its text form, text as sent")
    func binaryAndLegacyInteroperate() async throws {
        try await withRelay { relay in
            let (binary, legacy) = try await Self.mixedPair(relay.url, relay.url, room: "MIXED")
            try await Self.expectInterop(binary: binary, legacy: legacy)
            #expect(try await relay.metric("relay_binary_signals_received_total") == Double(Self.payloads.count))
            #expect(try await relay.metric("relay_signals_converted_total") == Double(Self.payloads.count))
        }
    }

    @Test("Two binary clients: binary SIGNALs forwarded byte for byte both ways")
    func twoBinaryClients() async throws {
        try await withRelay { relay in
            let (alice, bob) = try await Self.binaryPair(relay.url, relay.url, room: "BINARY")
            try await Self.expectBinaryForwarded(alice, bob)
            #expect(try await relay.metric("relay_binary_signals_received_total") == Double(2 * Self.payloads.count))
            #expect(try await relay.metric("relay_signals_converted_total") ?? 0 == 0)
        }
    }

    @Test("Malformed binary SIGNALs get typed ERRORs and the connection keeps working")
    func malformedBinary() async throws {
        try await withRelay { relay in
            let (alice, bob) = try await Self.binaryPair(relay.url, relay.url, room: "BADBIN")
            let cases: [(frame: [UInt8], code: String)] = [
                ([], "MALFORMED_JSON"),
                ([0, 1, 2], "INVALID_KIND"),
                ([33] + Array(repeating: UInt8(ascii: "A"), count: 40), "INVALID_KIND"),
                ([5] + Array("MSG".utf8), "MALFORMED_JSON"),
                ([3] + Array("msg".utf8) + [1], "INVALID_KIND"),
                ([4] + Array("M SG".utf8), "INVALID_KIND"),
            ]
            for (frame, code) in cases {
                try await alice.send(binary: frame)
                try await alice.expect("ERROR", code: code)
            }
            // Nothing reached the peer, and both still work.
            let good = Self.binary(kind: "MSG", [9, 8, 7])
            try await alice.send(binary: good)
            #expect(try await bob.nextBinary() == good)
            try await bob.send(binary: good)
            #expect(try await alice.nextBinary() == good)
        }
    }

    @Test("Binary SIGNALs outside a pair: NOT_JOINED before a JOIN, NO_PEER alone, as for text")
    func roomErrors() async throws {
        try await withRelay { relay in
            let alone = try await TestWebSocket.connect(relay.url, subprotocols: [Self.subprotocol])
            try await alone.send(binary: Self.binary(kind: "MSG", [1]))
            try await alone.expect("ERROR", code: "NOT_JOINED")
            try await alone.send(joinFrame("ALONE"))
            try await alone.expect("JOINED")
            try await alone.send(binary: Self.binary(kind: "MSG", [1]))
            try await alone.expect("ERROR", code: "NO_PEER")
        }
    }

    @Test("A binary frame without the negotiation keeps today's answer: MALFORMED_JSON, nothing forwarded")
    func binaryWithoutNegotiation() async throws {
        try await withRelay { relay in
            let (alice, bob) = try await joinedPair(relay, room: "NONEG")
            #expect(alice.subprotocol == nil)
            try await alice.send(binary: Self.binary(kind: "MSG", [1, 2, 3]))
            try await alice.expect("ERROR", code: "MALFORMED_JSON")
            // The next thing the peer gets is this, not the binary frame.
            try await expectForwarded(from: alice, to: bob)
        }
    }

    @Test("A binary SIGNAL whose text form is over the frame cap is refused as a text frame that size")
    func textFormOverCap() async throws {
        try await withRelay(["--frame-size-max-bytes", "4096"]) { relay in
            let (alice, bob) = try await Self.binaryPair(relay.url, relay.url, room: "CAP")
            // 3040 bytes: 4056 in base64 and 43 of JSON around it, 4099 in all, over 4096.
            let fits = Self.binary(kind: "MSG", [UInt8](repeating: 1, count: 2900))
            try await alice.send(binary: fits)
            #expect(try await bob.nextBinary() == fits)
            try await alice.send(binary: Self.binary(kind: "MSG", [UInt8](repeating: 1, count: 3040)))
            let (code, texts) = try await alice.untilClose()
            #expect(code == .messageTooLarge)
            #expect(texts.contains { $0.contains("FRAME_TOO_LARGE") }, "\(texts)")
        }
    }
}

/// Binary SIGNALs across two cluster nodes over a real Redis: the forwarded SIGNAL carries its form,
/// so the receiving node converts it only for a text-only client.
@Suite("Cluster relay: binary SIGNALs across nodes", .serialized)
struct RelayClusterBinarySignalTests {
    @Test("Across two nodes: binary to a text-only client arrives as text; binary to binary, byte for byte")
    func acrossNodes() async throws {
        try await withCluster(nodes: 2) { _, nodes in
            let (binary, legacy) = try await RelayBinarySignalTests.mixedPair(
                nodes[0].url, nodes[1].url, room: uniqueRoom("BIN"))
            try await RelayBinarySignalTests.expectInterop(binary: binary, legacy: legacy)
            let (alice, bob) = try await RelayBinarySignalTests.binaryPair(
                nodes[0].url, nodes[1].url, room: uniqueRoom("BIN"))
            try await RelayBinarySignalTests.expectBinaryForwarded(alice, bob)
        }
    }
}
