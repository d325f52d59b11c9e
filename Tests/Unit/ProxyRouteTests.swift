import ChatCore
import Testing

@testable import ClientCore

/// The driver's side of --proxy and --tor: what the user reads, what is retried, and where the
/// route shows (the first notices, the status, /status).
@Suite("Proxy route in the driver")
struct ProxyRouteTests {
    static let tor = RelayRoute.tor(endpoint: "127.0.0.1:9050")
    static let proxy = RelayRoute.proxy(endpoint: "127.0.0.1:1080")

    func driver(route: RelayRoute, interactive: Bool = true) -> ClientDriver {
        ClientDriver(
            configuration: DriverConfiguration(
                session: SessionConfiguration(room: try! RoomCode("ROOM1")), interactive: interactive, route: route),
            entropy: SystemEntropy())
    }

    func notices(_ actions: [ClientAction]) -> [ClientNotice] {
        actions.compactMap { if case let .display(.notice(notice)) = $0 { notice } else { nil } }
    }

    @Test("The first notice says how the relay is reached: via Tor, via proxy HOST:PORT, nothing when direct")
    func firstNotice() {
        for (route, text) in [(Self.tor, "connecting to the relay via Tor"),
                              (Self.proxy, "connecting to the relay via proxy 127.0.0.1:1080"),
                              (.direct, "connecting to the relay")] {
            let driver = driver(route: route)
            driver.handle(.start, now: .zero)
            #expect(notices(driver.drainActions()).first?.text == text)
            #expect(driver.status.route == route)
        }
    }

    @Test("/status shows the route (and /help lists /status)")
    func statusCommand() {
        let driver = driver(route: Self.tor)
        driver.handle(.start, now: .zero)
        _ = driver.drainActions()
        driver.handle(.line("/status"), now: .zero)
        let info = driver.drainActions().compactMap { if case let .display(.info(lines)) = $0 { lines } else { nil } }
        #expect(info.count == 1)
        #expect(info.first?.contains("  relay    connecting, via Tor (127.0.0.1:9050); the relay does not see this "
            + "machine's address") == true, "\(info)")
        #expect(ClientDriver.helpLines.contains { $0.hasPrefix("  /status") })
    }

    @Test("--tor with nothing on 9050: the words name 9050 and Tor Browser's 9150, and the client keeps trying")
    func torNotRunning() {
        let problem = RelayProblem.proxy(.unreachable, route: Self.tor, relay: "relay.onion:80")
        let text = ClientNotice.describe(problem)
        #expect(text.contains("127.0.0.1:9050") && text.contains("9150"), "\(text)")
        #expect(!problem.isPermanent)
    }

    @Test("Permanent proxy failures end the run; a refused or vanished relay behind the proxy is retried")
    func permanence() {
        let permanent: [ProxyProblem] = [
            .authenticationFailed, .noAcceptableMethod, .notSOCKS5, .refusedRelay(reply: 2), .refusedRelay(reply: 0xF6),
        ]
        let transient: [ProxyProblem] = [
            .unreachable, .closed, .timedOut(seconds: 60), .refusedRelay(reply: 1), .refusedRelay(reply: 5),
            .refusedRelay(reply: 0xF0), .refusedRelay(reply: 0xF7),
        ]
        for problem in permanent {
            #expect(RelayProblem.proxy(problem, route: Self.proxy, relay: "x:1").isPermanent, "\(problem)")
        }
        for problem in transient {
            #expect(!RelayProblem.proxy(problem, route: Self.proxy, relay: "x:1").isPermanent, "\(problem)")
        }
    }

    @Test("The typed SOCKS reply is in the words: which relay, what the proxy said, its code")
    func replyWords() {
        let text = ClientNotice.describe(.proxy(.refusedRelay(reply: 5), route: Self.proxy, relay: "localhost:8080"))
        #expect(text == "the proxy at 127.0.0.1:1080 could not connect to localhost:8080: connection refused "
            + "(is the relay running?) (SOCKS reply 5)")
        let auth = ClientNotice.describe(.proxy(.authenticationFailed, route: Self.proxy, relay: "localhost:8080"))
        #expect(auth.contains("SECURECHAT_PROXY_USERNAME"))
    }
}
