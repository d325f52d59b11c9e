import ChatCore

/// How the client reaches the relay: straight, or through a SOCKS5 proxy (Tor's, or another).
/// The status line, `/status` and `--json`'s connection notices show it.
public enum RelayRoute: Hashable, Sendable {
    /// A TCP connection to the relay's address: the relay (and the network) sees this machine's.
    case direct
    /// Through Tor's SOCKS port at `endpoint` (`--tor`): the relay sees a Tor exit, or for an onion
    /// service nothing of the client's address.
    case tor(endpoint: String)
    /// Through the SOCKS5 proxy at `endpoint` (`--proxy`): the relay sees the proxy's address.
    case proxy(endpoint: String)

    /// "via Tor", "via proxy 127.0.0.1:1080", or nil when direct.
    public var summary: String? {
        switch self {
        case .direct: nil
        case .tor: "via Tor"
        case let .proxy(endpoint): "via proxy \(endpoint)"
        }
    }

    /// For `--json`: "direct", "tor" or "proxy".
    public var kind: String {
        switch self {
        case .direct: "direct"
        case .tor: "tor"
        case .proxy: "proxy"
        }
    }

    /// The proxy's address, when there is one.
    public var proxyEndpoint: String? {
        switch self {
        case .direct: nil
        case let .tor(endpoint), let .proxy(endpoint): endpoint
        }
    }
}

/// What went wrong at the SOCKS5 proxy (`RelayProblem.proxy`).
public enum ProxyProblem: Hashable, Sendable {
    /// Nothing accepts connections at the proxy's address (refused, no route, no answer).
    case unreachable
    /// The proxy closed the connection before the tunnel to the relay was open.
    case closed
    /// The proxy could not connect to the relay: RFC 1928's reply code, or Tor's extended one.
    case refusedRelay(reply: UInt8)
    /// The proxy refused the username and password.
    case authenticationFailed
    /// The proxy accepts none of the authentication methods offered.
    case noAcceptableMethod
    /// The proxy's answer is not SOCKS5, or breaks the protocol.
    case notSOCKS5
    /// The tunnel to the relay was not open within `seconds`.
    case timedOut(seconds: Int)

    /// True when trying again cannot help: the credentials, the methods, a proxy that is not one,
    /// and the replies that say so (not allowed by its rules, command or address type unsupported,
    /// and Tor's "no such onion service", "client authorization missing or wrong").
    var isPermanent: Bool {
        switch self {
        case .authenticationFailed, .noAcceptableMethod, .notSOCKS5: true
        case let .refusedRelay(reply): [0x02, 0x07, 0x08, 0xF4, 0xF5, 0xF6].contains(reply)
        case .unreachable, .closed, .timedOut: false
        }
    }
}

extension RelayRoute {
    /// The longest round trip between the client and the relay that a proxied route is planned
    /// for: Tor adds 1-3 s (three relays each way, six for an onion service).
    public static let proxiedRoundTripMax = Duration.seconds(3)

    /// `session` with timers that suit this route. Direct: unchanged. Through a proxy (Tor), no
    /// first retransmission before its answer can be back, so that a slow path does not
    /// multiply the traffic on it: JOIN waits out one round trip to the relay (4 s), a handshake
    /// frame or a message one round trip to the peer, which may cross two such paths (7 s). The
    /// link is TCP, so the timers only matter once a frame was really lost (a relay that dropped
    /// it, a reconnect), and over Tor waiting a few seconds more for that costs little; the
    /// message timer still follows the measured round trips from then on.
    public func sessionConfiguration(_ session: SessionConfiguration) -> SessionConfiguration {
        guard self != .direct else { return session }
        let margin = Duration.seconds(1)
        let toRelay = Self.proxiedRoundTripMax + margin
        let toPeer = Self.proxiedRoundTripMax * 2 + margin
        var adapted = session
        adapted.joinRetransmitInitial = max(session.joinRetransmitInitial, toRelay)
        adapted.handshakeRetransmitInitial = max(session.handshakeRetransmitInitial, toPeer)
        adapted.messageRetransmitInitial = max(session.messageRetransmitInitial, toPeer)
        // SessionConfiguration's rules: every first interval within the cap, the cap below the
        // handshake timeout (90 s by default: far above).
        adapted.retransmitMax = max(session.retransmitMax, toPeer)
        adapted.handshakeTimeout = max(session.handshakeTimeout, adapted.retransmitMax + margin)
        return adapted
    }

    /// The interactive goodbye's wait for this route: through a proxy at least one round trip to
    /// the peer over two slow paths and a retransmission's worth more (10 s), or the peer's last
    /// BYE arrives after the client has left.
    public func goodbyeTimeout(_ goodbyeTimeout: Duration) -> Duration {
        self == .direct ? goodbyeTimeout : max(goodbyeTimeout, Self.proxiedRoundTripMax * 2 + .seconds(4))
    }
}
