import Foundation
import Testing

/// `relay-bench` against a real relay: it must pair, measure and report with nothing but the
/// original protocol (these runs are functional checks; the figures live in BENCHMARKS.md).
@Suite("relay-bench")
struct RelayBenchTests {
    static let openLimits = [
        "--messages-per-second", "100000", "--message-burst", "100000", "--connections-per-address-max", "1000",
        "--joins-per-address-per-minute", "100000",
        // The bench opens every connection before it joins any.
        "--roomless-connections-per-address-max", "1000",
    ]

    func runBench(_ arguments: [String]) async throws -> [String: Any] {
        let bench = try TestProcess("relay-bench", arguments: arguments + ["--json"])
        let status = try await bench.waitForExit(timeoutSeconds: 60)
        let output = bench.stdout.all.joined(separator: "\n")
        #expect(status == 0, "relay-bench failed: \(bench.stderr.all.suffix(5))")
        let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        return try #require(object, "relay-bench printed no JSON object: \(output)")
    }

    @Test("Load, closed loop: messages flow both ways, no errors, latency percentiles reported")
    func closedLoop() async throws {
        try await withRelay(Self.openLimits) { relay in
            let result = try await runBench([
                "load", "--url", relay.url, "--rooms", "3", "--window", "4", "--duration-seconds", "1",
                "--warmup-seconds", "0", "--relay-pid", String(relay.process.processIdentifier),
            ])
            let received = try #require(result["messages_received"] as? Int)
            #expect(received > 0)
            let errors = try #require(result["errors"] as? [String: Int])
            #expect(errors.values.allSatisfy { $0 == 0 }, "errors: \(errors)")
            let latency = try #require(result["latency_us"] as? [String: Double])
            #expect((latency["p50"] ?? 0) > 0)
            #expect((latency["p99"] ?? 0) >= (latency["p50"] ?? 0))
            #expect((result["relay_cpu_us_per_message"] as? Double ?? -1) >= 0)
            // The relay was woken for what it forwarded, a few times per message at most (its one
            // event loop; closed loop batches): its threads' schedstat was read, the right field.
            let woken = result["relay_scheduled_per_message"] as? Double ?? -1
            #expect(woken > 0 && woken < 10, "relay_scheduled_per_message \(woken)")
            #expect(try await relay.metric("relay_frames_forwarded_total") ?? 0 >= Double(received))
        }
    }

    @Test("Load, open loop at a fixed rate: about that many messages arrive")
    func openLoop() async throws {
        try await withRelay(Self.openLimits) { relay in
            let result = try await runBench([
                "load", "--url", relay.url, "--rooms", "2", "--rate", "200", "--message-bytes", "512",
                "--duration-seconds", "2", "--warmup-seconds", "0",
            ])
            let received = try #require(result["messages_received"] as? Int)
            let seconds = try #require(result["seconds"] as? Double)
            // 200 messages/s over the measured window (2 s, longer when the machine is starved: the
            // open loop then catches up on its schedule); generous bounds on a shared machine.
            let expected = 200 * seconds
            #expect(Double(received) > expected * 0.25 && Double(received) < expected * 1.5 + 50,
                    "received \(received) in \(seconds) s")
            #expect(result["frame_bytes"] as? Int == 511)
        }
    }

    @Test("Idle: N connections opened, held and counted; the relay's RSS is read")
    func idle() async throws {
        try await withRelay(Self.openLimits) { relay in
            let result = try await runBench([
                "idle", "--url", relay.url, "--connections", "40", "--hold-seconds", "1",
                "--relay-pid", String(relay.process.processIdentifier),
            ])
            #expect(result["opened"] as? Int == 40)
            #expect(result["still_up"] as? Int == 40)
            #expect((result["relay_rss_kib_held"] as? Int ?? -1) > 0)
        }
    }

    @Test("Idle against the per-address cap: refused connections are reported, not hidden")
    func idleOverCap() async throws {
        try await withRelay(["--connections-per-address-max", "10"]) { relay in
            let result = try await runBench([
                "idle", "--url", relay.url, "--connections", "15", "--hold-seconds", "2", "--no-join",
            ])
            #expect(result["opened"] as? Int == 15)
            #expect(result["still_up"] as? Int == 10)
            #expect(result["closed_early"] as? Int == 5)
            #expect(result["close_codes"] as? [String: Int] == ["1013": 5])
        }
    }
}
