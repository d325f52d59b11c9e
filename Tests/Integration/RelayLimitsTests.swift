import ChatNetworking
import Foundation
import NIOWebSocket
import Testing

/// Every limit of the relay triggered and answered, with the relay still serving another room.
@Suite("relay: limits")
struct RelayLimitsTests {
    @Test("Message token bucket: a flood gets RATE_LIMITED and is slowed to the rate, losslessly; other rooms unaffected")
    func messageRate() async throws {
        try await withRelay(["--messages-per-second", "10", "--message-burst", "5", "--no-paired-allowance"]) { relay in
            let (flooder, victim) = try await joinedPair(relay, room: "FLOOD")
            let (alice, bob) = try await joinedPair(relay, room: "CALM")
            let floodCount = 40
            let frames = (0..<floodCount).map {
                signalFrame(kind: "MSG", payload: Data("flood \($0)".utf8).base64EncodedString())
            }
            let clock = ContinuousClock()
            let floodStart = clock.now
            for frame in frames {
                try await flooder.send(frame)
            }
            try await flooder.expect("ERROR", code: "RATE_LIMITED")
            // The other room is served meanwhile.
            try await expectForwarded(from: alice, to: bob)
            try await expectForwarded(from: bob, to: alice)
            // Every frame arrives, in order, but no faster than the bucket allows: 5 at once, then
            // 10 per second, so the last cannot arrive before 3.5 s after the flood began (a slow
            // machine can only make this later; 3 s leaves room for the bucket's rounding).
            for frame in frames {
                #expect(try await victim.nextText() == frame)
            }
            let elapsed = clock.now - floodStart
            #expect(elapsed >= .milliseconds(3000), "40 frames at 10/s after a burst of 5 took only \(elapsed)")
            // Once the backlog is through, the flooder is served normally again.
            try await expectForwarded(from: flooder, to: victim)
            #expect(try await relay.metric(#"relay_rejections_total{reason="rate_limited"}"#) ?? 0 >= 1)
        }
    }

    @Test("Byte token bucket: frames beyond the byte burst get RATE_LIMITED and wait for the bucket")
    func byteRate() async throws {
        try await withRelay(
            ["--frame-size-max-bytes", "1024", "--bytes-per-second", "1024", "--byte-burst", "2048", "--no-paired-allowance"]
        ) { relay in
            let (alice, bob) = try await joinedPair(relay, room: "BYTES")
            let big = signalFrame(kind: "MSG", payload: String(repeating: "QUJD", count: 225))  // ~950 bytes
            for _ in 0..<4 {
                try await alice.send(big)
            }
            try await alice.expect("ERROR", code: "RATE_LIMITED")
            for _ in 0..<4 {
                #expect(try await bob.nextText() == big)
            }
            #expect(try await relay.metric(#"relay_rejections_total{reason="rate_limited"}"#) ?? 0 >= 1)
        }
    }

    @Test("Total connection cap: the next connection gets TOO_MANY_CONNECTIONS and close 1013")
    func connectionCap() async throws {
        try await withRelay(["--connections-max", "3", "--connections-per-address-max", "3"]) { relay in
            let (alice, bob) = try await joinedPair(relay, room: "CAP")
            let third = try await TestWebSocket.connect(relay.url)
            try await third.send(joinFrame("THIRD"))
            try await third.expect("JOINED")
            let fourth = try await TestWebSocket.connect(relay.url)
            let (code, texts) = try await fourth.untilClose()
            #expect(code == .tryAgainLater)
            #expect(try texts.map { try JSONMessage($0).code } == ["TOO_MANY_CONNECTIONS"])
            try await expectForwarded(from: alice, to: bob)
            #expect(try await relay.metric(#"relay_rejections_total{reason="connections_max"}"#) == 1)
        }
    }

    @Test("Per-address connection cap: the next connection from the address gets close 1013")
    func perAddressCap() async throws {
        try await withRelay(["--connections-per-address-max", "2"]) { relay in
            let (alice, bob) = try await joinedPair(relay, room: "ADDR")
            let third = try await TestWebSocket.connect(relay.url)
            let (code, texts) = try await third.untilClose()
            #expect(code == .tryAgainLater)
            #expect(try texts.map { try JSONMessage($0).code } == ["TOO_MANY_CONNECTIONS"])
            try await expectForwarded(from: alice, to: bob)
            #expect(try await relay.metric(#"relay_rejections_total{reason="connections_per_address_max"}"#) == 1)
        }
    }

    @Test("Join rate per address: JOIN_RATE_LIMITED past the budget; a repeated JOIN is not counted")
    func joinRate() async throws {
        try await withRelay(["--joins-per-address-per-minute", "3"]) { relay in
            let (alice, bob) = try await joinedPair(relay, room: "JOINS")  // joins 1 and 2
            // A retransmitted JOIN of the same room is answered again and costs nothing.
            try await alice.send(joinFrame("JOINS"))
            try await alice.expect("JOINED")
            try await alice.expect("PEER_FOUND")
            let carol = try await TestWebSocket.connect(relay.url)
            try await carol.send(joinFrame("THIRDJOIN"))  // join 3
            try await carol.expect("JOINED")
            let dave = try await TestWebSocket.connect(relay.url)
            try await dave.send(joinFrame("FOURTHJOIN"))
            try await dave.expect("ERROR", code: "JOIN_RATE_LIMITED")
            // The refused connection stays open, and the existing room still works.
            try await dave.send("not json")
            try await dave.expect("ERROR", code: "MALFORMED_JSON")
            try await expectForwarded(from: alice, to: bob)
        }
    }

    @Test("Room cap: a JOIN that would open one room too many gets TOO_MANY_ROOMS")
    func roomCap() async throws {
        try await withRelay(["--rooms-max", "1"]) { relay in
            let alice = try await TestWebSocket.connect(relay.url)
            try await alice.send(joinFrame("ONLY"))
            try await alice.expect("JOINED")
            let carol = try await TestWebSocket.connect(relay.url)
            try await carol.send(joinFrame("SECOND"))
            try await carol.expect("ERROR", code: "TOO_MANY_ROOMS")
            let bob = try await TestWebSocket.connect(relay.url)
            try await bob.send(joinFrame("ONLY"))
            try await bob.expect("JOINED")
            try await bob.expect("PEER_FOUND")
            try await alice.expect("PEER_FOUND")
            try await expectForwarded(from: alice, to: bob)
        }
    }

    @Test("Handshake timeout: a slowloris that never finishes its upgrade request is cut off")
    func handshakeTimeout() async throws {
        try await withRelay(["--handshake-timeout-seconds", "3"]) { relay in
            let (alice, bob) = try await joinedPair(relay, room: "SLOW")
            // Half an HTTP request, then silence: the relay must close the socket by itself.
            let answer = try await holdRawConnection(
                host: "127.0.0.1", port: relay.port, sending: "GET / HTTP/1.1\r\nHost: relay\r\nUpgrade: websock",
                timeoutSeconds: 15
            )
            #expect(answer.isEmpty, "no HTTP response to a request that never finished")
            try await expectForwarded(from: alice, to: bob)
            #expect(try await relay.metric(#"relay_rejections_total{reason="handshake_timeout"}"#) == 1)
        }
    }

    @Test("Pings find a dead peer: one that never answers gets IDLE_TIMEOUT and 1008; live ones stay")
    func idleTimeoutAndPings() async throws {
        // Generous against a starved machine (tests run in parallel on 2 cores): the live clients must
        // never look idle, and the dead one is cut off only after several unanswered pings.
        try await withRelay(["--ping-interval-seconds", "2", "--idle-timeout-seconds", "10"]) { relay in
            let (alice, bob) = try await joinedPair(relay, room: "LIVE")
            let seen = try await RawWebSocket.withConnection(relay.url) { dead in
                try await dead.send(joinFrame("DEAD"))
                var opcodes: [WebSocketOpcode] = []
                var texts: [String] = []
                for _ in 0..<100 {
                    guard let frame = try await dead.nextFrame(timeoutSeconds: 30) else { break }
                    opcodes.append(frame.opcode)
                    if frame.opcode == .text { texts.append(String(buffer: frame.unmaskedData)) }
                    if frame.opcode == .connectionClose {
                        #expect(frame.closeStatus.code == .policyViolation)
                        break
                    }
                }
                return (opcodes, texts)
            }
            #expect(seen.0.contains(.ping), "the relay pings a quiet connection")
            #expect(seen.0.last == .connectionClose)
            #expect(
                try seen.1.map { try JSONMessage($0).code ?? JSONMessage($0).type ?? "" } == ["JOINED", "IDLE_TIMEOUT"])
            // Alice and Bob were quiet just as long, but their clients answered the pings.
            try await expectForwarded(from: alice, to: bob)
            try await expectForwarded(from: bob, to: alice)
            #expect(try await relay.metric("relay_pings_sent_total") ?? 0 >= 2)
            #expect(try await relay.metric(#"relay_rejections_total{reason="idle_timeout"}"#) == 1)
        }
    }

    @Test("JOIN deadline: a connection that joins no room in time gets JOIN_TIMEOUT and 1008")
    func joinDeadline() async throws {
        try await withRelay(["--join-timeout-seconds", "2"]) { relay in
            // No room-mates here: on a starved machine a pair could miss the 2 s deadline itself.
            // (That ROOM_FULL answers do not stop the clock is RelayEngineHardeningTests.joinDeadline.)
            let idler = try await TestWebSocket.connect(relay.url)
            let (code, texts) = try await idler.untilClose(timeoutSeconds: 30)
            #expect(code == .policyViolation)
            #expect(try texts.map { try JSONMessage($0).code } == ["JOIN_TIMEOUT"], "\(texts)")
            #expect(try await relay.metric(#"relay_rejections_total{reason="join_timeout"}"#) == 1)
        }
    }

    @Test("Connections without a room per address: the next one gets close 1013; joining a room frees the place")
    func roomlessCap() async throws {
        try await withRelay(["--roomless-connections-per-address-max", "2"]) { relay in
            let first = try await TestWebSocket.connect(relay.url)
            let second = try await TestWebSocket.connect(relay.url)
            let third = try await TestWebSocket.connect(relay.url)
            let (code, texts) = try await third.untilClose()
            #expect(code == .tryAgainLater)
            #expect(try texts.map { try JSONMessage($0).code } == ["TOO_MANY_CONNECTIONS"])
            try await first.send(joinFrame("ROOMLESS"))
            try await first.expect("JOINED")
            let fourth = try await TestWebSocket.connect(relay.url)
            try await fourth.send(joinFrame("ROOMLESS"))
            try await fourth.expect("JOINED")
            #expect(try await relay.metric(#"relay_rejections_total{reason="roomless_connections_max"}"#) == 1)
            withExtendedLifetime(second) {}
        }
    }
}
