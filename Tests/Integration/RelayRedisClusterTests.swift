import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real 3-master Redis Cluster on free loopback ports (`redis-server --cluster-enabled yes` x3,
/// `redis-cli --cluster create`), persistence off, its files in a temporary directory.
final class RedisClusterServers: Sendable {
    let masters: [RedisServer]
    let directory: URL
    /// The relay is given one master; it finds the others (`CLUSTER SLOTS`).
    var url: String { masters[0].url }

    static func start(count: Int = 3) async throws -> RedisClusterServers {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var masters: [RedisServer] = []
        do {
            for _ in 0..<count {
                // The cluster bus on a free port of its own (its default, port + 10000, may be
                // taken or past 65535).
                let bus = try freeLoopbackPort()
                masters.append(try await RedisServer.start { port in
                    ["--cluster-enabled", "yes", "--cluster-config-file", directory.path + "/nodes-\(port).conf",
                     "--cluster-port", "\(bus)", "--dir", directory.path]
                })
            }
            let cluster = RedisClusterServers(masters: masters, directory: directory)
            try await cluster.create()
            return cluster
        } catch {
            for master in masters { await master.kill() }
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    private init(masters: [RedisServer], directory: URL) {
        self.masters = masters
        self.directory = directory
    }

    /// Assign the slots (`redis-cli --cluster create`) and wait until every master says
    /// `cluster_state:ok`.
    private func create() async throws {
        let create = try TestProcess(
            "redis-cli",
            arguments: ["--cluster", "create"] + masters.map { "127.0.0.1:\($0.port)" }
                + ["--cluster-replicas", "0", "--cluster-yes"],
            executableURL: URL(fileURLWithPath: "/usr/bin/redis-cli"))
        let status = try await create.waitForExit(timeoutSeconds: 30)
        guard status == 0 else {
            throw ClientTestFailure("redis-cli --cluster create: \(status) \(create.stdout.all.suffix(10))")
        }
        let deadline = ContinuousClock.now + .seconds(20)
        for master in masters {
            // Bounded by the deadline.
            while try await !master.cli(["cluster", "info"]).contains("cluster_state:ok") {
                guard ContinuousClock.now < deadline else { throw ClientTestFailure("cluster_state never ok") }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    func kill() async {
        for master in masters { await master.kill() }
        try? FileManager.default.removeItem(at: directory)
    }

    /// The master that serves `key`'s slot (the others answer `-MOVED`).
    func owner(of key: String) async throws -> Int {
        for (index, master) in masters.enumerated() where try await !master.cli(["exists", key]).contains("MOVED") {
            return index
        }
        throw ClientTestFailure("no master serves \(key)")
    }

    /// Move `key`'s slot, with its keys, from its master to master `target` (the steps of a
    /// resharding: IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE everywhere). `finish` false: stop
    /// after MIGRATE (the source answers `-ASK` for the moved keys); `finishMove` completes it.
    func moveSlot(of key: String, to target: Int, finish: Bool = true) async throws {
        let source = try await owner(of: key)
        guard source != target else { return }
        func trimmed(_ text: String) -> String { text.trimmingCharacters(in: .whitespacesAndNewlines) }
        let slot = trimmed(try await masters[0].cli(["cluster", "keyslot", key]))
        let sourceID = trimmed(try await masters[source].cli(["cluster", "myid"]))
        let targetID = trimmed(try await masters[target].cli(["cluster", "myid"]))
        _ = try await masters[target].cli(["cluster", "setslot", slot, "importing", sourceID])
        _ = try await masters[source].cli(["cluster", "setslot", slot, "migrating", targetID])
        let keys = try await masters[source].cli(["cluster", "getkeysinslot", slot, "100"])
        for key in keys.split(separator: "\n") where !key.isEmpty {
            _ = try await masters[source].cli(
                ["migrate", "127.0.0.1", "\(masters[target].port)", String(key), "0", "5000"])
        }
        if finish { try await finishMove(of: key, to: target) }
    }

    /// SETSLOT NODE on every master: `key`'s slot is `target`'s.
    func finishMove(of key: String, to target: Int) async throws {
        func trimmed(_ text: String) -> String { text.trimmingCharacters(in: .whitespacesAndNewlines) }
        let slot = trimmed(try await masters[0].cli(["cluster", "keyslot", key]))
        let targetID = trimmed(try await masters[target].cli(["cluster", "myid"]))
        for master in masters { _ = try await master.cli(["cluster", "setslot", slot, "node", targetID]) }
    }

    /// The sharded channel a relay node named `name` listens on (`sc:ch:<name>.<incarnation>`).
    func channel(ofNode name: String) async throws -> String {
        for master in masters {
            let channels = try await master.cli(["pubsub", "shardchannels"]).split(separator: "\n")
            if let channel = channels.first(where: { $0.hasPrefix("sc:ch:\(name).") }) { return String(channel) }
        }
        throw ClientTestFailure("no channel for node \(name)")
    }

    /// Whether node `name` is subscribed to its channel on the master that owns the channel's
    /// slot (and on no other).
    func subscribedOnOwner(_ name: String) async throws -> Bool {
        var listing: [Int] = []
        var channel = ""
        for (index, master) in masters.enumerated() {
            let channels = try await master.cli(["pubsub", "shardchannels"]).split(separator: "\n")
            if let found = channels.first(where: { $0.hasPrefix("sc:ch:\(name).") }) {
                listing.append(index)
                channel = String(found)
            }
        }
        guard listing.count == 1 else { return false }
        return try await owner(of: channel) == listing[0]
    }

    /// The room keys (`sc:` and 11 base64url characters) each master holds, in `masters` order.
    func roomKeysPerMaster() async throws -> [[String]] {
        var keys: [[String]] = []
        for master in masters {
            let scan = try await master.cli(["--scan", "--pattern", "sc:" + String(repeating: "?", count: 11)])
            keys.append(scan.split(separator: "\n").map(String.init))
        }
        return keys
    }
}

/// `count` relay nodes over a fresh 3-master Redis Cluster; all stopped after `body`.
func withRedisCluster<T>(
    nodes count: Int, _ arguments: [String] = [],
    _ body: (RedisClusterServers, [RelayProcess]) async throws -> T
) async throws -> T {
    let cluster = try await RedisClusterServers.start()
    do {
        let result = try await withRelayNodes(count, redisURL: cluster.url, arguments) { try await body(cluster, $0) }
        await cluster.kill()
        return result
    } catch {
        await cluster.kill()
        throw error
    }
}

/// The cluster relay over a real Redis Cluster (3 masters): rooms hash-tagged to one slot each,
/// spread over the shards; node channels sharded (SSUBSCRIBE/SPUBLISH on their slot's master).
/// The scenarios are RelayClusterTests' own, run against the Cluster.
@Suite("Cluster relay over a 3-master Redis Cluster", .serialized)
struct RelayRedisClusterTests {
    @Test("50 rooms, peers on different nodes: every SIGNAL arrives in order at the other peer; the rooms are on all three shards")
    func manyRoomsOnEveryShard() async throws {
        try await withRedisCluster(nodes: 3, RelayClusterTests.loose) { cluster, nodes in
            let urls = nodes.map(\.url)
            var open: [(TestWebSocket, TestWebSocket)] = []
            for batch in 0..<5 {
                try await withThrowingTaskGroup(of: (TestWebSocket, TestWebSocket).self) { group in
                    for index in (batch * 10)..<(batch * 10 + 10) {
                        group.addTask {
                            try await RelayClusterTests.chatInRoom(index, urls: urls, across: true, keepOpen: true)
                        }
                    }
                    for try await pair in group { open.append(pair) }
                }
            }
            let keys = try await cluster.roomKeysPerMaster()
            #expect(keys.map(\.count).reduce(0, +) == 50, "\(keys.map(\.count))")
            #expect(keys.allSatisfy { !$0.isEmpty }, "rooms per shard: \(keys.map(\.count))")
            for (first, second) in open {
                try await first.close()
                try await second.close()
            }
        }
    }

    @Test("A JOIN race over the Cluster: 1,000 connections on 3 nodes JOIN 100 rooms at once; exactly two per room")
    func joinRace() async throws {
        try await withRedisCluster(nodes: 3, RelayClusterTests.loose + RelayClusterTests.slowJoins) { _, nodes in
            try await RelayClusterTests.raceJoins(nodes, connections: 1000, rooms: 100)
        }
    }

    @Test("Seat reservation across nodes over the Cluster: a cut peer's seat waits for its token, which takes it back through another node")
    func seatAcrossNodes() async throws {
        try await withRedisCluster(nodes: 3) { _, nodes in try await RelayClusterTests.reserveAcross(nodes) }
    }

    @Test("kill -9 of a node over the Cluster: its peer's partner told PEER_LEFT within the bound; the token takes the seat back through another node")
    func nodeDies() async throws {
        try await withRedisCluster(nodes: 3) { _, nodes in try await RelayClusterTests.killNode(nodes) }
    }

    @Test("kill -9 of a node over the Cluster, no seat reservation: a newcomer through another node gets the dead node's seat within the bound")
    func deadNodesSeatFreed() async throws {
        try await withRedisCluster(nodes: 3, ["--seat-grace-seconds", "0"] + RelayClusterTests.loose) { _, nodes in
            try await Self.freeDeadSeat(nodes)
        }
    }

    @Test("Resharding mid-chat: the room's slot (through its migration: ASK) and the nodes' channels' slots move to other masters; the nodes follow ASK and MOVED and subscribe again where their channels are; the pair keeps talking, a third is ROOM_FULL")
    func slotsMove() async throws {
        try await withRedisCluster(nodes: 3) { cluster, nodes in
            let room = uniqueRoom("MOVE")
            let (alice, bob, _) = try await pairAcross(room, nodes[0], nodes[1])
            try await expectForwarded(from: alice, to: bob)
            let roomKey = try #require(try await cluster.roomKeysPerMaster().joined().first)
            // Mid-migration: the room's key is on the new master, its slot still the old one's,
            // which answers -ASK: a JOIN through a third node follows it (ASKING) and finds the room.
            let roomTarget = (try await cluster.owner(of: roomKey) + 1) % 3
            try await cluster.moveSlot(of: roomKey, to: roomTarget, finish: false)
            let early = try await TestWebSocket.connect(nodes[2].url)
            try await early.send(joinFrame(room))
            try await early.expect("ERROR", code: "ROOM_FULL")
            try await expectForwarded(from: bob, to: alice)
            try await cluster.finishMove(of: roomKey, to: roomTarget)
            for name in ["n0", "n1"] {
                let channel = try await cluster.channel(ofNode: name)
                try await cluster.moveSlot(of: channel, to: (try await cluster.owner(of: channel) + 1) % 3)
            }
            // A SIGNAL published while a node subscribes again is lost (the session layer
            // retransmits); the nodes are subscribed again within a second or two.
            for name in ["n0", "n1"] {
                let deadline = ContinuousClock.now + .seconds(10)
                // Bounded by the deadline.
                while try await !cluster.subscribedOnOwner(name) {
                    #expect(ContinuousClock.now < deadline, "node \(name) never subscribed on its channel's master")
                    guard ContinuousClock.now < deadline else { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            try await Task.sleep(for: .seconds(1))
            for _ in 0..<3 {
                try await expectForwarded(from: alice, to: bob)
                try await expectForwarded(from: bob, to: alice)
            }
            let third = try await TestWebSocket.connect(nodes[2].url)
            try await third.send(joinFrame(room))
            try await third.expect("ERROR", code: "ROOM_FULL")
            try await alice.close()
            try await bob.expect("PEER_LEFT")
        }
    }

    /// Alice on node 0 and Bob on node 1, no seat reservation; a newcomer through node 2 is
    /// ROOM_FULL until node 0 is killed, then gets Alice's seat within the bound.
    static func freeDeadSeat(_ nodes: [RelayProcess]) async throws {
        let room = uniqueRoom("FREED")
        // Alice stays referenced: a dropped socket would close, and free her seat at once.
        let (alice, bob, _) = try await pairAcross(room, nodes[0], nodes[1])
        let newcomer = try await TestWebSocket.connect(nodes[2].url)
        try await newcomer.send(joinFrame(room))
        try await newcomer.expect("ERROR", code: "ROOM_FULL")
        let killed = ContinuousClock.now
        nodes[0].process.send(signal: SIGKILL)
        var seated = false
        // Bounded: 60 tries, 200 ms apart.
        for _ in 0..<60 where !seated {
            try await Task.sleep(for: .milliseconds(200))
            try await newcomer.send(joinFrame(room))
            let answer = try await newcomer.nextJSON()
            seated = answer.type == "JOINED"
            if !seated { #expect(answer.code == "ROOM_FULL", "\(answer)") }
        }
        let freed = ContinuousClock.now - killed
        #expect(seated, "the dead node's seat was never freed")
        // docs/RELAY.md: a seat lives 4 s past its node's last refresh (every 1 s).
        #expect(freed < .seconds(6), "seat freed after \(freed)")
        try await newcomer.expect("PEER_FOUND")
        try await bob.expect("PEER_LEFT", timeoutSeconds: 6)
        try await bob.expect("PEER_FOUND")
        try await expectForwarded(from: newcomer, to: bob)
        try await expectForwarded(from: bob, to: newcomer)
        withExtendedLifetime(alice) {}
    }
}
