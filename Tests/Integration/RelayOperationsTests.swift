import ChatNetworking
import Foundation
import NIOWebSocket
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Operations: shutdown on signals, wss://, health and metrics, privacy of the logs.
@Suite("relay: operations")
struct RelayOperationsTests {
    @Test(
        "SIGTERM: every peer gets SHUTTING_DOWN and close 1001, then the relay exits 0", arguments: [SIGTERM, SIGINT])
    func gracefulShutdown(signal: Int32) async throws {
        let relay = try await RelayProcess.start()
        do {
            let (alice, bob) = try await joinedPair(relay, room: "BYE")
            let loner = try await TestWebSocket.connect(relay.url)
            relay.process.send(signal: signal)
            for client in [alice, bob, loner] {
                let (code, texts) = try await client.untilClose()
                #expect(code == .goingAway)
                #expect(try texts.map { try JSONMessage($0).code } == ["SHUTTING_DOWN"])
            }
            #expect(try await relay.process.waitForExit() == 0)
            let log = relay.process.stderr.all.joined(separator: "\n")
            #expect(log.contains("relay stopped"))
        } catch {
            await relay.kill()
            throw error
        }
    }

    @Test("wss:// with a self-signed certificate made at test time; an untrusting client is refused")
    func tls() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("relay-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        try makeSelfSignedCertificate(certificate: certificate, key: key)

        try await withRelay(["--tls-cert-file", certificate, "--tls-key-file", key]) { relay in
            #expect(relay.url.hasPrefix("wss://"))
            let alice = try await TestWebSocket.connect(relay.url, caFile: certificate)
            let bob = try await TestWebSocket.connect(relay.url, caFile: certificate)
            try await alice.send(joinFrame("SECURE"))
            try await alice.expect("JOINED")
            try await bob.send(joinFrame("SECURE"))
            try await bob.expect("JOINED")
            try await bob.expect("PEER_FOUND")
            try await alice.expect("PEER_FOUND")
            try await expectForwarded(from: alice, to: bob)
            try await expectForwarded(from: bob, to: alice)
            // Without the certificate in its trust store, a client must refuse the relay.
            await #expect(throws: (any Error).self) {
                _ = try await TestWebSocket.connect(relay.url)
            }
            // A plain ws:// client on the TLS port gets nowhere either, and the relay stays up.
            let plainURL = relay.url.replacingOccurrences(of: "wss://", with: "ws://")
            await #expect(throws: (any Error).self) {
                _ = try await TestWebSocket.connect(plainURL, timeoutSeconds: 5)
            }
            try await expectForwarded(from: alice, to: bob)
        }
    }

    @Test("/healthz and /metrics: counts only, no room codes or addresses; nothing of them in the logs")
    func metricsAndPrivacy() async throws {
        let room = "SECRETROOM42"
        let payload = Data("top secret payload".utf8).base64EncodedString()
        try await withRelay { relay in
            let health = try await httpGet(host: "127.0.0.1", port: relay.metricsPort, path: "/healthz")
            #expect(health.status == 200)
            #expect(health.body == "ok\n")

            let (alice, bob) = try await joinedPair(relay, room: room)
            try await expectForwarded(from: alice, to: bob, payload: payload)
            try await alice.send("not json")
            try await alice.expect("ERROR", code: "MALFORMED_JSON")
            let carol = try await TestWebSocket.connect(relay.url)
            try await carol.send(joinFrame(room))
            try await carol.expect("ERROR", code: "ROOM_FULL")

            let metrics = try await relay.metrics()
            #expect(try await relay.metric("relay_frames_forwarded_total") == 1)
            #expect(try await relay.metric("relay_rooms_open") == 1)
            #expect(try await relay.metric("relay_websockets_open") == 3)
            #expect(try await relay.metric("relay_connections_accepted_total") == 3)
            #expect(try await relay.metric(#"relay_rejections_total{reason="malformed"}"#) == 1)
            #expect(try await relay.metric(#"relay_rejections_total{reason="room_full"}"#) == 1)
            #expect(try await relay.metric("relay_bytes_forwarded_total") ?? 0 > 0)
            #expect(!metrics.contains(room))
            #expect(!metrics.contains(payload))
            #expect(!metrics.contains("127.0.0.1"))
            let notFound = try await httpGet(host: "127.0.0.1", port: relay.metricsPort, path: "/nope")
            #expect(notFound.status == 404)
            // A plain HTTP request on the WebSocket port is told to upgrade.
            let plain = try await httpGet(host: "127.0.0.1", port: relay.port, path: "/")
            #expect(plain.status == 426)

            #expect(try await relay.terminate() == 0)
            let log = relay.process.stderr.all.joined(separator: "\n")
            #expect(log.contains("relay started"))
            #expect(!log.contains(room))
            #expect(!log.contains(payload))
            #expect(!log.contains("127.0.0.1"))
        }
    }

    @Test("relay --help documents every flag; a bad limit is refused at startup with the flag's name")
    func helpAndValidation() async throws {
        let help = try TestProcess("relay", arguments: ["--help"])
        #expect(try await help.waitForExit() == 0)
        // The exit can be seen before the pipe's last bytes are read: wait for the last option.
        _ = try await help.stdout.first(timeoutSeconds: 10) { $0.contains("-h, --help") }
        let text = help.stdout.all.joined(separator: "\n")
        // Exactly these options, each as a whole word at the head of an OPTIONS line (a substring
        // check is satisfied by any text holding it: another flag's description, "--port-range").
        let expected: Set<String> = [
            "--host", "--port", "--tls-cert-file", "--tls-key-file", "--metrics-host", "--metrics-port",
            "--frame-size-max-bytes", "--messages-per-second", "--message-burst", "--bytes-per-second",
            "--byte-burst", "--connections-max", "--connections-per-address-max", "--joins-per-address-per-minute",
            "--rooms-max", "--handshake-timeout-seconds", "--idle-timeout-seconds", "--ping-interval-seconds",
            "--outbound-queue-high-bytes", "--outbound-queue-low-bytes", "--shutdown-grace-seconds", "--log-level",
            "--connections-per-ipv6-56-max", "--connections-per-ipv6-48-max", "--roomless-connections-per-address-max",
            "--trust-proxy", "--join-timeout-seconds", "--seat-grace-seconds", "--protocol-errors-max",
            "--paired-messages-per-second", "--paired-message-burst", "--paired-bytes-per-second",
            "--paired-byte-burst", "--no-paired-allowance",
            "--redis", "--redis-password-file", "--redis-ca-file", "--node-id", "--version", "--help", "-h",
        ]
        let listed = helpOptions(text)
        #expect(listed == expected,
                "missing \(expected.subtracting(listed).sorted()), unexpected \(listed.subtracting(expected).sorted())")
        // The check can fail: with the option renamed "--portx", the text still holds the
        // substring "--port", but not the option.
        let withoutPort = text.replacingOccurrences(of: "  --port ", with: "  --portx ")
        #expect(withoutPort.contains("--port") && !helpOptions(withoutPort).contains("--port"))
        let bad = try TestProcess("relay", arguments: ["--port", "0", "--byte-burst", "10"])
        #expect(try await bad.waitForExit() != 0)
        #expect(bad.stderr.all.joined().contains("--byte-burst"))
    }
}

/// Make a self-signed P-256 certificate for 127.0.0.1 and localhost with the `openssl` CLI.
func makeSelfSignedCertificate(certificate: String, key: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestWebSocket.Unexpected(
            expected: "openssl to make a certificate", got: "exit \(process.terminationStatus)")
    }
}
