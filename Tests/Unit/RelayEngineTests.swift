import ChatTesting
import ChatCore
@_spi(Simulation) @testable import RelayCore
import Testing

/// RelayEngine on synthetic inputs and a hand-driven clock: every decision the relay makes,
/// without a socket. (Tests/Integration/Relay*.swift check the same rules through the real binary.)
@Suite("Relay engine (sans-IO policy)")
struct RelayEngineTests {
    typealias H = EngineHarness
    static let addressA = RelayAddress.ipv4(0xC000_0201)
    static let addressB = RelayAddress.ipv4(0xC000_0202)

    // MARK: Admission

    @Test("Global cap: refused with TOO_MANY_CONNECTIONS and 1013 after the upgrade; past the slack, dropped")
    func globalCap() throws {
        var h = try H {
            $0.connectionsMax = 2
            $0.connectionsPerAddressMax = 2
        }
        _ = h.connect(.ipv4(1))
        _ = h.connect(.ipv4(2))
        let refused = h.accept(.ipv4(3))
        #expect(refused.disposition == .refuse(.tooManyConnections, .connectionsMax))
        #expect(h.actions().isEmpty, "told only once the upgrade is done")
        h.engine.upgraded(refused.id, now: h.now)
        #expect(h.actions() == [
            .close(refused.id, .tryAgainLater, error: .tooManyConnections, disconnectWhenWritten: false)
        ])
        #expect(h.engine.counters.rejections(.connectionsMax) == 1)
        for index in 0..<(RelayLimits.refusalSlack - 1) {
            #expect(h.accept(.ipv4(100 + UInt32(index))).disposition == .refuse(.tooManyConnections, .connectionsMax))
        }
        #expect(h.accept(.ipv4(9999)).disposition == .drop)
        #expect(h.engine.counters.connectionsOpen == 2 + RelayLimits.refusalSlack + 1)
        #expect(h.engine.counters.connectionsAccepted == 2 + RelayLimits.refusalSlack + 1)
        #expect(h.engine.counters.webSocketsOpen == 2)
    }

    @Test("Per-address cap: an IPv6 /64 is one address; a close frees the slot")
    func perAddressCap() throws {
        var h = try H { $0.connectionsPerAddressMax = 1 }
        let first = h.connect(.ipv6(high: 0x2001_0DB8_0001_0002, low: 1))
        let sameSlash64 = h.accept(.ipv6(high: 0x2001_0DB8_0001_0002, low: 0xFFFF))
        #expect(sameSlash64.disposition == .refuse(.tooManyConnections, .connectionsPerAddressMax))
        #expect(h.accept(.ipv6(high: 0x2001_0DB8_0001_0003, low: 1)).disposition == .serve)
        h.engine.upgraded(sameSlash64.id, now: h.now)
        #expect(h.engine.counters.rejections(.connectionsPerAddressMax) == 1)
        h.engine.closed(sameSlash64.id, now: h.now)
        h.engine.closed(first, now: h.now)
        #expect(h.accept(.ipv6(high: 0x2001_0DB8_0001_0002, low: 7)).disposition == .serve)
    }

    @Test("A connection refused before it was counted under its address is not taken off that address's count")
    func uncountedRefusalDoesNotUncount() throws {
        var h = try H {
            $0.connectionsMax = 2
            $0.connectionsPerAddressMax = 1
        }
        _ = h.connect(Self.addressA)
        let other = h.connect(Self.addressB)
        let overGlobal = h.accept(Self.addressA)
        #expect(overGlobal.disposition == .refuse(.tooManyConnections, .connectionsMax))
        h.engine.closed(overGlobal.id, now: h.now)
        h.engine.closed(other, now: h.now)
        // A's first connection is still open: a second one is over A's cap. (The relay before
        // RelayEngine subtracted the refused connection from A's count here, and trapped on
        // "more closes than accepts for an address" when A's first connection closed.)
        #expect(h.accept(Self.addressA).disposition == .refuse(.tooManyConnections, .connectionsPerAddressMax))
    }

    @Test("Join rate per address: JOIN_RATE_LIMITED past the budget, a repeated JOIN is free, the bucket refills")
    func joinRate() throws {
        var h = try H {
            $0.joinsPerAddressPerMinute = 2
            $0.joinTimeoutSeconds = 60  // c waits 30 s without a room
        }
        let (a, b, c) = (h.connect(Self.addressA), h.connect(Self.addressA), h.connect(Self.addressA))
        h.join(a, "ONE")
        h.join(a, "ONE")
        h.join(b, "TWO")
        let one = try RoomCode("ONE")
        let two = try RoomCode("TWO")
        #expect(h.actions() == [
            .send(a, .joined(room: one, peers: 1)), .send(a, .joined(room: one, peers: 1)),
            .send(b, .joined(room: two, peers: 1)),
        ])
        h.join(c, "THREE")
        #expect(h.actions() == [.send(c, H.error(.joinRateLimited))])
        #expect(h.engine.counters.rejections(.joinRateLimited) == 1)
        // Two joins a minute: one more after 30 s.
        h.advance(.seconds(30))
        _ = h.actions()
        h.join(c, "THREE")
        #expect(h.actions() == [.send(c, .joined(room: try RoomCode("THREE"), peers: 1))])
    }

    // MARK: Rate limits

    @Test("Message bucket: the burst passes, RATE_LIMITED once, reads pause, held frames go on in order at the rate")
    func messageBucketHoldsAndReleases() throws {
        var h = try H {
            $0.messagesPerSecond = 10
            $0.messageBurst = 4
            $0.removePairedAllowance()
        }
        let (a, b) = h.pair()  // each JOIN took one token: three left
        let frames = (0..<6).map { H.signal(UInt8($0)) }
        for frame in frames { h.send(frame, from: a) }
        #expect(h.actions() == [
            .forward(b, frames[0]), .forward(b, frames[1]), .forward(b, frames[2]),
            .send(a, H.error(.rateLimited)), .pauseReading(a),
        ])
        #expect(h.engine.pollTimeout() == h.now.advanced(by: .milliseconds(100)))
        h.advance(.milliseconds(100))
        #expect(h.actions() == [.forward(b, frames[3])])
        h.advance(.milliseconds(100))
        #expect(h.actions() == [.forward(b, frames[4])])
        h.advance(.milliseconds(100))
        #expect(h.actions() == [.forward(b, frames[5]), .resumeReading(a)])
        #expect(h.engine.counters.rejections(.rateLimited) == 3)
        #expect(h.engine.counters.framesForwarded == 6)
        // A later flood is answered RATE_LIMITED again (once per episode).
        h.advance(.seconds(1))
        _ = h.actions()
        for frame in frames { h.send(frame, from: a) }
        let answers = h.actions().filter { $0 == .send(a, H.error(.rateLimited)) }
        #expect(answers.count == 1)
    }

    @Test("Paired tier: alone in a room, the lone rate; with the peer there, the paired rate; alone again, the lone rate")
    func pairedTier() throws {
        var h = try H {
            $0.messagesPerSecond = 1
            $0.messageBurst = 3
            $0.pairedMessagesPerSecond = 1000
            $0.pairedMessageBurst = 8
        }
        // Alone (a stranger who joined an empty room): the JOIN took one token, two frames pass.
        let a = h.connect()
        h.join(a, "TIER")
        _ = h.actions()
        for marker in 0..<3 { h.send(H.signal(UInt8(marker)), from: a) }
        let alone = h.actions()
        #expect(alone.filter { $0 == .send(a, H.error(.noPeer)) }.count == 2, "\(alone)")
        #expect(alone.contains(.send(a, H.error(.rateLimited))), "the third frame is over the lone burst: \(alone)")
        // Its peer arrives. Frames sent meanwhile wait behind the held one (order); from the
        // release on, the buckets refill at the paired rate (1000 a second): all 8 are through
        // within 10 ms, where the lone rate (1 a second) would take 8 s. Pairing kept the tokens
        // the connection had (none): no fresh burst.
        let b = h.connect()
        h.join(b, "TIER")
        _ = h.actions()
        for marker in 3..<10 { h.send(H.signal(UInt8(marker)), from: a) }
        h.advance(.seconds(1))
        var paired = h.actions()
        h.advance(.milliseconds(10))
        paired += h.actions()
        let forwarded = paired.filter { if case .forward(b, _) = $0 { true } else { false } }
        #expect(forwarded.count == 8, "the held frame and 7 more reach the peer at once: \(paired)")
        #expect(paired.contains(.resumeReading(a)) && !paired.contains(.send(a, H.error(.rateLimited))))
        // The peer leaves: back to the lone tier, whose burst (3) caps the tokens kept.
        h.engine.closed(b, now: h.now)
        _ = h.actions()
        for marker in 10..<14 { h.send(H.signal(UInt8(marker)), from: a) }
        #expect(h.actions().contains(.pauseReading(a)), "alone again, 4 frames are over the lone burst")
    }

    @Test("--no-paired-allowance: 0 in a paired field is its lone value; the flags' ranges are checked")
    func pairedAllowanceRemoved() throws {
        var limits = RelayLimits.defaults
        #expect(limits.pairedBytesPerSecond > limits.bytesPerSecond, "the default has an allowance")
        limits.removePairedAllowance()
        #expect([limits.pairedMessagesPerSecond, limits.pairedMessageBurst, limits.pairedBytesPerSecond,
                 limits.pairedByteBurst] == [0, 0, 0, 0])
        try limits.validate()
        limits.pairedBytesPerSecond = -1
        #expect(throws: InvalidRelaySetting.self) { try limits.validate() }
    }

    @Test("Byte bucket: a frame the bytes cannot pay for waits until they can")
    func byteBucket() throws {
        var h = try H {
            $0.frameSizeMaxBytes = 256
            $0.bytesPerSecond = 100
            $0.byteBurst = 256
            $0.removePairedAllowance()
        }
        let (a, b) = h.pair()
        let big = H.signal(7, payloadBytes: 120)  // ~200 bytes of JSON
        h.send(big, from: a)
        h.send(big, from: a)
        #expect(h.actions() == [.forward(b, big), .send(a, H.error(.rateLimited)), .pauseReading(a)])
        // The bucket has what the JOIN and the first frame left; it needs `size`, at 100 bytes a second.
        let join = WireCodec.encode(ClientMessage.join(try RoomCode("ROOM1"))).count
        let missing = big.count - (256 - join - big.count)
        #expect(missing > 0 && big.count <= 256 - join)
        let wait = Duration.milliseconds(missing * 10)
        h.advance(wait - .milliseconds(1))
        #expect(h.actions().isEmpty)
        h.advance(.milliseconds(1))
        #expect(h.actions() == [.forward(b, big), .resumeReading(a)])
    }

    @Test("A close frame waits behind the held frames; text after it is ignored; then the close is echoed")
    func closeWaitsForHeldFrames() throws {
        var h = try H {
            $0.messagesPerSecond = 10
            $0.messageBurst = 2
            $0.removePairedAllowance()
        }
        let (a, b) = h.pair()
        h.send(H.signal(0), from: a)
        h.send(H.signal(1), from: a)
        _ = h.actions()
        h.engine.receive(.close(CloseCode(rawValue: 4000)), from: a, now: h.now)
        h.send(H.signal(2), from: a)
        #expect(h.actions().isEmpty)
        h.advance(.milliseconds(100))
        #expect(h.actions() == [
            .forward(b, H.signal(1)),
            .close(a, CloseCode(rawValue: 4000), error: nil, disconnectWhenWritten: true),
            .send(b, .peerLeft), .resumeReading(a),
        ])
        #expect(h.engine.counters.framesReceived == 2 + 2, "two JOINs and two SIGNALs; the one after the close is not")
    }

    @Test("A client that disconnects still has its held frames sent on, then its peer is told")
    func heldFramesSentOnAtDisconnect() throws {
        var h = try H {
            $0.messagesPerSecond = 1
            $0.messageBurst = 2
            $0.removePairedAllowance()
        }
        let (a, b) = h.pair()
        for marker in 0..<3 { h.send(H.signal(UInt8(marker)), from: a) }
        _ = h.actions()
        h.engine.closed(a, now: h.now)
        #expect(h.actions() == [.forward(b, H.signal(1)), .forward(b, H.signal(2)), .send(b, .peerLeft)])
        #expect(h.engine.counters.connectionsOpen == 1)
    }

    @Test("Planted bug: a message bucket that never refills holds frames without a timer spin, until the close")
    func bucketThatNeverRefills() throws {
        var h = H.unchecked {
            $0.messagesPerSecond = 0
            $0.messageBurst = 2
            $0.removePairedAllowance()
        }
        var limits = RelayLimits()
        limits.messagesPerSecond = 0
        limits.removePairedAllowance()
        #expect(throws: InvalidRelaySetting(flag: "messages-per-second", reason: "must be 1 to 2^30")) {
            _ = try RelayEngine<[UInt8]>(limits: limits, now: .zero, entropy: SeededEntropy(seed: 1))
        }
        let (a, b) = h.pair()
        for marker in 0..<3 { h.send(H.signal(UInt8(marker)), from: a) }
        #expect(h.actions() == [
            .forward(b, H.signal(0)), .send(a, H.error(.rateLimited)), .pauseReading(a),
        ], "the JOIN took the burst's first token")
        // Nothing is due but the sweep: no release timer for a bucket that never refills.
        #expect(h.engine.pollTimeout() == h.start.advanced(by: .seconds(1)))
        h.advance(.seconds(10))
        #expect(!h.actions().contains { if case .forward = $0 { true } else { false } })
        h.engine.closed(a, now: h.now)
        #expect(h.actions() == [.forward(b, H.signal(1)), .forward(b, H.signal(2)), .send(b, .peerLeft)])
    }

    // MARK: Liveness

    @Test("A quiet connection is pinged; one that sends nothing at all gets IDLE_TIMEOUT and 1008")
    func pingsAndIdleTimeout() throws {
        var h = try H {
            $0.pingIntervalSeconds = 2
            $0.idleTimeoutSeconds = 5
        }
        let (a, b) = h.pair()
        h.advance(.seconds(2))
        #expect(h.actions() == [.ping(a), .ping(b)])
        h.advance(.milliseconds(500))
        h.engine.receive(.pong, from: b, now: h.now)
        h.advance(.milliseconds(1500))  // t = 4 s
        #expect(h.actions() == [.ping(a)])
        h.advance(.seconds(1))  // t = 5 s: a was silent for 5 s; b's last ping was 3 s ago
        #expect(h.actions() == [
            .close(a, .policyViolation, error: .idleTimeout, disconnectWhenWritten: false), .send(b, .peerLeft),
            .ping(b),
        ])
        #expect(h.engine.counters.rejections(.idleTimeout) == 1)
        #expect(h.engine.counters.pingsSent == 4)
    }

    @Test("A ping is answered with its payload; a pong only keeps the connection alive")
    func pingPong() throws {
        var h = try H()
        let a = h.connect()
        h.engine.receive(.ping([1, 2, 3]), from: a, now: h.now)
        h.engine.receive(.pong, from: a, now: h.now)
        #expect(h.actions() == [.pong(a, [1, 2, 3])])
    }

    // MARK: Backpressure

    @Test("A room-mate over its high watermark pauses the sender; below the low one, it resumes")
    func backpressure() throws {
        var h = try H {
            $0.pingIntervalSeconds = 2
            $0.idleTimeoutSeconds = 5
        }
        let (a, b) = h.pair()
        h.engine.writabilityChanged(b, isWritable: false, now: h.now)
        // b's own client is not reading: b is not read either (own backpressure); a, which fills
        // b's queue, is paused for its peer.
        #expect(h.actions() == [.pauseReading(b), .pauseReading(a)])
        // Paused for its peer, the sender cannot read its client's pongs: it is not idle-closed
        // (the slow peer answers its pings meanwhile).
        for _ in 0..<10 {
            h.advance(.seconds(1))
            h.engine.receive(.pong, from: b, now: h.now)
        }
        #expect(h.actions().allSatisfy { $0 == .ping(b) })
        h.engine.writabilityChanged(b, isWritable: true, now: h.now)
        #expect(h.actions() == [.resumeReading(b), .resumeReading(a)])
    }

    @Test("A forward to a peer already over its watermark pauses the sender at once")
    func forwardToUnwritablePeer() throws {
        var h = try H()
        let b = h.connect(Self.addressB)
        h.join(b, "ROOM1")
        h.engine.writabilityChanged(b, isWritable: false, now: h.now)
        let a = h.connect(Self.addressA)
        h.join(a, "ROOM1")
        _ = h.actions()
        h.send(H.signal(1), from: a)
        #expect(h.actions() == [.forward(b, H.signal(1)), .pauseReading(a)])
        // The slow peer leaves: the sender reads again.
        h.engine.closed(b, now: h.now)
        #expect(h.actions() == [.send(a, .peerLeft), .resumeReading(a)])
    }

    // MARK: Closing

    @Test("Binary frames get an ERROR and the connection stays; reserved opcodes and bad frames close it")
    func protocolViolations() throws {
        var h = try H()
        let (a, b) = h.pair()
        h.engine.receive(.binary(H.bytes(6)), from: a, now: h.now)
        #expect(h.actions() == [
            .send(
                a, .error(code: .malformedJSON, message: "binary frames are not part of the protocol; send JSON text"))
        ])
        h.engine.receive(.reserved, from: a, now: h.now)
        #expect(h.actions() == [
            .close(a, .protocolError, error: nil, disconnectWhenWritten: false), .send(b, .peerLeft),
        ])
        h.engine.fault(.frameTooLarge, on: b, now: h.now)
        #expect(h.actions() == [.close(b, .messageTooLarge, error: .frameTooLarge, disconnectWhenWritten: false)])
        #expect(h.engine.counters.rejections(.frameTooLarge) == 1)
        // A shell that does not check the size itself gets the same answer from the engine.
        let c = h.connect(.ipv4(3))
        h.send([UInt8](repeating: 0x20, count: RelayLimits.defaults.frameSizeMaxBytes + 1), from: c)
        #expect(h.actions() == [.close(c, .messageTooLarge, error: .frameTooLarge, disconnectWhenWritten: false)])
        #expect(h.engine.counters.rejections(.frameTooLarge) == 2)
        #expect(h.engine.counters.rejections(.malformed) == 1)
        #expect(h.engine.counters.webSocketsOpen == 0)
        #expect(h.engine.counters.framesReceived == 2, "the two JOINs; the oversized frame is not counted")
    }

    @Test("Closing: everything but the client's close answer is ignored; no answer within 2 s drops TCP")
    func closingState() throws {
        var h = try H()
        let (a, b) = h.pair()
        h.engine.receive(.close(nil), from: a, now: h.now)
        #expect(h.actions() == [
            .close(a, .normalClosure, error: nil, disconnectWhenWritten: true), .send(b, .peerLeft),
        ])
        h.engine.fault(.frameTooLarge, on: b, now: h.now)
        _ = h.actions()
        h.send(H.signal(1), from: b)
        h.engine.receive(.ping([9]), from: b, now: h.now)
        #expect(h.actions().isEmpty)
        h.engine.receive(.close(.normalClosure), from: b, now: h.now)
        #expect(h.actions() == [.disconnect(b)])
        h.advance(.seconds(RelayLimits.closeHandshakeTimeoutSeconds))
        #expect(h.actions() == [.disconnect(a)], "a never answered; b's timer finds it already disconnecting")
    }

    @Test("Handshake timeout: an upgrade that never finishes is cut off and counted")
    func handshakeTimeout() throws {
        var h = try H { $0.handshakeTimeoutSeconds = 3 }
        let slow = h.accept()
        h.advance(.seconds(3))
        #expect(h.actions() == [.disconnect(slow.id)])
        #expect(h.engine.counters.rejections(.handshakeTimeout) == 1)
        h.engine.upgraded(slow.id, now: h.now)
        #expect(h.actions().isEmpty)
        #expect(h.engine.counters.webSocketsOpen == 0)
    }

    // MARK: Shutdown

    @Test("Shutdown: SHUTTING_DOWN and 1001 to every served connection (no PEER_LEFT), accepts dropped, then done")
    func shutdown() throws {
        var h = try H()
        let (a, b) = h.pair()
        let loner = h.connect(.ipv4(3))
        let upgrading = h.accept(.ipv4(4))
        h.engine.beginShutdown(now: h.now)
        let goodbye = { (id: ConnectionID) in
            RelayAction<[UInt8]>.close(id, .goingAway, error: .shuttingDown, disconnectWhenWritten: false)
        }
        #expect(h.actions() == [goodbye(a), goodbye(b), goodbye(loner)])
        #expect(h.accept(.ipv4(5)).disposition == .drop)
        h.engine.upgraded(upgrading.id, now: h.now)
        #expect(h.actions() == [goodbye(upgrading.id)])
        for id in [a, b, loner, upgrading.id] { h.engine.closed(id, now: h.now) }
        #expect(h.actions().isEmpty, "the dropped connection is still open")
        h.engine.closed(ConnectionID(upgrading.id.value + 1), now: h.now)
        #expect(h.actions() == [.shutdownComplete])
    }

    @Test("Shutdown ends after the grace period even if a connection never closes")
    func shutdownGrace() throws {
        var h = try H { $0.shutdownGraceSeconds = 3 }
        let a = h.connect()
        h.engine.beginShutdown(now: h.now)
        _ = h.actions()
        h.advance(.seconds(3))
        #expect(h.actions() == [.disconnect(a), .shutdownComplete])
    }

    // MARK: Bounds

    @Test("Timers of connections that come and go do not pile up")
    func timerHeapStaysBounded() throws {
        var h = try H()
        for round in 0..<50 {
            for _ in 0..<200 {
                let acceptance = h.accept(.ipv4(UInt32(round)))
                h.engine.closed(acceptance.id, now: h.now)
            }
            h.advance(.seconds(1))
            #expect(h.engine.timers.count <= 2 * h.engine.connections.count + 64)
        }
        #expect(h.engine.counters.connectionsOpen == 0)
    }

    @Test("Every default passes validation; a limit that does not make sense names its flag")
    func limitsValidation() throws {
        try RelayLimits.defaults.validate()
        var limits = RelayLimits()
        limits.byteBurst = limits.frameSizeMaxBytes - 1
        #expect(throws: InvalidRelaySetting.self) { try limits.validate() }
        do {
            try limits.validate()
        } catch {
            #expect(error.flag == "byte-burst")
        }
        limits = RelayLimits()
        limits.idleTimeoutSeconds = limits.pingIntervalSeconds
        do {
            try limits.validate()
            Issue.record("an idle timeout no longer than the ping interval was accepted")
        } catch {
            #expect(error.flag == "idle-timeout-seconds")
        }
    }

    @Test("Synthetic addresses: IPv4-mapped IPv6 is IPv4; 16 bytes or nothing")
    func addresses() {
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1]
        #expect(RelayAddress(ipv6: mapped) == .ipv4(0xC000_0201))
        #expect(RelayAddress(ipv6: [UInt8](repeating: 1, count: 15)) == nil)
        #expect(RelayAddress(ipv4: (192, 0, 2, 1)).limitsKey.description == "192.0.2.1")
        #expect(RelayAddress.ipv6(high: 0x2001_0DB8_0000_0001, low: 5).limitsKey.description == "2001:db8:0:1::/64")
    }
}
