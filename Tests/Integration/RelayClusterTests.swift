import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real `redis-server` on a free loopback port, persistence off (a `TestProcess`).
final class RedisServer: Sendable {
    let process: TestProcess
    let port: Int
    var url: String { "redis://127.0.0.1:\(port)" }

    /// Start one on `port` (nil: a free one) and wait until it accepts connections; `extra`:
    /// more of redis-server's flags (a Redis Cluster node's).
    static func start(port: Int? = nil, extra: (Int) -> [String] = { _ in [] }) async throws -> RedisServer {
        let port = try port ?? freeLoopbackPort()
        let process = try TestProcess(
            "redis-server",
            arguments: ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--daemonize", "no"] + extra(port),
            executableURL: URL(fileURLWithPath: "/usr/bin/redis-server"))
        guard try await process.stdout.first(timeoutSeconds: 20, where: { $0.contains("Ready to accept connections") })
            != nil
        else {
            await process.kill()
            throw ClientTestFailure("redis-server did not start: \(process.stdout.all.suffix(10))")
        }
        return RedisServer(process: process, port: port)
    }

    private init(process: TestProcess, port: Int) {
        self.process = process
        self.port = port
    }

    func kill() async { await process.kill() }

    /// `redis-cli` against this server; its stdout.
    func cli(_ arguments: [String]) async throws -> String {
        let cli = try TestProcess(
            "redis-cli", arguments: ["-p", "\(port)"] + arguments,
            executableURL: URL(fileURLWithPath: "/usr/bin/redis-cli"))
        _ = try await cli.waitForExit(timeoutSeconds: 10)
        try await Task.sleep(for: .milliseconds(50))
        return cli.stdout.all.joined(separator: "\n")
    }
}

/// `count` relay nodes sharing `redis`, each with `arguments`; killed after `body`.
func withCluster<T>(
    nodes count: Int, _ arguments: [String] = [],
    _ body: (RedisServer, [RelayProcess]) async throws -> T
) async throws -> T {
    let redis = try await RedisServer.start()
    do {
        let result = try await withRelayNodes(count, redisURL: redis.url, arguments) { try await body(redis, $0) }
        await redis.kill()
        return result
    } catch {
        await redis.kill()
        throw error
    }
}

/// `count` relay nodes pointed at the Redis at `redisURL` (a single server or a Cluster), each with
/// `arguments`, healthy before `body`; killed after it.
func withRelayNodes<T>(
    _ count: Int, redisURL: String, _ arguments: [String] = [], _ body: ([RelayProcess]) async throws -> T
) async throws -> T {
    var nodes: [RelayProcess] = []
    do {
        for index in 0..<count {
            nodes.append(
                try await RelayProcess.start(["--redis", redisURL, "--node-id", "n\(index)"] + arguments))
        }
        // A node serves JOINs once its heartbeat is in Redis.
        for node in nodes { try await waitHealthy(node) }
        let result = try await body(nodes)
        for node in nodes { await node.kill() }
        return result
    } catch {
        for node in nodes { await node.kill() }
        throw error
    }
}

/// Poll `/healthz` until it says `expected` (ok / degraded), for up to `timeoutSeconds`.
func waitHealthy(_ node: RelayProcess, expected: String = "ok", timeoutSeconds: Double = 15) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
    var last = ""
    while ContinuousClock.now < deadline {
        last = (try? await httpGet(host: "127.0.0.1", port: node.metricsPort, path: "/healthz").body) ?? ""
        if last.hasPrefix(expected) { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw ClientTestFailure("healthz never said \(expected); last: \(last)")
}

func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

/// A JOIN presenting a reconnect token.
/// Alice JOINs `room` through `first`, then Bob through `second`; both have seen PEER_FOUND. Also
/// returns the reconnect token Alice's JOINED carried (nil with `--seat-grace-seconds 0`).
func pairAcross(
    _ room: String, _ first: RelayProcess, _ second: RelayProcess
) async throws -> (TestWebSocket, TestWebSocket, String?) {
    let alice = try await TestWebSocket.connect(first.url)
    let bob = try await TestWebSocket.connect(second.url)
    let token = try await introduce(alice, bob, room: room).object["token"] as? String
    return (alice, bob, token)
}

func joinFrame(_ room: String, token: String) -> String {
    #"{"type": "JOIN", "room": "\#(room)", "token": "\#(token)"}"#
}

/// Relay nodes sharing one real redis-server: rooms, seats and SIGNALs across nodes.
@Suite("Cluster relay: several nodes over a real Redis", .serialized)
struct RelayClusterTests {
    static let loose = ["--joins-per-address-per-minute", "100000", "--connections-per-address-max", "10000",
                        "--roomless-connections-per-address-max", "10000"]

    @Test("Two peers on different nodes: JOINED, PEER_FOUND, SIGNALs byte for byte both ways, ROOM_FULL from a third node, PEER_LEFT")
    func pairAcrossNodes() async throws {
        try await withCluster(nodes: 3) { _, nodes in
            let room = uniqueRoom("CLU")
            let alice = try await TestWebSocket.connect(nodes[0].url)
            let bob = try await TestWebSocket.connect(nodes[1].url)
            try await alice.send(joinFrame(room))
            #expect(try await alice.expect("JOINED").object["peers"] as? Int == 1)
            try await bob.send(joinFrame(room))
            #expect(try await bob.expect("JOINED").object["peers"] as? Int == 2)
            try await bob.expect("PEER_FOUND")
            try await alice.expect("PEER_FOUND")
            for index in 0..<20 {
                try await expectForwarded(from: alice, to: bob, payload: base64("alice \(index)"))
                try await expectForwarded(from: bob, to: alice, payload: base64("bob \(index)"))
            }
            // In order per sender: a burst arrives as sent.
            let burst = (0..<50).map { signalFrame(kind: "MSG", payload: base64("burst \($0)")) }
            for frame in burst { try await alice.send(frame) }
            var received: [String] = []
            for _ in burst { received.append(try await bob.nextText()) }
            #expect(received == burst)

            let carol = try await TestWebSocket.connect(nodes[2].url)
            try await carol.send(joinFrame(room))
            try await carol.expect("ERROR", code: "ROOM_FULL")

            try await alice.close()
            try await bob.expect("PEER_LEFT")
            // The freed seat is free cluster-wide.
            try await carol.send(joinFrame(room))
            #expect(try await carol.expect("JOINED").object["peers"] as? Int == 2)
            try await carol.expect("PEER_FOUND")
            try await bob.expect("PEER_FOUND")
        }
    }

    @Test("A JOIN race: 1,000 connections spread over 3 nodes JOIN 100 rooms at once; exactly two are admitted per room")
    func joinRace() async throws {
        try await withCluster(nodes: 3, Self.loose + Self.slowJoins) { _, nodes in
            try await Self.raceJoins(nodes, connections: 1000, rooms: 100)
        }
    }

    /// A thousand connections take a while to open on a loaded machine: the first must not reach
    /// the relay's JOIN deadline (30 s by default) before the last is open.
    static let slowJoins = ["--join-timeout-seconds", "600"]

    /// `connections` spread over `nodes` JOIN `roomCount` rooms at once (all connected first, then
    /// every JOIN sent together): exactly two per room get in, the others ROOM_FULL.
    static func raceJoins(_ nodes: [RelayProcess], connections: Int = 60, rooms roomCount: Int = 6) async throws {
        let rooms = (0..<roomCount).map { _ in uniqueRoom("RACE") }
        var sockets: [(TestWebSocket, String)] = []
        let batch = 50  // connected 50 at a time: a thousand one by one would take most of the test
        for start in stride(from: 0, to: connections, by: batch) {
            let indices = start..<min(start + batch, connections)
            let opened = try await withThrowingTaskGroup(of: (Int, TestWebSocket).self) { group in
                for index in indices {
                    group.addTask { (index, try await TestWebSocket.connect(nodes[index % nodes.count].url)) }
                }
                return try await group.reduce(into: []) { $0.append($1) }.sorted { $0.0 < $1.0 }
            }
            for (index, socket) in opened { sockets.append((socket, rooms[index % rooms.count])) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (socket, room) in sockets {
                group.addTask { try await socket.send(joinFrame(room)) }
            }
            try await group.waitForAll()
        }
        var admitted: [String: Int] = [:]
        for (socket, room) in sockets {
            let answer = try await socket.nextJSON()
            if answer.type == "JOINED" {
                admitted[room, default: 0] += 1
            } else {
                #expect(answer.code == "ROOM_FULL", "\(answer)")
            }
        }
        for room in rooms { #expect(admitted[room] == 2, "room \(room): \(admitted[room] ?? 0) admitted") }
    }

    @Test("Seat reservation across nodes: a cut peer's seat waits for its token, which takes it back through another node")
    func seatAcrossNodes() async throws {
        try await withCluster(nodes: 3) { _, nodes in try await Self.reserveAcross(nodes) }
    }

    /// Alice on node 0 and Bob on node 1; Alice cut: a squatter through node 2 is refused
    /// SEAT_RESERVED, Alice's token through node 2 takes the seat back.
    static func reserveAcross(_ nodes: [RelayProcess]) async throws {
        let room = uniqueRoom("SEAT")
        let (alice, bob, aliceToken) = try await pairAcross(room, nodes[0], nodes[1])
        let token = try #require(aliceToken)
        alice.abort()  // no close frame: the seat is reserved
        try await bob.expect("PEER_LEFT")
        let squatter = try await TestWebSocket.connect(nodes[2].url)
        try await squatter.send(joinFrame(room))
        try await squatter.expect("ERROR", code: "SEAT_RESERVED")
        let back = try await TestWebSocket.connect(nodes[2].url)
        try await back.send(joinFrame(room, token: token))
        let joined = try await back.expect("JOINED")
        #expect(joined.object["token"] as? String == token)
        #expect(joined.object["peers"] as? Int == 2)
        try await back.expect("PEER_FOUND")
        try await bob.expect("PEER_FOUND")
        try await expectForwarded(from: back, to: bob)
        try await expectForwarded(from: bob, to: back)
    }

    @Test("kill -9 of a node: its peer's partner is told PEER_LEFT within the documented bound, and the peer rejoins through another node")
    func nodeDies() async throws {
        try await withCluster(nodes: 3) { _, nodes in try await Self.killNode(nodes) }
    }

    /// Alice on node 0 and Bob on node 1; kill -9 of node 0: Bob told PEER_LEFT within the bound,
    /// Alice's token through node 2 takes her seat back.
    static func killNode(_ nodes: [RelayProcess]) async throws {
        let room = uniqueRoom("KILL")
        let (alice, bob, aliceToken) = try await pairAcross(room, nodes[0], nodes[1])
        let token = try #require(aliceToken)
        try await expectForwarded(from: alice, to: bob)

        let killed = ContinuousClock.now
        nodes[0].process.send(signal: SIGKILL)
        try await bob.expect("PEER_LEFT", timeoutSeconds: 12)
        let told = ContinuousClock.now - killed
        // docs/RELAY.md: heartbeat TTL 4 s + check every 1 s + a round trip.
        #expect(told < .seconds(6), "PEER_LEFT after \(told)")

        let back = try await TestWebSocket.connect(nodes[2].url)
        try await back.send(joinFrame(room, token: token))
        #expect(try await back.expect("JOINED").object["peers"] as? Int == 2)
        try await back.expect("PEER_FOUND")
        try await bob.expect("PEER_FOUND")
        try await expectForwarded(from: back, to: bob)
        try await expectForwarded(from: bob, to: back)
    }

    @Test("Redis down: new JOINs get CLUSTER_UNAVAILABLE, /healthz says degraded, a local pair keeps talking; Redis back: rooms re-registered")
    func redisDown() async throws {
        let redis = try await RedisServer.start()
        let node = try await RelayProcess.start(["--redis", redis.url, "--node-id", "solo"])
        let other = try await RelayProcess.start(["--redis", redis.url, "--node-id", "other"])
        defer { Task { await node.kill(); await other.kill() } }
        try await waitHealthy(node)
        try await waitHealthy(other)
        let room = uniqueRoom("DOWN")
        let (alice, bob) = try await joinedPair(node, room: room)

        await redis.kill()
        try await waitHealthy(node, expected: "degraded")
        try await expectForwarded(from: alice, to: bob)
        try await expectForwarded(from: bob, to: alice)
        let late = try await TestWebSocket.connect(node.url)
        try await late.send(joinFrame(uniqueRoom("LATE")))
        try await late.expect("ERROR", code: "CLUSTER_UNAVAILABLE")
        #expect(try await node.metric(#"relay_rejections_total{reason="cluster_unavailable"}"#) == 1)

        // The same port, empty: the node registers its room again on its own.
        let restarted = try await RedisServer.start(port: redis.port)
        defer { Task { await restarted.kill() } }
        try await waitHealthy(node)
        try await waitHealthy(other)
        try await expectForwarded(from: alice, to: bob)
        let third = try await TestWebSocket.connect(other.url)
        try await third.send(joinFrame(room))
        try await third.expect("ERROR", code: "ROOM_FULL")
        #expect(try await node.metric("relay_cluster_available") == 1)
        await node.kill()
        await other.kill()
        await restarted.kill()
    }

    @Test("CLUSTER_UNAVAILABLE is retryable: securechat clients started while Redis is down keep retrying their JOIN and connect once it is back")
    func clientsRetryWhileRedisDown() async throws {
        let redis = try await RedisServer.start()
        let first = try await RelayProcess.start(["--redis", redis.url])
        let second = try await RelayProcess.start(["--redis", redis.url])
        defer { Task { await first.kill(); await second.kill() } }
        try await waitHealthy(first)
        try await waitHealthy(second)
        await redis.kill()
        try await waitHealthy(first, expected: "degraded")
        try await waitHealthy(second, expected: "degraded")
        let room = uniqueRoom("RETRY")
        let alice = try ClientProcess("alice", [room, "--relay", first.url, "--json"])
        let bob = try ClientProcess("bob", [room, "--relay", second.url, "--json"])
        try await alice.notice("relay_error")
        try await bob.notice("relay_error")
        let restarted = try await RedisServer.start(port: redis.port)
        defer { Task { await restarted.kill() } }
        try await alice.state("CONNECTED", timeoutSeconds: 60)
        try await bob.state("CONNECTED", timeoutSeconds: 60)
        try alice.type("after the outage")
        #expect(try await bob.messages(count: 1) == ["after the outage"])
        await alice.kill()
        await bob.kill()
        await first.kill()
        await second.kill()
        await restarted.kill()
    }

    @Test("A Redis restart mid-chat, peers on two nodes: what is typed during the outage arrives after it, once and in order, without the clients reconnecting")
    func redisRestartMidChat() async throws {
        try await withCluster(nodes: 2) { redis, nodes in
            let room = uniqueRoom("RESTART")
            let alice = try ClientProcess("alice", [room, "--relay", nodes[0].url, "--json"])
            let bob = try ClientProcess("bob", [room, "--relay", nodes[1].url, "--json"])
            try await alice.state("CONNECTED")
            try await bob.state("CONNECTED")
            let before = (1...3).map { "before \($0)" }
            for line in before { try alice.type(line) }
            #expect(try await bob.messages(count: 3) == before)
            await redis.kill()
            for node in nodes { try await waitHealthy(node, expected: "degraded") }
            let during = (1...3).map { "during \($0)" }
            for line in during { try alice.type(line) }
            let fromBob = (1...3).map { "bob during \($0)" }
            for line in fromBob { try bob.type(line) }
            try await Task.sleep(for: .seconds(1))
            let restarted = try await RedisServer.start(port: redis.port)
            defer { Task { await restarted.kill() } }
            #expect(try await bob.messages(count: 6, timeoutSeconds: 60) == before + during)
            #expect(try await alice.messages(count: 3, timeoutSeconds: 60) == fromBob)
            try await Task.sleep(for: .seconds(1))
            #expect(bob.messageTexts == before + during)
            #expect(alice.messageTexts == fromBob)
            // The room is back in Redis: a third party is refused.
            let third = try await TestWebSocket.connect(nodes[0].url)
            try await third.send(joinFrame(room))
            try await third.expect("ERROR", code: "ROOM_FULL")
            await alice.kill()
            await bob.kill()
            await restarted.kill()
        }
    }

    @Test("A peer leaves while Redis is down: its node keeps the departure and, once Redis is back, its partner on another node is told PEER_LEFT")
    func leaveWhileRedisDown() async throws {
        try await withCluster(nodes: 2) { redis, nodes in
            let room = uniqueRoom("GONE")
            let (alice, bob, _) = try await pairAcross(room, nodes[0], nodes[1])
            await redis.kill()
            for node in nodes { try await waitHealthy(node, expected: "degraded") }
            try await alice.close()
            let restarted = try await RedisServer.start(port: redis.port)
            defer { Task { await restarted.kill() } }
            try await bob.expect("PEER_LEFT", timeoutSeconds: 15)
            let carol = try await TestWebSocket.connect(nodes[0].url)
            try await carol.send(joinFrame(room))
            #expect(try await carol.expect("JOINED", timeoutSeconds: 15).object["peers"] as? Int == 2)
            try await carol.expect("PEER_FOUND")
            try await bob.expect("PEER_FOUND")
            await restarted.kill()
        }
    }

    @Test("Two securechat clients on different nodes connect, chat both ways, and nothing is lost")
    func clientsAcrossNodes() async throws {
        try await withCluster(nodes: 2) { _, nodes in
            let room = uniqueRoom("CHAT")
            let alice = try ClientProcess("alice", [room, "--relay", nodes[0].url, "--json"])
            let bob = try ClientProcess("bob", [room, "--relay", nodes[1].url, "--json"])
            try await alice.state("CONNECTED")
            try await bob.state("CONNECTED")
            let fromAlice = (1...5).map { "alice \($0)" }
            let fromBob = (1...5).map { "bob \($0)" }
            for line in fromAlice { try alice.type(line) }
            for line in fromBob { try bob.type(line) }
            #expect(try await bob.messages(count: 5) == fromAlice)
            #expect(try await alice.messages(count: 5) == fromBob)
            await alice.kill()
            await bob.kill()
        }
    }

    @Test("kill -9 of a node mid-chat: the partner is told PEER_LEFT, the client reconnects through another node and resumes; nothing lost or duplicated")
    func nodeDiesMidChat() async throws {
        try await withCluster(nodes: 3) { _, nodes in
            // Alice reaches the cluster through a load balancer, which moves her to node 2.
            let balancer = try RecordingProxy(relayPort: nodes[0].port)
            defer { balancer.stop() }
            let room = uniqueRoom("MID")
            let alice = try ClientProcess("alice", [room, "--relay", balancer.url, "--json"])
            let bob = try ClientProcess("bob", [room, "--relay", nodes[1].url, "--json"])
            try await alice.state("CONNECTED")
            try await bob.state("CONNECTED")
            let before = (1...5).map { "before \($0)" }
            for line in before { try alice.type(line) }
            #expect(try await bob.messages(count: 5) == before)

            balancer.retarget(relayPort: nodes[2].port)
            let killed = ContinuousClock.now
            nodes[0].process.send(signal: SIGKILL)
            let during = (1...5).map { "during \($0)" }
            for line in during { try alice.type(line) }
            let fromBob = (1...5).map { "bob \($0)" }
            for line in fromBob { try bob.type(line) }
            try await bob.notice("peer_left", timeoutSeconds: 12)
            #expect(ContinuousClock.now - killed < .seconds(6))
            // Everything arrives once, in order, on both sides.
            #expect(try await bob.messages(count: 10, timeoutSeconds: 60) == before + during)
            #expect(try await alice.messages(count: 5, timeoutSeconds: 60) == fromBob)
            try await Task.sleep(for: .seconds(1))
            #expect(bob.messageTexts == before + during)
            #expect(alice.messageTexts == fromBob)
            await alice.kill()
            await bob.kill()
        }
    }

    @Test("200 rooms, peers on random nodes: every SIGNAL arrives, in order, at the other peer only")
    func manyRooms() async throws {
        try await withCluster(nodes: 3, Self.loose) { _, nodes in
            let urls = nodes.map(\.url)
            // Rooms in parallel, 20 at a time (each a pair of real connections on random nodes).
            for batch in 0..<10 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in (batch * 20)..<(batch * 20 + 20) {
                        group.addTask { try await Self.chatInRoom(index, urls: urls) }
                    }
                    try await group.waitForAll()
                }
            }
        }
    }

    /// Two peers of a fresh room on random nodes (`across`: on nodes `index` and `index + 1`)
    /// send 5 SIGNALs each way; each gets exactly the other's, in order. `keepOpen`: the two
    /// connections are returned seated instead of closed.
    @discardableResult
    static func chatInRoom(
        _ index: Int, urls: [String], across: Bool = false, keepOpen: Bool = false
    ) async throws -> (TestWebSocket, TestWebSocket) {
        let room = uniqueRoom("MANY\(index)X")
        let first = try await TestWebSocket.connect(across ? urls[index % urls.count] : urls.randomElement()!)
        let second = try await TestWebSocket.connect(
            across ? urls[(index + 1) % urls.count] : urls.randomElement()!)
        try await first.send(joinFrame(room))
        try await first.expect("JOINED")
        try await second.send(joinFrame(room))
        try await second.expect("JOINED")
        try await second.expect("PEER_FOUND")
        try await first.expect("PEER_FOUND")
        for message in 0..<5 {
            try await first.send(signalFrame(kind: "MSG", payload: base64("\(index) to second \(message)")))
            try await second.send(signalFrame(kind: "MSG", payload: base64("\(index) to first \(message)")))
        }
        for message in 0..<5 {
            #expect(try await second.nextText() == signalFrame(kind: "MSG", payload: base64("\(index) to second \(message)")))
            #expect(try await first.nextText() == signalFrame(kind: "MSG", payload: base64("\(index) to first \(message)")))
        }
        if !keepOpen {
            try await first.close()
            try await second.close()
        }
        return (first, second)
    }

    @Test("What Redis and its operator see: no room code, token, plaintext or payload stored; no plaintext or room code on the wire to Redis")
    func redisSeesNoSecrets() async throws {
        try await withCluster(nodes: 2) { redis, nodes in
            let monitor = try TestProcess(
                "redis-cli", arguments: ["-p", "\(redis.port)", "monitor"],
                executableURL: URL(fileURLWithPath: "/usr/bin/redis-cli"))
            defer { Task { await monitor.kill() } }
            try await Task.sleep(for: .milliseconds(300))
            let room = uniqueRoom("SECRETROOM")
            let alice = try ClientProcess("alice", [room, "--relay", nodes[0].url, "--json"])
            let bob = try ClientProcess("bob", [room, "--relay", nodes[1].url, "--json"])
            try await alice.state("CONNECTED")
            try await bob.state("CONNECTED")
            let secret = "the plaintext nobody but bob may read"
            try alice.type(secret)
            #expect(try await bob.messages(count: 1) == [secret])
            // A raw pair too, whose reconnect tokens the test can read, one seat reserved.
            let rawRoom = uniqueRoom("TOKENROOM")
            let carol = try await TestWebSocket.connect(nodes[0].url)
            let dave = try await TestWebSocket.connect(nodes[1].url)
            try await carol.send(joinFrame(rawRoom))
            let carolToken = try #require(try await carol.expect("JOINED").object["token"] as? String)
            try await dave.send(joinFrame(rawRoom))
            let daveToken = try #require(try await dave.expect("JOINED").object["token"] as? String)
            try await dave.expect("PEER_FOUND")
            try await carol.expect("PEER_FOUND")
            carol.abort()
            try await dave.expect("PEER_LEFT")
            // What Redis stores: every key and value.
            let keys = try await redis.cli(["--scan"]).split(separator: "\n").map(String.init)
            let roomKeys = keys.filter { $0.hasPrefix("sc:") && !$0.hasPrefix("sc:node:") }
            var values = ""
            for key in roomKeys { values += try await redis.cli(["GET", key]) }
            let stored = keys.joined(separator: "\n") + values
            #expect(!roomKeys.isEmpty, "the room is in redis: \(keys)")
            #expect(keys.allSatisfy { $0.hasPrefix("sc:") }, "\(keys)")
            #expect(!stored.contains(room) && !stored.lowercased().contains(room.lowercased()))
            #expect(!stored.contains(rawRoom) && !stored.contains(carolToken) && !stored.contains(daveToken))
            // The seats (MessagePack) were read: dave's, held on node n1.
            #expect(values.contains("n1."), "the seats were read: \(values.debugDescription)")
            #expect(!stored.contains("SIGNAL") && !stored.contains("payload"))
            // What its operator watches go by: SIGNALs (ciphertext) published, never the plaintext
            // or the room code.
            await monitor.kill()
            let watched = monitor.stdout.all.joined(separator: "\n")
            #expect(watched.contains("PUBLISH") && watched.contains("SIGNAL"), "the monitor saw the traffic")
            #expect(!watched.contains(secret) && !watched.contains(base64(secret)))
            #expect(!watched.contains(room) && !watched.contains(rawRoom))
            #expect(!watched.contains(carolToken) && !watched.contains(daveToken))
            await alice.kill()
            await bob.kill()
        }
    }

    @Test("A node stalled past its heartbeat's TTL (SIGSTOP 6 s): its peer's partner is told PEER_LEFT, then PEER_FOUND again when it resumes, and its peer PEER_LEFT then PEER_FOUND (both sides open); SIGNALs flow again")
    func nodeStalls() async throws {
        try await withCluster(nodes: 2) { _, nodes in
            let room = uniqueRoom("STALL")
            let (alice, bob, _) = try await pairAcross(room, nodes[0], nodes[1])
            nodes[0].process.send(signal: SIGSTOP)
            try await bob.expect("PEER_LEFT", timeoutSeconds: 10)
            try await Task.sleep(for: .seconds(1))
            nodes[0].process.send(signal: SIGCONT)
            try await bob.expect("PEER_FOUND", timeoutSeconds: 10)
            // Bob was told Alice left (her node was taken for dead): she is told the same, then
            // PEER_FOUND, so a lost PEER_FOUND on one side is repaired by the other's opening.
            try await alice.expect("PEER_LEFT", timeoutSeconds: 10)
            try await alice.expect("PEER_FOUND", timeoutSeconds: 10)
            try await expectForwarded(from: bob, to: alice)
            try await expectForwarded(from: alice, to: bob)
        }
    }

    @Test("SIGTERM of a node: its peers get SHUTTING_DOWN, their partners on other nodes PEER_LEFT at once; the node exits 0")
    func nodeStops() async throws {
        try await withCluster(nodes: 2) { _, nodes in
            let room = uniqueRoom("STOP")
            let (alice, bob, _) = try await pairAcross(room, nodes[0], nodes[1])
            let stopped = ContinuousClock.now
            nodes[0].process.send(signal: SIGTERM)
            try await alice.expect("ERROR", code: "SHUTTING_DOWN")
            try await bob.expect("PEER_LEFT", timeoutSeconds: 3)
            #expect(ContinuousClock.now - stopped < .seconds(2), "told at once, not after the heartbeat's TTL")
            #expect(try await nodes[0].process.waitForExit() == 0)
        }
    }

    @Test("Cluster flags: a password in the URL, another scheme, a CA file without rediss://, a node id without --redis or with bad characters are refused at startup")
    func flagValidation() async throws {
        for (arguments, flag) in [
            (["--redis", "redis://:secret@127.0.0.1:6379"], "--redis"), (["--redis", "http://127.0.0.1:6379"], "--redis"),
            (["--redis", "redis://127.0.0.1:6379", "--redis-ca-file", "/etc/hostname"], "--redis-ca-file"),
            (["--node-id", "a"], "--node-id"), (["--redis", "redis://127.0.0.1:6379", "--node-id", "a b"], "--node-id"),
            (["--redis-password-file", "/nonexistent"], "--redis-password-file"),
        ] {
            let relay = try TestProcess("relay", arguments: ["--port", "0", "--metrics-port", "0"] + arguments)
            #expect(try await relay.waitForExit() != 0, "\(arguments)")
            _ = try await relay.stderr.first(timeoutSeconds: 5) { $0.contains(flag) }
            #expect(relay.stderr.all.joined().contains(flag), "\(arguments): \(relay.stderr.all)")
            #expect(!relay.stderr.all.joined().contains("secret"), "the password is not echoed")
        }
    }

    @Test("--redis-password-file: a node authenticates to a Redis that requires a password (and a wrong one is not served)")
    func passwordFile() async throws {
        let port = try freeLoopbackPort()
        let process = try TestProcess(
            "redis-server",
            arguments: ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--requirepass", "s3cret-pass"],
            executableURL: URL(fileURLWithPath: "/usr/bin/redis-server"))
        defer { Task { await process.kill() } }
        _ = try await process.stdout.first(timeoutSeconds: 20) { $0.contains("Ready to accept connections") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good").path
        let bad = directory.appendingPathComponent("bad").path
        try "s3cret-pass\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "wrong\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let node = try await RelayProcess.start(["--redis", "redis://127.0.0.1:\(port)", "--redis-password-file", good])
        defer { Task { await node.kill() } }
        try await waitHealthy(node)
        let refused = try await RelayProcess.start(["--redis", "redis://127.0.0.1:\(port)", "--redis-password-file", bad])
        defer { Task { await refused.kill() } }
        try await Task.sleep(for: .seconds(1))
        try await waitHealthy(refused, expected: "degraded")
        let socket = try await TestWebSocket.connect(refused.url)
        try await socket.send(joinFrame(uniqueRoom("AUTH")))
        try await socket.expect("ERROR", code: "CLUSTER_UNAVAILABLE")
        await node.kill()
        await refused.kill()
        await process.kill()
    }

    @Test("rediss://: nodes reach a TLS-only Redis with --redis-ca-file and pair across nodes; without the CA (or with redis://) they are not served")
    func redisOverTLS() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        try makeSelfSignedCertificate(certificate: certificate, key: key)
        let port = try freeLoopbackPort()
        let redis = try TestProcess(
            "redis-server",
            arguments: ["--port", "0", "--tls-port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--tls-cert-file", certificate, "--tls-key-file", key, "--tls-ca-cert-file", certificate,
                        "--tls-auth-clients", "no"],
            executableURL: URL(fileURLWithPath: "/usr/bin/redis-server"))
        defer { Task { await redis.kill() } }
        _ = try await redis.stdout.first(timeoutSeconds: 20) { $0.contains("Ready to accept connections") }
        let url = "rediss://127.0.0.1:\(port)"
        let first = try await RelayProcess.start(["--redis", url, "--redis-ca-file", certificate])
        defer { Task { await first.kill() } }
        let second = try await RelayProcess.start(["--redis", url, "--redis-ca-file", certificate])
        defer { Task { await second.kill() } }
        let untrusting = try await RelayProcess.start(["--redis", url])
        defer { Task { await untrusting.kill() } }
        let plain = try await RelayProcess.start(["--redis", "redis://127.0.0.1:\(port)"])
        defer { Task { await plain.kill() } }
        try await waitHealthy(first)
        try await waitHealthy(second)
        let room = uniqueRoom("TLS")
        let alice = try await TestWebSocket.connect(first.url)
        let bob = try await TestWebSocket.connect(second.url)
        try await alice.send(joinFrame(room))
        try await alice.expect("JOINED")
        try await bob.send(joinFrame(room))
        try await bob.expect("JOINED")
        try await bob.expect("PEER_FOUND")
        try await alice.expect("PEER_FOUND")
        try await expectForwarded(from: alice, to: bob)
        try await expectForwarded(from: bob, to: alice)
        for node in [untrusting, plain] {
            try await waitHealthy(node, expected: "degraded")
            let socket = try await TestWebSocket.connect(node.url)
            try await socket.send(joinFrame(room))
            try await socket.expect("ERROR", code: "CLUSTER_UNAVAILABLE")
        }
        for node in [first, second, untrusting, plain] { await node.kill() }
        await redis.kill()
    }

    @Test("relay-bench with several --url: each room's two clients on different nodes; messages flow, JOIN latency reported")
    func benchAcrossNodes() async throws {
        let limits = ["--messages-per-second", "100000", "--message-burst", "100000"] + Self.loose
        try await withCluster(nodes: 2, limits) { _, nodes in
            let bench = try TestProcess(
                "relay-bench",
                arguments: ["load", "--url", nodes[0].url, "--url", nodes[1].url, "--rooms", "4", "--window", "4",
                            "--duration-seconds", "1", "--warmup-seconds", "0", "--json"])
            #expect(try await bench.waitForExit(timeoutSeconds: 60) == 0, "\(bench.stderr.all.suffix(5))")
            let output = bench.stdout.all.joined(separator: "\n")
            let result = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
            #expect((result["messages_received"] as? Int ?? 0) > 0)
            let errors = try #require(result["errors"] as? [String: Int])
            #expect(errors.values.allSatisfy { $0 == 0 }, "errors: \(errors)")
            let join = try #require(result["join_to_peer_found_us"] as? [String: Double])
            #expect((join["p50"] ?? 0) > 0 && (join["p99"] ?? 0) >= (join["p50"] ?? 0))
            // Both nodes forwarded: the peers were split.
            for node in nodes { #expect(try await node.metric("relay_frames_forwarded_total") ?? 0 > 0) }
        }
    }
}
