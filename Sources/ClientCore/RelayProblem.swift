/// What went wrong on the way to the relay, as the shell classified a failure (the shell sees
/// NIO's and BoringSSL's errors; nothing of those reaches the user but through this). The driver
/// decides from it whether retrying can help (`isPermanent`); `ClientNotice.describe` words it for
/// people: what happened and what to do, in one line.
public enum RelayProblem: Hashable, Sendable {
    /// The relay's host name does not resolve.
    case hostNotFound(host: String)
    /// Nothing accepts connections at the address (connection refused).
    case refused(endpoint: String)
    /// No route to the host or its network.
    case unreachable(endpoint: String)
    /// No answer within `seconds`: to the TCP connection, or to the TLS and WebSocket handshakes.
    case timedOut(endpoint: String, seconds: Int)
    /// The server closed or reset the connection before the WebSocket handshake finished.
    case closedDuringHandshake(endpoint: String, usesTLS: Bool)
    /// The server answered, but not as a WebSocket server (a web server, another service).
    case notWebSocket(endpoint: String)
    /// The server's answer was not HTTP at all (a TLS server reached with ws://, another protocol).
    case notHTTP(endpoint: String)
    /// The relay's certificate does not chain to a trusted CA (self-signed, a private CA).
    case certificateUntrusted
    /// The relay's certificate has expired.
    case certificateExpired
    /// The relay's certificate is not valid yet (or this machine's clock is behind).
    case certificateNotYetValid
    /// The relay's certificate names another host than the URL's.
    case certificateWrongHost(host: String)
    /// The server does not speak TLS (a ws:// relay reached with wss://).
    case notTLS(endpoint: String)
    /// The TLS handshake failed some other way (no protocol version or cipher in common).
    case tlsFailed
    /// The CA file given with --ca-file cannot be used.
    case caFileUnusable(path: String)
    /// The connection was reset by the network or the relay.
    case reset
    /// A `.onion` relay without a proxy: it is reachable only through Tor.
    case onionWithoutTor(host: String)
    /// The SOCKS5 proxy on `route` failed: `relay` is the relay's host and port, as sent to it.
    case proxy(ProxyProblem, route: RelayRoute, relay: String)
    /// Anything not classified above (its detail is shown with --verbose).
    case unexpected

    /// True when trying again cannot help: the client then gives up at once (exit 3) instead of
    /// retrying until --give-up-after. A refused or timed-out connection, an unknown host name
    /// and a reset are transient: the relay may be restarting, the network coming back.
    public var isPermanent: Bool {
        switch self {
        case .notWebSocket, .notHTTP, .certificateUntrusted, .certificateExpired, .certificateNotYetValid,
             .certificateWrongHost, .notTLS, .tlsFailed, .caFileUnusable, .onionWithoutTor:
            true
        case .hostNotFound, .refused, .unreachable, .timedOut, .closedDuringHandshake, .reset, .unexpected:
            false
        case let .proxy(problem, _, _):
            problem.isPermanent
        }
    }
}

extension TransportFailure {
    /// A failure worded for people from its classification; `detail` (the raw error, only with
    /// --verbose) follows in brackets.
    public init(_ problem: RelayProblem, detail: String? = nil) {
        let reason = ClientNotice.withDetail(ClientNotice.describe(problem), detail)
        self.init(reason: reason, permanent: problem.isPermanent)
    }
}
