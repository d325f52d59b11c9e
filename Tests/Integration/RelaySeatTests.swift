import Foundation
import Synchronization
import Testing

/// Seat reservation with real processes (issue 14, "Done when" (b)): a squatter who knows the
/// room polls JOIN while a peer's connection is cut; the peer reconnects with its reconnect token
/// and takes its seat back, and the session resumes. The control shows the attack is real: with
/// `--seat-grace-seconds 0` (seats freed at once, as before reservations) the squatter takes it.
@Suite("relay: a reconnecting peer keeps its seat", .serialized)
struct RelaySeatTests {
    /// A raw WebSocket connection that JOINs a room every 10 ms on a thread of its own (not the
    /// test's task pool, which the other tests crowd), and counts what it is answered by `type`
    /// (and `code` for an ERROR).
    final class Squatter: Sendable {
        let connection: Flooder
        let answers = Mutex<[String: Int]>([:])
        let joinsSent = Mutex(0)
        private let stopped = Mutex(false)

        init(port: Int) throws {
            connection = try Flooder(port: port)
        }

        /// Start polling `room` and reading the answers, until `stop`.
        func poll(room: String) {
            let join = Flooder.text(#"{"type":"JOIN","room":"\#(room)"}"#)
            Thread.detachNewThread { [self] in
                // Bounded by `stop`.
                while !stopped.withLock({ $0 }) {
                    connection.sendAll(join)
                    joinsSent.withLock { $0 += 1 }
                    usleep(10_000)
                }
            }
            Thread.detachNewThread { [self] in
                var bytes: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                // Bounded by `stop` and the connection's end.
                while !stopped.withLock({ $0 }) {
                    let count = read(connection.fd, &buffer, buffer.count)
                    if count == 0 { return }
                    if count < 0 {
                        usleep(2000)
                        continue
                    }
                    bytes += buffer[0..<count]
                    let (frames, consumed) = Flooder.decodeFrames(bytes)
                    bytes.removeFirst(consumed)
                    for frame in frames where frame.opcode == 0x1 {
                        let message = try? JSONMessage(frame.text)
                        let key = [message?.type, message?.code].compactMap { $0 }.joined(separator: " ")
                        answers.withLock { $0[key, default: 0] += 1 }
                    }
                }
            }
        }

        func stop() {
            stopped.withLock { $0 = true }
        }

        var joined: Int { answers.withLock { $0["JOINED", default: 0] } }
        var refused: Int { answers.withLock { $0["ERROR SEAT_RESERVED", default: 0] } }
    }

    /// The relay's room code and token (if any) of each JOIN alice's client sent, per connection,
    /// as the relay received them.
    static func joins(through proxy: RecordingProxy) throws -> [[(room: String, token: String?)]] {
        try proxy.connections.map { bytes in
            try WebSocketStream(bytes).messages.compactMap { payload in
                // A binary SIGNAL (securechat.binary) begins with its kind's length, never `{`.
                guard payload.first == UInt8(ascii: "{") else { return nil }
                let message = try JSONMessage(String(decoding: payload, as: UTF8.self))
                guard message.type == "JOIN", let room = message.object["room"] as? String else { return nil }
                return (room, message.object["token"] as? String)
            }
        }
    }

    /// Alice (through a proxy that can cut her connection) and bob in a room, one message each
    /// way; then a squatter polls JOIN on the relay room alice's client joined, and alice's
    /// connection is cut. Returns once `body` is done.
    static func squat(
        relayArguments: [String],
        _ body: (RelayProcess, ClientProcess, ClientProcess, Squatter, () throws -> [[(room: String, token: String?)]])
            async throws -> Void
    ) async throws {
        // The squatter is never slowed by the join rate or the message rate: what keeps the seat
        // must be the reservation alone.
        let arguments = ["--joins-per-address-per-minute", "100000", "--messages-per-second", "1000",
                         "--message-burst", "1000"] + relayArguments
        try await withRelay(arguments) { relay in
            let proxy = try RecordingProxy(relayPort: relay.port)
            defer { proxy.stop() }
            let room = uniqueRoom("SEAT")
            let extra = ["--json", "--give-up-after", "120"]
            let alice = try ClientProcess("alice", [room, "--relay", proxy.url] + extra)
            let bob = try ClientProcess("bob", [room, "--relay", relay.url] + extra)
            try await alice.state("CONNECTED")
            try await bob.state("CONNECTED")
            try alice.type("before the cut")
            #expect(try await bob.messages(count: 1) == ["before the cut"])
            let relayRoom = try #require(try joins(through: proxy).first?.first).room
            let squatter = try Squatter(port: relay.port)
            squatter.poll(room: relayRoom)
            defer { squatter.stop() }
            // Polling before the cut, so the squatter's JOIN is in flight at the moment the seat
            // would be free.
            try await Task.sleep(for: .milliseconds(300))
            // What the squatter learns (docs/SECURITY.md): with both peers there, ROOM_FULL only;
            // SEAT_RESERVED (below) only once one of them has dropped.
            let beforeCut = squatter.answers.withLock { $0 }
            #expect(beforeCut["ERROR ROOM_FULL", default: 0] >= 1 && squatter.refused == 0, "\(beforeCut)")
            // Alice's outage lasts at least a second: the squatter knocks all that time.
            proxy.cutConnections(holdSeconds: 1)
            try await alice.notice("relay_lost")
            try await body(relay, alice, bob, squatter) { try joins(through: proxy) }
            await alice.kill()
            await bob.kill()
        }
    }

    @Test("(b) A squatter polls JOIN every 10 ms while alice's connection is cut: alice reconnects with her token, takes her seat back, and the session resumes")
    func squatterPollingJoin() async throws {
        try await Self.squat(relayArguments: []) { relay, alice, bob, squatter, aliceJoins in
            let cut = ContinuousClock.now
            try await alice.notice("reconnected", timeoutSeconds: 30)
            let back = ContinuousClock.now - cut
            // Every SEAT_RESERVED came after the cut (`squat` checked there was none before it).
            // Counting from here instead missed them all in full runs: on a loaded machine the
            // client's relay_lost notice reaches the test after most of the outage (93 refusals
            // before it, 0 after, seen on the cluster branch).
            let refusedDuringOutage = squatter.refused
            try await alice.notice("rekeyed", timeoutSeconds: 30)
            try alice.type("after the cut")
            try bob.type("bob after the cut")
            #expect(try await bob.messages(count: 2) == ["before the cut", "after the cut"])
            #expect(try await alice.messages(count: 1) == ["bob after the cut"])
            let answers = squatter.answers.withLock { $0 }
            let joins = squatter.joinsSent.withLock { $0 }
            let summary = "alice back after \(back); squatter sent \(joins) JOINs, was answered \(answers), "
                + "\(refusedDuringOutage) SEAT_RESERVED during the outage"
            // The issue's scenario: back within 5 s (the outage is 1 s, then the client's retry).
            #expect(back < .seconds(5), "\(summary)")
            #expect(squatter.joined == 0, "\(summary)")
            // The squatter knocked while the seat was empty (about 100 times at 10 ms; fewer on a
            // loaded machine), and was refused every time.
            #expect(refusedDuringOutage >= 10, "\(summary)")
            #expect(try await relay.metric("relay_seats_reclaimed_total") ?? 0 >= 1, "\(summary)")
            // The JOIN after the reconnect carried the seat's token (32 hex digits).
            let joinsByConnection = try aliceJoins()
            #expect(joinsByConnection.count >= 2 && joinsByConnection[1].first?.token?.count == 32,
                    "\(joinsByConnection)")
            try alice.closeInput()
            try bob.closeInput()
            #expect(try await alice.waitForExit() == 0)
            #expect(try await bob.waitForExit() == 0)
        }
    }

    @Test("Control: with --seat-grace-seconds 0 the same squatter takes alice's seat at once")
    func squatterWithoutReservation() async throws {
        try await Self.squat(relayArguments: ["--seat-grace-seconds", "0"]) { _, _, _, squatter, _ in
            let deadline = ContinuousClock.now + .seconds(10)
            // Bounded by the deadline.
            while squatter.joined == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(squatter.joined >= 1, "\(squatter.answers.withLock { $0 })")
        }
    }
}
