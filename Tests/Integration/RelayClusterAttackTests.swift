import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The attacker review of cluster mode (REVIEW-cluster.md findings 1, 2, 3, 9), played against
/// real relay nodes over a real redis-server: each test is the attack, and fails if its fix breaks.
@Suite("Cluster relay: attacks from the review", .serialized)
struct RelayClusterAttackTests {
    /// Alice on `a`, Bob on `b`, paired; Alice's reconnect token.
    static func pair(_ room: String, _ a: RelayProcess, _ b: RelayProcess) async throws
        -> (alice: TestWebSocket, bob: TestWebSocket, token: String)
    {
        let alice = try await TestWebSocket.connect(a.url)
        let bob = try await TestWebSocket.connect(b.url)
        try await alice.send(joinFrame(room))
        let token = try #require(try await alice.expect("JOINED").object["token"] as? String)
        try await bob.send(joinFrame(room))
        try await bob.expect("JOINED")
        try await bob.expect("PEER_FOUND")
        try await alice.expect("PEER_FOUND")
        return (alice, bob, token)
    }

    /// A squatter JOINs `room` through `node` again and again for `seconds`: it must never get in
    /// (ROOM_FULL while the seat's node still looks alive, SEAT_RESERVED after). Returns how often
    /// it was told SEAT_RESERVED. With `untilReserved`, it stops a second after the first
    /// SEAT_RESERVED: when the seat's node is taken for dead depends on the machine's load (the
    /// heartbeat's TTL and the partners' check are timers on a shared machine), so `seconds` is
    /// then only the bound.
    static func squat(
        _ room: String, via node: RelayProcess, seconds: Double, untilReserved: Bool = false
    ) async throws -> Int {
        let squatter = try await TestWebSocket.connect(node.url)
        var deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var reserved = 0
        // Bounded by the deadline.
        while ContinuousClock.now < deadline {
            try await squatter.send(joinFrame(room))
            let answer = try await squatter.nextJSON()
            #expect(answer.type == "ERROR", "the squatter got in: \(answer)")
            guard answer.type == "ERROR" else { break }
            #expect(answer.code == "ROOM_FULL" || answer.code == "SEAT_RESERVED", "\(answer)")
            if answer.code == "SEAT_RESERVED" {
                reserved += 1
                if untilReserved && reserved == 1 { deadline = min(deadline, .now + .seconds(1)) }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        try? await squatter.close()
        return reserved
    }

    /// Alice's client comes back through `node` with her token: her seat, Bob told, SIGNALs flow.
    static func reclaim(_ room: String, token: String, via node: RelayProcess, bob: TestWebSocket) async throws {
        let back = try await TestWebSocket.connect(node.url)
        try await back.send(joinFrame(room, token: token))
        let joined = try await back.expect("JOINED")
        #expect(joined.object["token"] as? String == token)
        #expect(joined.object["peers"] as? Int == 2)
        try await back.expect("PEER_FOUND")
        try await bob.expect("PEER_FOUND")
        try await expectForwarded(from: back, to: bob)
        try await expectForwarded(from: bob, to: back)
    }

    /// Read `flooder`'s socket (non-blocking) until its JOINED has arrived, for up to 10 s.
    static func awaitJoined(_ flooder: Flooder) async throws {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        // Bounded: 1,000 polls of 10 ms.
        for _ in 0..<1000 {
            let count = read(flooder.fd, &chunk, chunk.count)
            if count > 0 { received += chunk[0..<count] }
            if String(decoding: received, as: UTF8.self).contains("JOINED") { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ClientTestFailure("the receiver was never JOINED: \(String(decoding: received, as: UTF8.self))")
    }

    @Test("Review 2: kill -9 of a node: its peer's seat stays reserved (a squatter polling JOIN through another node never gets in); the token takes it back")
    func killedNodesSeatIsReserved() async throws {
        try await withCluster(nodes: 2, RelayClusterTests.loose) { _, nodes in
            let room = uniqueRoom("SQUATK")
            let (_, bob, token) = try await Self.pair(room, nodes[0], nodes[1])
            nodes[0].process.send(signal: SIGKILL)
            // Past the heartbeat's TTL and the partners' check: the node is dead for the cluster.
            let reserved = try await Self.squat(room, via: nodes[1], seconds: 30, untilReserved: true)
            #expect(reserved > 0, "the dead node was never taken for dead")
            try await bob.expect("PEER_LEFT", timeoutSeconds: 2)
            try await Self.reclaim(room, token: token, via: nodes[1], bob: bob)
        }
    }

    @Test("Review 2: SIGTERM of a node: its peer's seat is reserved, not freed: a squatter through another node never gets in; the token takes it back")
    func stoppedNodesSeatIsReserved() async throws {
        try await withCluster(nodes: 2, RelayClusterTests.loose) { _, nodes in
            let room = uniqueRoom("SQUATT")
            let (alice, bob, token) = try await Self.pair(room, nodes[0], nodes[1])
            nodes[0].process.send(signal: SIGTERM)
            try await alice.expect("ERROR", code: "SHUTTING_DOWN")
            try await bob.expect("PEER_LEFT", timeoutSeconds: 3)
            #expect(try await nodes[0].process.waitForExit() == 0)
            let reserved = try await Self.squat(room, via: nodes[1], seconds: 2)
            #expect(reserved > 0)
            try await Self.reclaim(room, token: token, via: nodes[1], bob: bob)
        }
    }

    @Test("Review 3: a node stalled 6 s or more (SIGSTOP, past its heartbeat's TTL): no squatter takes its peer's seat meanwhile; after SIGCONT the partner gets PEER_FOUND back, its own peer PEER_LEFT then PEER_FOUND, and SIGNALs flow both ways")
    func stalledNodeComesBack() async throws {
        try await withCluster(nodes: 2, RelayClusterTests.loose) { _, nodes in
            let room = uniqueRoom("STALL6")
            let (alice, bob, _) = try await Self.pair(room, nodes[0], nodes[1])
            nodes[0].process.send(signal: SIGSTOP)
            let stopped = ContinuousClock.now
            // Stalled until the cluster has taken it for dead (SEAT_RESERVED), at least 6 s.
            let reserved = try await Self.squat(room, via: nodes[1], seconds: 30, untilReserved: true)
            #expect(reserved > 0, "the stalled node was never taken for dead")
            try await bob.expect("PEER_LEFT", timeoutSeconds: 2)
            try await Task.sleep(until: stopped + .seconds(6), clock: .continuous)
            nodes[0].process.send(signal: SIGCONT)
            try await bob.expect("PEER_FOUND", timeoutSeconds: 10)
            // Bob was told Alice left, so she is told the same and both open a handshake.
            try await alice.expect("PEER_LEFT", timeoutSeconds: 10)
            try await alice.expect("PEER_FOUND", timeoutSeconds: 10)
            try await expectForwarded(from: bob, to: alice)
            try await expectForwarded(from: alice, to: bob)
        }
    }

    @Test("Review 9: a SIGNAL just over 2 MiB between nodes with --frame-size-max-bytes 4 MiB arrives whole, and the node's subscriber stays up")
    func largeSignalAcrossNodes() async throws {
        let big = ["--frame-size-max-bytes", "\(4 << 20)", "--byte-burst", "\(8 << 20)", "--bytes-per-second", "\(8 << 20)"]
        try await withCluster(nodes: 2, big) { _, nodes in
            let room = uniqueRoom("BIG")
            let alice = try await TestWebSocket.connect(nodes[0].url, frameSizeMaxBytes: 4 << 20)
            let bob = try await TestWebSocket.connect(nodes[1].url, frameSizeMaxBytes: 4 << 20)
            try await alice.send(joinFrame(room))
            try await alice.expect("JOINED")
            try await bob.send(joinFrame(room))
            try await bob.expect("JOINED")
            try await bob.expect("PEER_FOUND")
            try await alice.expect("PEER_FOUND")
            // 2 MiB + 64 KiB of base64: over the old fixed 2 MiB cap of a Redis reply.
            let frame = signalFrame(kind: "MSG", payload: String(repeating: "QUJD", count: (2 << 20 + 65_536) / 4))
            #expect(frame.utf8.count > 2 << 20)
            try await alice.send(frame)
            #expect(try await bob.nextText(timeoutSeconds: 20) == frame)
            try await expectForwarded(from: alice, to: bob)
            try await expectForwarded(from: bob, to: alice)
            #expect(try await nodes[1].metric("relay_cluster_reconnects_total") == 0)
        }
    }

    @Test("Review 1: receivers on node B that never read, senders on node A flooding 60 KB SIGNALs for 10 s: B's RSS grows under 16 MiB; the excess is dropped and counted")
    func crossNodeFloodIntoANonReader() async throws {
        try await withCluster(nodes: 2, RelayClusterTests.loose) { _, nodes in
            let (a, b) = (nodes[0], nodes[1])
            let pairs = 8
            var receivers: [Flooder] = []
            var senders: [RelayBackpressureTests.BlockingSender] = []
            for index in 0..<pairs {
                let room = uniqueRoom("FLOODX\(index)")
                // The receiver: a small receive window, JOIN, its JOINED read (so that it is seated
                // before its sender JOINs), then it never reads again.
                let receiver = try Flooder(port: b.port)
                _ = receiver.flood(Flooder.text(joinFrame(room)), frameCount: 1, count: 1, stallSeconds: 2,
                                   deadline: .now + .seconds(5))
                try await Self.awaitJoined(receiver)
                receivers.append(receiver)
                let port = a.port
                senders.append(try await offPool {
                    let sender = try RelayBackpressureTests.BlockingSender(port: port)
                    try sender.write(RelayBackpressureTests.BlockingSender.frame(joinFrame(room)))
                    _ = try sender.read(until: "PEER_FOUND")
                    return sender
                })
            }
            let pid = b.process.processIdentifier
            try await Task.sleep(for: .milliseconds(500))
            let baselineKiB = try RelayFloodTests.memoryKiB(pid: pid).resident
            let frame = RelayBackpressureTests.BlockingSender.frame(
                signalFrame(kind: "MSG", payload: String(repeating: "QUJD", count: 15_000)))
            let deadline = ContinuousClock.now + .seconds(10)
            let running = Mutex(pairs)
            for sender in senders {
                Thread.detachNewThread {
                    // Bounded by the deadline (each write waits at most for the relay's rate limit).
                    while ContinuousClock.now < deadline {
                        guard (try? sender.write(frame)) != nil else { break }
                    }
                    running.withLock { $0 -= 1 }
                }
            }
            var growthKiB = 0
            // Bounded: 30 s at most.
            for _ in 0..<300 where running.withLock({ $0 }) > 0 {
                try await Task.sleep(for: .milliseconds(100))
                growthKiB = max(growthKiB, try RelayFloodTests.memoryKiB(pid: pid).resident - baselineKiB)
            }
            let published = try await a.metric("relay_bytes_forwarded_total") ?? 0
            let dropped = try await b.metric("relay_cluster_signals_dropped_total") ?? 0
            // The attack was real: A sent B far more than the bound (8 senders at the default
            // 1 MiB/s for 10 s); B held at most its watermarks' worth of it.
            #expect(published > 30 * 1_048_576, "only \(published) bytes crossed to node B")
            #expect(dropped > 0)
            #expect(growthKiB < 16 * 1024, "node B's RSS grew \(growthKiB / 1024) MiB with \(pairs) non-readers")
            withExtendedLifetime(receivers) {}
        }
    }
}
