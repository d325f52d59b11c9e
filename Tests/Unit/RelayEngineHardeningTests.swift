import ChatCore
@_spi(Simulation) @testable import RelayCore
import Testing

/// Relay hardening v2 (issue 14) on the sans-IO engine: every frame kind charged, the connection's
/// own backpressure, one pong in flight, protocol errors, the JOIN deadline, and admission (IPv6
/// tiers, connections without a room, `--trust-proxy`).
@Suite("Relay engine: hardening (frames, own backpressure, errors, admission)")
struct RelayEngineHardeningTests {
    typealias H = EngineHarness
    static let addressA = RelayAddress.ipv4(0xC000_0201)

    // MARK: Every frame is charged

    @Test("Pings, pongs, fragments and binary frames are charged: over the burst none is acted on, reads pause until the bucket is full")
    func everyFrameKindCharged() throws {
        var h = try H {
            $0.messagesPerSecond = 10
            $0.messageBurst = 4
        }
        let a = h.connect()
        h.engine.receive(.ping([1]), from: a, now: h.now)
        h.engine.pongWritten(a, now: h.now)
        h.engine.receive(.pong, from: a, now: h.now)
        h.engine.receive(.fragment, from: a, now: h.now)
        h.engine.receive(.binary(H.bytes(0)), from: a, now: h.now)  // the burst's fourth token
        h.engine.receive(.ping([2]), from: a, now: h.now)
        h.engine.receive(.binary(H.bytes(0)), from: a, now: h.now)
        h.engine.receive(.fragment, from: a, now: h.now)
        let binaryAnswer = RelayMessage.error(
            code: .malformedJSON, message: "binary frames are not part of the protocol; send JSON text")
        // No pong for the second ping, no ERROR for the second binary frame: a flood of either
        // costs the relay no writes.
        #expect(h.actions() == [
            .pong(a, [1]), .send(a, binaryAnswer), .send(a, H.error(.rateLimited)), .pauseReading(a),
        ])
        #expect(h.engine.counters.rejections(.rateLimited) == 3)
        // Reads resume once the bucket is full again (4 tokens at 10/s), not at its first token:
        // a flooder is read one batch per burst's worth of refill.
        #expect(h.engine.pollTimeout() == h.now.advanced(by: .milliseconds(400)))
        h.advance(.milliseconds(399))
        #expect(h.actions().isEmpty)
        h.advance(.milliseconds(1))
        #expect(h.actions() == [.resumeReading(a)])
        h.engine.receive(.ping([3]), from: a, now: h.now)
        #expect(h.actions() == [.pong(a, [3])])
    }

    @Test("A binary frame's bytes and a ping's payload are charged to the byte bucket")
    func controlBytesCharged() throws {
        var h = try H {
            $0.frameSizeMaxBytes = 256
            $0.bytesPerSecond = 100
            $0.byteBurst = 256
        }
        let a = h.connect()
        h.engine.receive(.binary(H.bytes(200)), from: a, now: h.now)
        h.engine.receive(.ping([UInt8](repeating: 7, count: 100)), from: a, now: h.now)
        let actions = h.actions()
        #expect(actions.count == 3 && actions.suffix(2) == [.send(a, H.error(.rateLimited)), .pauseReading(a)])
    }

    // MARK: Own backpressure and pongs

    @Test("A connection whose own outbound queue is over the mark is not read until it drains, and gets no idle reprieve")
    func ownBackpressure() throws {
        var h = try H {
            $0.pingIntervalSeconds = 2
            $0.idleTimeoutSeconds = 5
        }
        let a = h.connect()
        h.join(a, "ROOM1")
        _ = h.actions()
        h.engine.writabilityChanged(a, isWritable: false, now: h.now)
        #expect(h.actions() == [.pauseReading(a)])
        h.engine.writabilityChanged(a, isWritable: true, now: h.now)
        #expect(h.actions() == [.resumeReading(a)])
        // A client that never reads: it is pinged (into its full queue) and closed at the idle
        // timeout like any silent client. (A sender paused for its *peer's* queue is spared.)
        h.engine.writabilityChanged(a, isWritable: false, now: h.now)
        _ = h.actions()
        h.advance(.seconds(5))
        #expect(h.actions() == [
            .ping(a), .ping(a), .close(a, .policyViolation, error: .idleTimeout, disconnectWhenWritten: false),
            .resumeReading(a),
        ])
    }

    @Test("One pong in flight: pings read meanwhile owe one pong, with the latest payload")
    func onePongInFlight() throws {
        var h = try H()
        let a = h.connect()
        h.engine.receive(.ping([1]), from: a, now: h.now)
        #expect(h.actions() == [.pong(a, [1])])
        for marker: UInt8 in 2...5 { h.engine.receive(.ping([marker]), from: a, now: h.now) }
        #expect(h.actions().isEmpty, "four pings while the first pong is unwritten: no pong queued behind it")
        h.engine.pongWritten(a, now: h.now)
        #expect(h.actions() == [.pong(a, [5])])
        h.engine.pongWritten(a, now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.receive(.ping([6]), from: a, now: h.now)
        #expect(h.actions() == [.pong(a, [6])])
    }

    // MARK: Protocol errors

    @Test("Protocol errors: the one past the limit closes with TOO_MANY_ERRORS and 1008; NO_PEER and ROOM_FULL do not count")
    func protocolErrors() throws {
        var h = try H { $0.protocolErrorsMax = 3 }
        let (a, b) = h.pair()
        for _ in 0..<3 { h.engine.receive(.binary(H.bytes(1)), from: a, now: h.now) }
        #expect(h.actions().count == 3)
        h.send(Array(#"{"type":"SIGNAL"}"#.utf8), from: a)
        #expect(h.actions() == [
            .send(a, .error(code: .missingField, message: #"missing field "kind""#)),
            .close(a, .policyViolation, error: .tooManyErrors, disconnectWhenWritten: false), .send(b, .peerLeft),
        ])
        #expect(h.engine.counters.rejections(.tooManyErrors) == 1)
        // b is alone now: its SIGNALs get NO_PEER, a race any client meets; a third peer's JOINs
        // get ROOM_FULL. Neither is a protocol error.
        for _ in 0..<10 { h.send(H.signal(1), from: b) }
        let c = h.connect(.ipv4(3))
        let d = h.connect(.ipv4(4))
        h.join(c, "ROOM1")
        for _ in 0..<10 { h.join(d, "ROOM1") }
        #expect(!h.actions().contains { if case .close = $0 { true } else { false } })
    }

    @Test("While closing, the relay reads a client's frames only up to a bound, then stops until the close times out")
    func closingReadsBounded() throws {
        var h = try H()
        let a = h.connect()
        h.engine.fault(.frameTooLarge, on: a, now: h.now)
        _ = h.actions()
        for _ in 0..<RelayLimits.closingFramesMax { h.engine.receive(.binary(H.bytes(0)), from: a, now: h.now) }
        #expect(h.actions().isEmpty)
        h.send(H.signal(1), from: a)
        h.engine.receive(.ping([1]), from: a, now: h.now)
        #expect(h.actions() == [.pauseReading(a)], "once")
        h.advance(.seconds(RelayLimits.closeHandshakeTimeoutSeconds))
        #expect(h.actions() == [.disconnect(a)])
    }

    // MARK: JOIN deadline

    @Test("A connection that joins no room within the JOIN deadline gets JOIN_TIMEOUT and 1008; ROOM_FULL does not stop the clock")
    func joinDeadline() throws {
        var h = try H { $0.joinTimeoutSeconds = 5 }
        let idle = h.connect(.ipv4(1))
        let (a, b) = h.pair()
        let refused = h.connect(.ipv4(3))
        h.join(refused, "ROOM1")
        #expect(h.actions() == [.send(refused, H.error(.roomFull))])
        h.advance(.milliseconds(4999))
        #expect(h.actions().isEmpty)
        h.advance(.milliseconds(1))
        #expect(h.actions() == [
            .close(idle, .policyViolation, error: .joinTimeout, disconnectWhenWritten: false),
            .close(refused, .policyViolation, error: .joinTimeout, disconnectWhenWritten: false),
        ])
        #expect(h.engine.counters.rejections(.joinTimeout) == 2)
        h.advance(.seconds(30))
        #expect(!h.actions().contains { if case .close = $0 { true } else { false } }, "\(a) and \(b) joined in time")
    }

    // MARK: Admission

    @Test("Connections without a room are capped per address; joining a room frees the slot")
    func roomlessCap() throws {
        var h = try H { $0.roomlessConnectionsPerAddressMax = 2 }
        let first = h.connect(Self.addressA)
        _ = h.connect(Self.addressA)
        let refused = h.accept(Self.addressA)
        #expect(refused.disposition == .refuse(.tooManyConnections, .roomlessConnectionsMax))
        h.engine.closed(refused.id, now: h.now)
        h.join(first, "ROOM1")
        #expect(h.accept(Self.addressA).disposition == .serve)
        #expect(h.accept(Self.addressA).disposition == .refuse(.tooManyConnections, .roomlessConnectionsMax))
    }

    /// Issue 14's (c): one IPv6 /64 is one address; the /56 and the /48 around it have caps of
    /// their own, so a /56 (256 /64s) or a /48 (65,536) cannot take the relay's global cap.
    @Test("IPv6 admission: per /64, per /56 and per /48 caps on synthetic addresses")
    func ipv6Tiers() throws {
        var h = try H {
            $0.connectionsPerAddressMax = 2
            $0.connectionsPerIPv6Prefix56Max = 3
            $0.connectionsPerIPv6Prefix48Max = 5
            $0.roomlessConnectionsPerAddressMax = 2
        }
        // 2001:db8:1::/48 holds the /56s 2001:db8:1::/56 (its /64s :0 and :1) and 2001:db8:1:100::/56.
        let a64 = 0x2001_0DB8_0001_0000 as UInt64, b64 = a64 | 0x01, c64 = a64 | 0x100, d64 = a64 | 0x200
        let otherSlash48 = 0x2001_0DB8_0002_0000 as UInt64
        var low: UInt64 = 0
        func admit(_ high: UInt64) -> Acceptance.Disposition {
            low &+= 0x9E37_79B9_7F4A_7C15  // any interface identifier: only the prefix counts
            let acceptance = h.accept(.ipv6(high: high, low: low))
            // A refused connection is closed once told why; take it off the counts at once.
            if acceptance.disposition != .serve { h.engine.closed(acceptance.id, now: h.now) }
            return acceptance.disposition
        }
        let perAddress = Acceptance.Disposition.refuse(.tooManyConnections, .connectionsPerAddressMax)
        let perPrefix = Acceptance.Disposition.refuse(.tooManyConnections, .connectionsPerPrefixMax)
        let firstOfA = h.accept(.ipv6(high: a64, low: 1))
        #expect(firstOfA.disposition == .serve)
        #expect(admit(a64) == .serve)
        #expect(admit(a64) == perAddress, "/64: two")
        #expect(admit(b64) == .serve)
        #expect(admit(b64) == perPrefix, "/56: three, though this /64 has one")
        #expect(admit(c64) == .serve)
        #expect(admit(c64) == .serve)
        #expect(admit(d64) == perPrefix, "/48: five, though this /56 has none")
        #expect(admit(otherSlash48) == .serve, "another /48 has its own budget")
        h.engine.closed(firstOfA.id, now: h.now)
        #expect(admit(d64) == .serve, "a close frees a place in every tier")
        let keys = RelayAddress.ipv6(high: c64 | 0x42, low: 7).limitsKey
        #expect(keys.description == "2001:db8:1:142::/64")
        #expect(keys.widerPrefixes.map(\.description) == ["2001:db8:1:100::/56", "2001:db8:1:0::/48"])
        #expect(RelayAddress.ipv4(0x0A00_0001).limitsKey.widerPrefixes.isEmpty)
    }

    @Test("--trust-proxy shared-address: no per-address cap or join rate (every client is the proxy)")
    func sharedAddress() throws {
        var h = try H {
            $0.trustProxy = .sharedAddress
            $0.connectionsPerAddressMax = 1
            $0.roomlessConnectionsPerAddressMax = 1
            $0.joinsPerAddressPerMinute = 1
        }
        let proxy = RelayAddress.ipv4(0x7F00_0001)
        let ids = (0..<6).map { _ in h.connect(proxy) }
        for (index, id) in ids.enumerated() { h.join(id, "ROOM\(index)") }
        #expect(h.actions().allSatisfy { if case .send(_, .joined) = $0 { true } else { false } })
        #expect(h.engine.counters.rejections(.joinRateLimited) == 0)
    }

    @Test("--trust-proxy proxy-protocol: the caps count the address the PROXY header names; LOCAL is not counted; no header, no service")
    func proxyProtocol() throws {
        var h = try H {
            $0.trustProxy = .proxyProtocol
            $0.connectionsPerAddressMax = 1
        }
        let proxy = RelayAddress.ipv4(0x7F00_0001)
        let first = h.accept(proxy)
        #expect(first.disposition == .serve)
        h.engine.proxyHeaderRead(first.id, client: Self.addressA, now: h.now)
        h.engine.upgraded(first.id, now: h.now)
        let second = h.accept(proxy)
        h.engine.proxyHeaderRead(second.id, client: Self.addressA, now: h.now)
        h.engine.upgraded(second.id, now: h.now)
        #expect(h.actions() == [
            .close(second.id, .tryAgainLater, error: .tooManyConnections, disconnectWhenWritten: false)
        ])
        for client in [RelayAddress.ipv4(0xC000_0202), nil, nil] {
            let other = h.accept(proxy)
            h.engine.proxyHeaderRead(other.id, client: client, now: h.now)
            h.engine.upgraded(other.id, now: h.now)
        }
        #expect(h.actions().isEmpty, "another client and two health checks (LOCAL) are served")
        let bare = h.accept(proxy)
        h.engine.upgraded(bare.id, now: h.now)
        #expect(h.actions() == [.disconnect(bare.id)])
        h.engine.fault(.badProxyHeader, on: h.accept(proxy).id, now: h.now)
        #expect(h.engine.counters.rejections(.badProxyHeader) == 2)
    }

    @Test("Limits: the new flags are validated and named")
    func validation() {
        func reason(_ configure: (inout RelayLimits) -> Void) -> String? {
            var limits = RelayLimits()
            configure(&limits)
            do throws(InvalidRelaySetting) {
                try limits.validate()
                return nil
            } catch {
                return error.flag
            }
        }
        #expect(reason { $0.joinTimeoutSeconds = 0 } == "join-timeout-seconds")
        #expect(reason { $0.seatGraceSeconds = -1 } == "seat-grace-seconds")
        #expect(reason { $0.seatGraceSeconds = 0 } == nil)
        #expect(reason { $0.protocolErrorsMax = 0 } == "protocol-errors-max")
        #expect(reason { $0.connectionsPerIPv6Prefix56Max = 0 } == "connections-per-ipv6-56-max")
        #expect(reason { $0.connectionsPerIPv6Prefix48Max = 0 } == "connections-per-ipv6-48-max")
        #expect(reason { $0.roomlessConnectionsPerAddressMax = 0 } == "roomless-connections-per-address-max")
        #expect(reason {
            $0.connectionsMax = 10
            $0.connectionsPerAddressMax = 10
        } == nil, "the tiers need not nest under a smaller global cap")
    }
}
