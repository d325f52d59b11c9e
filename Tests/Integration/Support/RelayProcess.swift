import Foundation

/// A real `relay` process on loopback with kernel-chosen ports, parsed from its startup line
/// (`relay listening on ws://127.0.0.1:PORT metrics on http://127.0.0.1:PORT`).
final class RelayProcess: Sendable {
    let process: TestProcess
    /// `ws://127.0.0.1:PORT` (or `wss://`).
    let url: String
    let port: Int
    let metricsPort: Int

    /// The startup line did not appear or could not be parsed.
    struct StartFailure: Error, CustomStringConvertible {
        var output: [String]
        var description: String { "relay did not start: \(output.suffix(20).joined(separator: "\n"))" }
    }

    /// Start `relay --port 0 --metrics-port 0` plus `arguments`, and wait for its startup line.
    /// `strace`: run it under `strace -f` watching `ClientProcess.tracedSyscalls`; the trace goes
    /// to stderr with the relay's log.
    static func start(_ arguments: [String] = [], strace: Bool = false) async throws -> RelayProcess {
        let relayArguments = ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"] + arguments
        let process: TestProcess
        if strace {
            let binary = buildProductsDirectory().appendingPathComponent("relay")
            process = try TestProcess(
                "relay",
                arguments: ["-f", "-qq", "-e", "trace=" + ClientProcess.tracedSyscalls.joined(separator: ",")]
                    + [binary.path] + relayArguments,
                executableURL: URL(fileURLWithPath: "/usr/bin/strace"))
        } else {
            process = try TestProcess("relay", arguments: relayArguments)
        }
        guard
            let line = try await process.stdout.first(
                timeoutSeconds: 30, where: { $0.hasPrefix("relay listening on ") })
        else {
            await process.kill()
            throw StartFailure(output: process.stderr.all)
        }
        // relay listening on ws://127.0.0.1:PORT metrics on http://127.0.0.1:PORT
        let words = line.split(separator: " ")
        guard words.count == 7, let port = Self.port(of: words[3]), let metricsPort = Self.port(of: words[6]) else {
            await process.kill()
            throw StartFailure(output: [line])
        }
        return RelayProcess(process: process, url: String(words[3]), port: port, metricsPort: metricsPort)
    }

    private init(process: TestProcess, url: String, port: Int, metricsPort: Int) {
        self.process = process
        self.url = url
        self.port = port
        self.metricsPort = metricsPort
    }

    private static func port(of url: Substring) -> Int? {
        url.split(separator: ":").last.flatMap { Int($0) }
    }

    /// The `/metrics` text.
    func metrics() async throws -> String {
        try await httpGet(host: "127.0.0.1", port: metricsPort, path: "/metrics").body
    }

    /// One sample's value from `/metrics`, e.g. `relay_rejections_total{reason="room_full"}`.
    func metric(_ series: String) async throws -> Double? {
        let text = try await metrics()
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    /// SIGTERM and wait for the exit status.
    func terminate(timeoutSeconds: Double = 30) async throws -> Int32 {
        process.send(signal: SIGTERM)
        return try await process.waitForExit(timeoutSeconds: timeoutSeconds)
    }

    /// SIGKILL (cleanup).
    func kill() async {
        await process.kill()
    }
}
