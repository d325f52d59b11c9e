/// The words for a SOCKS5 proxy's problems (`--proxy`, `--tor`), and for `/status`.
extension ClientNotice {
    /// One line for people: what the proxy did, and what to do.
    static func describeProxy(_ problem: ProxyProblem, route: RelayRoute, relay: String) -> String {
        let endpoint = route.proxyEndpoint ?? "?"
        let isTor = if case .tor = route { true } else { false }
        let proxy = isTor ? "Tor (\(endpoint))" : "the proxy at \(endpoint)"
        let setting = isTor ? "--tor" : "--proxy (or SECURECHAT_PROXY)"
        switch problem {
        case .unreachable where isTor:
            return "nothing accepts connections at \(endpoint), Tor's SOCKS port: is Tor running? Tor Browser "
                + "listens on 9150 instead: use --proxy socks5://127.0.0.1:9150 (the client keeps trying)"
        case .unreachable:
            return "nothing accepts connections at the proxy \(endpoint); is it running? Check \(setting) "
                + "(the client keeps trying, through the proxy only)"
        case .closed:
            return "\(proxy) closed the connection before reaching the relay (restarting?); the client keeps trying"
        case let .refusedRelay(reply):
            return "\(proxy) could not connect to \(relay): \(socksReplyText(reply)) (SOCKS reply \(reply))"
        case .authenticationFailed where isTor:
            return "Tor (\(endpoint)) refused the stream's credentials, which Tor normally accepts: is it Tor?"
        case .authenticationFailed:
            return "the proxy at \(endpoint) refused the username and password; set SECURECHAT_PROXY_USERNAME "
                + "and SECURECHAT_PROXY_PASSWORD to the proxy's"
        case .noAcceptableMethod:
            return "the proxy at \(endpoint) accepts none of the authentication methods offered"
                + (isTor ? "" : "; if it needs a username and password, set SECURECHAT_PROXY_USERNAME and "
                    + "SECURECHAT_PROXY_PASSWORD")
        case .notSOCKS5:
            return "\(endpoint) did not answer as a SOCKS5 proxy (an HTTP or SOCKS4 proxy?); check \(setting)"
        case let .timedOut(seconds):
            return "\(proxy) did not reach the relay within \(seconds) s"
                + (isTor ? " (Tor can take a while to build a circuit); the client keeps trying" : "")
        }
    }

    /// The relay URL is ws:// to a host beyond the proxy (not an onion service).
    public static func unencryptedRelayBeyondProxy(host: String, route: RelayRoute) -> ClientNotice {
        let hop = if case .tor = route { "Tor's exit relay" } else { "the proxy" }
        return ClientNotice(
            .unencryptedRelay, .warning,
            "ws:// is not encrypted between \(hop) and \(host): anyone on that path sees the room and when and "
                + "how much you send (not your address, your messages or the password); use wss://")
    }

    /// RFC 1928 §6's reply codes, and Tor's extended ones for onion services (tor's socks-extensions.txt).
    static func socksReplyText(_ reply: UInt8) -> String {
        switch reply {
        case 0x01: "general failure"
        case 0x02: "not allowed by the proxy's rules"
        case 0x03: "network unreachable"
        case 0x04: "host unreachable (or its name does not resolve)"
        case 0x05: "connection refused (is the relay running?)"
        case 0x06: "no answer in time (TTL expired)"
        case 0x07: "command not supported"
        case 0x08: "address type not supported"
        case 0xF0: "onion service not found (its descriptor is not published: is the relay's Tor running?)"
        case 0xF1: "onion service descriptor invalid"
        case 0xF2: "onion service introduction failed"
        case 0xF3: "onion service rendezvous failed"
        case 0xF4: "onion service needs client authorization"
        case 0xF5: "onion service client authorization is wrong"
        case 0xF6: "invalid onion address; check --relay"
        case 0xF7: "onion service introduction timed out"
        default: "unknown reply"
        }
    }

    /// `/status`: the session, the room, the relay link and the route to it, the peer, what is pending.
    static func statusReport(_ status: ClientStatus) -> [String] {
        let relay = switch status.relay {
        case .up: "connected"
        case .connecting: "connecting"
        case .retrying: "reconnecting"
        case .closed: "closed"
        }
        let route = switch status.route {
        case .direct: "direct (the relay sees this machine's address)"
        case let .tor(endpoint): "via Tor (\(endpoint)); the relay does not see this machine's address"
        case let .proxy(endpoint): "via proxy \(endpoint); the relay sees the proxy's address"
        }
        let peer = switch status.peer {
        case .present: "in the room"
        case .absent: "not in the room"
        case .unknown: "unknown (reconnecting)"
        }
        let encryption = status.encrypted ? "end-to-end encrypted" : "not encrypted yet"
        let authentication = switch (status.authentication, status.verified) {
        case (_, true): "safety number verified"
        case (.password, false): "authenticated by the password"
        case (.safetyNumber, false): "no password: compare safety numbers with /verify"
        }
        return [
            "Status:",
            "  session  \(status.state.rawValue), \(encryption); \(authentication)",
            "  room     \(status.room.value)",
            "  relay    \(relay), \(route)",
            "  peer     \(peer)",
            "  pending  \(status.pending) message(s) not yet confirmed by the peer",
        ]
    }
}
