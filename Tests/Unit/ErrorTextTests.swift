import ChatCore
import ChatNetworking
import NIOCore
import Testing

@testable import ChatClient
@testable import ClientCore

#if canImport(Glibc)
import Glibc
#endif

@Suite("Errors for people: what happened and what to do, in one line")
struct ErrorTextTests {
    static let problems: [RelayProblem] = [
        .hostNotFound(host: "relay.invalid"), .refused(endpoint: "127.0.0.1:9"), .unreachable(endpoint: "10.0.0.1:80"),
        .timedOut(endpoint: "127.0.0.1:9", seconds: 10), .closedDuringHandshake(endpoint: "h:1", usesTLS: true),
        .closedDuringHandshake(endpoint: "h:1", usesTLS: false), .notWebSocket(endpoint: "h:1"),
        .notHTTP(endpoint: "h:1"),
        .certificateUntrusted, .certificateExpired, .certificateNotYetValid, .certificateWrongHost(host: "h"),
        .notTLS(endpoint: "h:1"), .tlsFailed, .caFileUnusable(path: "/tmp/ca.pem"), .reset, .unexpected,
    ]

    @Test("Every problem has its own one-line text with no type, errno or code in it")
    func everyProblemWorded() {
        let texts = Self.problems.map(ClientNotice.describe)
        #expect(Set(texts).count == texts.count, "two problems share a text")
        for text in texts {
            #expect(!text.isEmpty && !text.contains("\n") && text.count < 140, "\(text)")
            for dump in ["Error", "errno", "NIO", "SSL", "_", "(\"", "Optional"] {
                #expect(!text.contains(dump), "\(dump) in \(text)")
            }
        }
    }

    @Test("Which problems are permanent (no retry): TLS, not a relay, the CA file; network trouble is retried")
    func permanence() {
        let permanent = Self.problems.filter(\.isPermanent)
        #expect(permanent == [
            .notWebSocket(endpoint: "h:1"), .notHTTP(endpoint: "h:1"), .certificateUntrusted, .certificateExpired,
            .certificateNotYetValid, .certificateWrongHost(host: "h"), .notTLS(endpoint: "h:1"), .tlsFailed,
            .caFileUnusable(path: "/tmp/ca.pem"),
        ])
        let failure = TransportFailure(.certificateExpired, detail: "raw")
        #expect(failure.permanent)
        #expect(failure.reason.hasSuffix(" [raw]"))
        #expect(TransportFailure(.refused(endpoint: "a:1")).reason == ClientNotice.describe(.refused(endpoint: "a:1")))
    }

    @Test("NIO's errors are classified by type and errno, never by their text")
    func classify() throws {
        let url = try WebSocketURL("ws://127.0.0.1:9")
        let classify = { (error: any Error) in WebSocketRelayConnector.classify(error, url: url) }
        #expect(classify(IOError(errnoCode: ECONNREFUSED, reason: "connect")) == .refused(endpoint: "127.0.0.1:9"))
        #expect(classify(IOError(errnoCode: EHOSTUNREACH, reason: "connect")) == .unreachable(endpoint: "127.0.0.1:9"))
        #expect(classify(IOError(errnoCode: ECONNRESET, reason: "read")) == .reset)
        #expect(classify(IOError(errnoCode: EMFILE, reason: "socket")) == .unexpected)
        #expect(classify(ChannelError.connectTimeout(.seconds(10))) == .timedOut(endpoint: "127.0.0.1:9", seconds: 10))
        #expect(classify(ChannelError.ioOnClosedChannel)
            == .closedDuringHandshake(endpoint: "127.0.0.1:9", usesTLS: false))
        #expect(classify(WebSocketClientError.upgradeRefused) == .notWebSocket(endpoint: "127.0.0.1:9"))
        #expect(classify(WebSocketClientError.handshakeTimeout(seconds: 10))
            == .timedOut(endpoint: "127.0.0.1:9", seconds: 10))
        #expect(classify(WebSocketClientError.invalidCAFile(path: "/x.pem", reason: "NIOSSLError.failedToLoad"))
            == .caFileUnusable(path: "/x.pem"))
        let ipv6 = try WebSocketURL("ws://[::1]:8080")
        #expect(WebSocketRelayConnector.classify(IOError(errnoCode: ECONNREFUSED, reason: "connect"), url: ipv6)
            == .refused(endpoint: "[::1]:8080"))
    }

    @Test("An unverifiable certificate is told apart by its dates")
    func certificateDates() {
        let now = 1_700_000_000
        let current = CertificateValidity(notBefore: now - 100, notAfter: now + 100)
        #expect(WebSocketRelayConnector.certificateProblem(current, now: now) == .certificateUntrusted)
        #expect(WebSocketRelayConnector.certificateProblem(
            CertificateValidity(notBefore: now - 200, notAfter: now - 100), now: now) == .certificateExpired)
        #expect(WebSocketRelayConnector.certificateProblem(
            CertificateValidity(notBefore: now + 100, notAfter: now + 200), now: now) == .certificateNotYetValid)
        #expect(WebSocketRelayConnector.certificateProblem(nil, now: now) == .certificateUntrusted)
    }

    @Test("Every relay ERROR code has words of its own; the code and the relay's text only with --verbose")
    func relayErrors() {
        let texts = RelayErrorCode.allCases.map {
            ClientNotice.relayError($0, "relay-chosen text", verbose: false).text
        }
        for (code, text) in zip(RelayErrorCode.allCases, texts) {
            #expect(!text.contains(code.rawValue) && !text.contains("relay-chosen") && !text.contains("_"), "\(text)")
            let verbose = ClientNotice.relayError(code, "relay-chosen text", verbose: true).text
            #expect(verbose == text + " [relay: \(code.rawValue): relay-chosen text]")
        }
        #expect(ClientNotice.relayError(.roomFull, "", verbose: false).level == .error)
        #expect(ClientNotice.relayError(.rateLimited, "", verbose: false).level == .warning)
        #expect(ClientNotice.relayError(.rateLimited, "", verbose: false).text.contains("nothing is lost"))
    }

    @Test("Close codes and ended sessions are worded without numbers or codes")
    func closesAndEnds() {
        #expect(ClientNotice.linkClosed(closeFrame: false, closeCode: nil) == "the connection closed")
        #expect(ClientNotice.linkClosed(closeFrame: true, closeCode: 1001) == "the relay is going away (restarting?)")
        #expect(ClientNotice.linkClosed(closeFrame: true, closeCode: 1008)
            == "the relay closed the connection for going past its limits")
        #expect(ClientNotice.linkClosed(closeFrame: true, closeCode: 4000) == "the relay closed the connection")
        #expect(ClientNotice.ended(.relayRefused(.roomFull), cause: nil).text
            == "session ended (the relay refused the room); keys wiped")
    }
}
