import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every way of failing to reach or use a relay, for real (a TLS relay with certificates made at
/// test time, a closed port, a name that cannot resolve, a web server, a server that says nothing,
/// a full room): the client says in one line what happened and what to do; the raw error only
/// with --verbose.
@Suite("securechat errors read as sentences for people")
struct ClientErrorTextTests {
    /// What must never reach a person: type names, BoringSSL's error stack, errno, source paths.
    static let dumps = ["NIO", "BoringSSL", "Error", "error:", "errno", ".cc", ".swift", "SSL routines", "Optional("]

    /// Run a pipe-mode client with `arguments` until it exits; its notice and error texts, in order.
    static func run(_ arguments: [String], verbose: Bool = false) async throws -> (status: Int32, texts: [String]) {
        let client = try ClientProcess(
            "client",
            [uniqueRoom("ERR"), "--json", "--give-up-after", "1"] + arguments + (verbose ? ["--verbose"] : []))
        let status = try await client.waitForExit(timeoutSeconds: 60)
        let texts = client.events.filter { ["notice", "error"].contains($0["event"] as? String) }
            .compactMap { $0["text"] as? String }
        return (status, texts)
    }

    /// `texts` holds `expected` exactly, and none of them carries a dump.
    static func check(_ texts: [String], contains expected: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(texts.contains(expected), "expected \"\(expected)\" among:\n\(texts.joined(separator: "\n"))",
                sourceLocation: sourceLocation)
        for text in texts {
            for dump in dumps where text.contains(dump) {
                Issue.record("\"\(dump)\" in: \(text)", sourceLocation: sourceLocation)
            }
            #expect(!text.contains("\n"), "more than one line: \(text)", sourceLocation: sourceLocation)
        }
    }

    /// A temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("errors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// A relay serving TLS with a certificate made for the test: self-signed for localhost, or for
    /// `names` (and `expired`) from `makeCertificate`; the directory is removed afterwards.
    static func withTLSRelay(
        names: String? = nil, expired: Bool = false,
        _ body: (RelayProcess, _ certificate: String) async throws -> Void
    ) async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var certificate = directory.appendingPathComponent("cert.pem").path
        var key = directory.appendingPathComponent("key.pem").path
        if let names {
            (certificate, key) = try makeCertificate(in: directory, names: names, expired: expired)
        } else {
            try makeSelfSignedCertificate(certificate: certificate, key: key)
        }
        try await withRelay(["--tls-cert-file", certificate, "--tls-key-file", key]) { relay in
            try await body(relay, certificate)
        }
    }

    @Test("TLS: a self-signed certificate, untrusted: what it means and --ca-file; --verbose adds BoringSSL's reason")
    func untrustedCertificate() async throws {
        try await Self.withTLSRelay { relay, _ in
            let (status, texts) = try await Self.run(["--relay", relay.url])
            #expect(status == 3)
            Self.check(texts, contains: "cannot use the relay: the relay's TLS certificate is not trusted "
                + "(self-signed, or from a private CA?); pass that CA's certificate with --ca-file FILE")
            let verbose = try await Self.run(["--relay", relay.url], verbose: true)
            #expect(verbose.texts.contains { $0.contains("not trusted") && $0.contains("CERTIFICATE_VERIFY_FAILED") },
                    "\(verbose.texts)")
        }
    }

    @Test("TLS: an expired certificate, trusted with --ca-file: it has expired, and whose job renewing is")
    func expiredCertificate() async throws {
        try await Self.withTLSRelay(names: "IP:127.0.0.1,DNS:localhost", expired: true) { relay, certificate in
            let (status, texts) = try await Self.run(["--relay", relay.url, "--ca-file", certificate])
            #expect(status == 3)
            Self.check(texts, contains: "cannot use the relay: the relay's TLS certificate has expired; its operator "
                + "must renew it (or this machine's clock is wrong)")
        }
    }

    @Test("TLS: a trusted certificate for another name: use the name on the certificate")
    func mismatchedCertificate() async throws {
        try await Self.withTLSRelay(names: "DNS:relay.example") { relay, certificate in
            let (status, texts) = try await Self.run(["--relay", relay.url, "--ca-file", certificate])
            #expect(status == 3)
            Self.check(texts, contains: "cannot use the relay: the relay's TLS certificate is not for 127.0.0.1; use "
                + "the host name on its certificate in --relay")
        }
    }

    @Test("wss:// to a plain relay, and ws:// to a TLS relay: which scheme to use")
    func wrongScheme() async throws {
        try await withRelay { relay in
            let tlsURL = relay.url.replacingOccurrences(of: "ws://", with: "wss://")
            let (status, texts) = try await Self.run(["--relay", tlsURL])
            #expect(status == 3)
            Self.check(texts, contains: "cannot use the relay: 127.0.0.1:\(relay.port) does not speak TLS; if it is a "
                + "plain relay, use ws:// in --relay")
        }
        try await Self.withTLSRelay { relay, _ in
            let plainURL = relay.url.replacingOccurrences(of: "wss://", with: "ws://")
            let (status, texts) = try await Self.run(["--relay", plainURL])
            #expect(status == 3)
            Self.check(texts, contains: "cannot reach the relay: 127.0.0.1:\(relay.port) closed the connection during "
                + "the handshake; if the relay uses TLS, use wss:// in --relay")
        }
    }

    @Test("A CA file that is not one: which file, and what it must be (exit 1, before any connection)")
    func unusableCAFile() async throws {
        let client = try ClientProcess("client", [uniqueRoom("CA"), "--relay", "wss://127.0.0.1:9", "--ca-file",
                                                  "/nonexistent/ca.pem"])
        #expect(try await client.waitForExit() == 1)
        let stderr = client.stderr.all
        #expect(stderr.contains("securechat: error: cannot use the CA file /nonexistent/ca.pem; it must be a "
            + "readable PEM file of certificates"), "\(stderr)")
        for line in stderr {
            let text = line.replacingOccurrences(of: "securechat: error: ", with: "")
            for dump in Self.dumps { #expect(!text.contains(dump), "\(dump) in \(line)") }
        }
    }

    @Test("A closed port: nothing accepts connections there; is the relay running?")
    func closedPort() async throws {
        let port = try TinyServer.closedPort()
        let (status, texts) = try await Self.run(["--relay", "ws://127.0.0.1:\(port)"])
        #expect(status == 3)
        Self.check(texts, contains: "cannot reach the relay: nothing accepts connections at 127.0.0.1:\(port); is the "
            + "relay running? Check the address and port in --relay")
    }

    @Test("A host name that cannot resolve: check its spelling")
    func unresolvableHost() async throws {
        let (status, texts) = try await Self.run(["--relay", "ws://relay.invalid:8080"])
        #expect(status == 3)
        Self.check(texts, contains: "cannot reach the relay: cannot find the host relay.invalid; check its spelling in "
            + "--relay, and the network")
    }

    @Test("A plain web server: it answered, but it is not a securechat relay (at once, no retries)")
    func notAWebSocketServer() async throws {
        let server = try TinyServer(reply: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        defer { server.stop() }
        let (status, texts) = try await Self.run(["--relay", "ws://127.0.0.1:\(server.port)"])
        #expect(status == 3)
        Self.check(texts, contains: "cannot use the relay: 127.0.0.1:\(server.port) answered, but it is not a "
            + "securechat relay (a web server?); check the port and path in --relay")
    }

    @Test("A server that accepts and says nothing: no answer within the handshake timeout (10 s)")
    func silentServer() async throws {
        let server = try TinyServer(reply: nil)
        defer { server.stop() }
        let (status, texts) = try await Self.run(["--relay", "ws://127.0.0.1:\(server.port)"])
        #expect(status == 3)
        Self.check(texts, contains: "cannot reach the relay: no answer from 127.0.0.1:\(server.port) within 10 s; "
            + "check the address in --relay and any firewall in between")
    }

    @Test("ROOM_FULL: a third client is told the room has two people and what to do; the code only with --verbose")
    func roomFull() async throws {
        try await withRelay { relay in
            let room = uniqueRoom("FULL")
            let (alice, bob) = try await connectedPair(relay, room: room)
            for verbose in [false, true] {
                let carol = try ClientProcess(
                    "carol", [room, "--relay", relay.url, "--json"] + (verbose ? ["--verbose"] : []))
                #expect(try await carol.waitForExit() == 2)
                let texts = carol.events.filter { $0["event"] as? String == "error" }
                    .compactMap { $0["text"] as? String }
                let full = "the room already has two people in it; check the code with your peer, or start a new room"
                if verbose {
                    #expect(texts.contains { $0.hasPrefix(full + " [relay: ROOM_FULL: ") }, "\(texts)")
                } else {
                    Self.check(texts, contains: full)
                    #expect(!texts.contains { $0.contains("ROOM_FULL") }, "\(texts)")
                    let ended = "session ended (the relay refused the room); keys wiped"
                    #expect(carol.events.contains { $0["text"] as? String == ended })
                }
            }
            await alice.kill()
            await bob.kill()
        }
    }
}

/// A certificate for `names` (a subjectAltName list) made with `openssl ca`, which can date it in
/// the past (`openssl req -days` cannot): `expired` makes it valid for one day in 2020.
func makeCertificate(in directory: URL, names: String, expired: Bool) throws -> (certificate: String, key: String) {
    let path = { (name: String) in directory.appendingPathComponent(name).path }
    let configuration = """
        [ca]
        default_ca = test
        [test]
        database = \(path("index.txt"))
        new_certs_dir = \(directory.path)
        serial = \(path("serial"))
        default_md = sha256
        policy = any
        copy_extensions = copy
        [any]
        commonName = supplied
        """
    try configuration.write(toFile: path("ca.cnf"), atomically: true, encoding: .utf8)
    try "".write(toFile: path("index.txt"), atomically: true, encoding: .utf8)
    try "01\n".write(toFile: path("serial"), atomically: true, encoding: .utf8)
    let dates = expired ? ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] : ["-days", "1"]
    try runOpenSSL(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", path("key.pem"), "-out", path("request.csr"), "-subj", "/CN=test relay",
                    "-addext", "subjectAltName=\(names)", "-addext", "basicConstraints=critical,CA:TRUE"])
    try runOpenSSL(["ca", "-batch", "-config", path("ca.cnf"), "-selfsign", "-keyfile", path("key.pem"),
                    "-in", path("request.csr"), "-out", path("cert.pem")] + dates)
    return (path("cert.pem"), path("key.pem"))
}

private func runOpenSSL(_ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["openssl"] + arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ClientTestFailure("openssl \(arguments.first ?? "") failed: exit \(process.terminationStatus)")
    }
}
