import ChatCore
import ChatTesting
@_spi(Simulation) @testable import RelayCore
import Testing

/// The binary form of a SIGNAL (`BinarySignal`, docs/PROTOCOL.md "Binary SIGNALs") and the
/// relay engine's handling of it: negotiated per connection, checked like a text SIGNAL, forwarded
/// as it is to a binary peer and in its text form to any other.
@Suite("Binary SIGNALs: codec and relay engine")
struct BinarySignalTests {
    typealias H = EngineHarness

    static let payloads: [[UInt8]] = [[], [0], [1, 2], [1, 2, 3], (0..<4097).map { UInt8(truncatingIfNeeded: $0) }]

    @Test("Binary and text forms agree: the text form is WireCodec's SIGNAL, and converts back")
    func forms() throws {
        for payload in Self.payloads {
            let signal = Signal(kind: .fileChunk, payload: payload)
            let binary = try #require(BinarySignal.encode(signal))
            #expect(binary.elementsEqual([6] + Array("FCHUNK".utf8) + payload))
            let text = try #require(BinarySignal.text(binary))
            #expect(text.elementsEqual(WireCodec.encode(ClientMessage.signal(signal))))
            #expect(BinarySignal.binary(fromText: text)?.elementsEqual(binary) == true)
            #expect(try BinarySignal.decodeRelayMessage(binary) == .signal(signal))
            #expect(binary.withUnsafeBytes { BinarySignal.textCount($0) } == text.count)
        }
        // A keyed SIGNAL, a payload-less one and a JOIN have no binary form.
        #expect(BinarySignal.encode(Signal(kind: .keyExchange, payload: [1], key: [2])) == nil)
        #expect(BinarySignal.encode(Signal(kind: .message)) == nil)
        #expect(BinarySignal.binary(fromText: WireCodec.encodeJoin(try RoomCode("ROOM1"), token: nil)) == nil)
    }

    @Test("Malformed binary SIGNALs are typed errors, never a crash")
    func malformed() {
        let cases: [([UInt8], WireError)] = [
            ([], .malformedBinarySignal),
            ([0, 65], .invalidKind),
            ([33] + [UInt8](repeating: 65, count: 40), .invalidKind),
            ([200], .invalidKind),
            ([5, 77, 83, 71], .malformedBinarySignal),
            ([3] + Array("msg".utf8), .invalidKind),
            ([2, 65, 0], .invalidKind),
        ]
        for (bytes, expected) in cases {
            #expect(throws: expected) { try BinarySignal.decodeRelayMessage(bytes) }
            #expect(BinarySignal.text(bytes) == nil)
            #expect(bytes.withUnsafeBytes { BinarySignal.textCount($0) } == nil)
        }
        // Well formed, unknown to a client: refused by the client, forwarded by the relay.
        #expect(throws: WireError.unknownKind("FUTURE")) { try BinarySignal.decodeRelayMessage([6] + Array("FUTURE".utf8)) }
        #expect(throws: WireError.frameTooLarge(size: 140_000, max: 131_072)) {
            try BinarySignal.decodeRelayMessage([3] + Array("MSG".utf8) + [UInt8](repeating: 0, count: 139_996))
        }
    }

    @Test("Relay: binary to a binary peer byte for byte, to a text peer as its text form, text to either as it is")
    func relayForwards() throws {
        var h = try H()
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        let b = h.connect(.ipv4(0x0A00_0002), binary: true)
        let c = h.connect(.ipv4(0x0A00_0003), binary: false)
        h.join(a, "ROOM1")
        h.join(b, "ROOM1")
        _ = h.actions()
        let frame = H.binarySignal(7, payloadBytes: 100)
        h.engine.receive(.binary(frame), from: a, now: h.now)
        #expect(h.actions() == [.forwardBinary(b, frame)])
        h.send(H.signal(8), from: b)
        #expect(h.actions() == [.forward(a, H.signal(8))])

        h.join(c, "ROOM2")
        let d = h.connect(.ipv4(0x0A00_0004), binary: true)
        h.join(d, "ROOM2")
        _ = h.actions()
        h.engine.receive(.binary(frame), from: d, now: h.now)
        #expect(h.actions() == [.forward(c, H.signal(7, payloadBytes: 100))])
        h.send(H.signal(9), from: c)
        #expect(h.actions() == [.forward(d, H.signal(9))])
        #expect(h.engine.counters.framesForwarded == 4)
    }

    @Test("Relay: malformed binary SIGNALs get typed ERRORs, room errors as for text, no negotiation: today's answer")
    func relayRefuses() throws {
        var h = try H()
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        h.engine.receive(.binary(H.binarySignal(1)), from: a, now: h.now)
        #expect(h.actions() == [.send(a, H.error(.notJoined))])
        h.join(a, "ROOM1")
        _ = h.actions()
        h.engine.receive(.binary(H.binarySignal(1)), from: a, now: h.now)
        #expect(h.actions() == [.send(a, H.error(.noPeer))])
        for (bytes, code) in [([UInt8](), RelayErrorCode.malformedJSON), ([0], .invalidKind), ([4, 65], .malformedJSON)] {
            h.engine.receive(.binary(bytes), from: a, now: h.now)
            guard case let .send(to, .error(got, _))? = h.actions().first else {
                Issue.record("no ERROR for \(bytes)")
                continue
            }
            #expect(to == a && got == code, "\(bytes)")
        }
        let legacy = h.connect(.ipv4(0x0A00_0002), binary: false)
        h.join(legacy, "ROOM1")
        _ = h.actions()
        h.engine.receive(.binary(H.binarySignal(1)), from: legacy, now: h.now)
        guard case let .send(to, .error(code, _))? = h.actions().first else {
            Issue.record("no ERROR for a binary frame without negotiation")
            return
        }
        #expect(to == legacy && code == .malformedJSON)
    }

    @Test("Relay: binary SIGNALs held for the rate keep their form and order with text")
    func heldKeepForm() throws {
        var h = try H { $0.messageBurst = 2; $0.messagesPerSecond = 1; $0.pairedMessageBurst = 2; $0.pairedMessagesPerSecond = 1 }
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        let b = h.connect(.ipv4(0x0A00_0002), binary: true)
        let c = h.connect(.ipv4(0x0A00_0003), binary: false)
        _ = c
        h.join(a, "ROOM1")
        h.advance(.seconds(3))
        h.join(b, "ROOM1")
        h.advance(.seconds(3))
        _ = h.actions()
        let frames: [InboundFrame<[UInt8]>] = [
            .binary(H.binarySignal(1)), .text(H.signal(2)), .binary(H.binarySignal(3)), .binary(H.binarySignal(4)),
        ]
        for frame in frames { h.engine.receive(frame, from: a, now: h.now) }
        h.advance(.seconds(5))
        let forwarded = h.actions().filter {
            switch $0 {
            case .forward, .forwardBinary: true
            default: false
            }
        }
        #expect(forwarded == [
            .forwardBinary(b, H.binarySignal(1)), .forward(b, H.signal(2)), .forwardBinary(b, H.binarySignal(3)),
            .forwardBinary(b, H.binarySignal(4)),
        ])
    }

    @Test("Relay: a binary SIGNAL is measured by its text form against the frame cap")
    func textFormCap() throws {
        var h = try H { $0.frameSizeMaxBytes = 4096; $0.byteBurst = 1 << 20 }
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        h.join(a, "ROOM1")
        _ = h.actions()
        h.engine.receive(.binary(H.binarySignal(1, payloadBytes: 3040)), from: a, now: h.now)
        #expect(h.actions().first == .close(a, .messageTooLarge, error: .frameTooLarge, disconnectWhenWritten: false))
    }

    @Test("Attack review: while the relay closes, an oversized binary SIGNAL is one more frame discarded (reads pause), not a new answer")
    func oversizedWhileClosing() throws {
        var h = try H { $0.frameSizeMaxBytes = 4096; $0.byteBurst = 1 << 20 }
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        h.join(a, "ROOM1")
        _ = h.actions()
        // Raw 3,046 bytes, under the cap; its text form over it.
        let oversized = H.binarySignal(1, payloadBytes: 3040)
        h.engine.receive(.binary(oversized), from: a, now: h.now)
        #expect(h.actions().first == .close(a, .messageTooLarge, error: .frameTooLarge, disconnectWhenWritten: false))
        for _ in 0...RelayLimits.closingFramesMax { h.engine.receive(.binary(oversized), from: a, now: h.now) }
        #expect(h.actions() == [.pauseReading(a)])
        #expect(h.engine.counters.rejections(.frameTooLarge) == 1)
    }

    @Test("Attack review: a binary SIGNAL is charged its text form's size, so binary buys no more bytes than text")
    func chargedByTextForm() throws {
        var h = try H {
            $0.frameSizeMaxBytes = 4096; $0.byteBurst = 4096; $0.bytesPerSecond = 1
            $0.pairedByteBurst = 4096; $0.pairedBytesPerSecond = 1
        }
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        let b = h.connect(.ipv4(0x0A00_0002), binary: false)
        h.join(a, "ROOM1")
        h.join(b, "ROOM1")
        _ = h.actions()
        // Raw 1,605 bytes each (two fit the 4,096-byte burst), text form over 2,100 (two do not).
        let frame = H.binarySignal(1, payloadBytes: 1600)
        h.engine.receive(.binary(frame), from: a, now: h.now)
        h.engine.receive(.binary(frame), from: a, now: h.now)
        let actions = h.actions()
        #expect(actions.filter { if case .forward = $0 { true } else { false } }.count == 1)
        #expect(actions.contains { if case .send(a, .error(code: .rateLimited, message: _)) = $0 { true } else { false } })
    }

    @Test("Attack review: a binary SIGNAL from another node that is malformed or over this node's cap is dropped for any client")
    func clusterChecksBinary() throws {
        var h = try H.cluster { $0.frameSizeMaxBytes = 4096; $0.byteBurst = 1 << 20 }
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        let remote = ClusterPeer(node: "n2.00000002", connection: 7)
        _ = try RelayEngineClusterTests.seat(&h, a, partner: remote)
        for frame in [[0, 1], [40, 65], H.binarySignal(1, payloadBytes: 3040)] as [[UInt8]] {
            h.engine.clusterSignal(to: a.value, from: remote, frame, binary: true, now: h.now)
            #expect(h.actions().isEmpty, "\(frame.prefix(4))")
        }
        #expect(h.engine.counters.clusterSignalsDropped == 3)
        h.engine.clusterSignal(to: a.value, from: remote, H.binarySignal(2), binary: true, now: h.now)
        #expect(h.actions() == [.forwardBinary(a, H.binarySignal(2))])
    }

    @Test("Cluster: a binary SIGNAL goes to the mate's node in its form; one from a node is converted for a text client")
    func cluster() throws {
        var h = try H.cluster()
        let a = h.connect(.ipv4(0x0A00_0001), binary: true)
        let b = h.connect(.ipv4(0x0A00_0002), binary: false)
        let remote = ClusterPeer(node: "n2.00000002", connection: 7)
        for id in [a, b] { _ = try RelayEngineClusterTests.seat(&h, id, partner: remote, room: "ROOM\(id.value)") }
        let frame = H.binarySignal(5, payloadBytes: 10)
        h.engine.receive(.binary(frame), from: a, now: h.now)
        #expect(h.actions() == [.cluster(.signal(to: remote, from: a, frame, binary: true))])
        h.engine.clusterSignal(to: a.value, from: remote, frame, binary: true, now: h.now)
        #expect(h.actions() == [.forwardBinary(a, frame)])
        h.engine.clusterSignal(to: b.value, from: remote, frame, binary: true, now: h.now)
        #expect(h.actions() == [.forward(b, H.signal(5, payloadBytes: 10))])
        // A binary frame from a node that is no SIGNAL: dropped for a text client, and counted.
        h.engine.clusterSignal(to: b.value, from: remote, [0, 1], binary: true, now: h.now)
        #expect(h.actions().isEmpty)
        #expect(h.engine.counters.clusterSignalsDropped == 1)
    }

    @Test("Cluster wire: the B header carries a binary SIGNAL")
    func clusterWire() {
        let from = ClusterPeer(node: "n1.0a", connection: 5)
        let to = ClusterPeer(node: "n2.0b", connection: 7)
        let header = ClusterWire.signalHeader(to: to, from: from, binary: true)
        #expect(header.first == UInt8(ascii: "B"))
        let frame = H.binarySignal(1)
        #expect(ClusterWire.parse(header + frame) == .signal(to: 7, from: from, bodyOffset: header.count, binary: true))
        let text = ClusterWire.signalHeader(to: to, from: from)
        #expect(ClusterWire.parse(text + H.signal(1)) == .signal(to: 7, from: from, bodyOffset: text.count, binary: false))
    }
}
