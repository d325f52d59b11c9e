import ChatNetworking
import ClientCore

extension WebSocketURL {
    /// Whether the host is this machine: `localhost`, 127.0.0.0/8 or ::1 (as typed; a name is not
    /// resolved). Plain ws:// to anything else crosses a network.
    public var hostIsLoopback: Bool {
        let name = host.hasSuffix(".") ? String(host.dropLast()) : host
        if name == "localhost" || name.hasSuffix(".localhost") { return true }
        if hostIsIPAddress && !host.contains(":") { return name.hasPrefix("127.") }
        let words = host.lowercased().split(separator: "%", maxSplits: 1).first.map(String.init) ?? ""
        return ["::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"].contains(words) || words.hasPrefix("::ffff:127.")
    }

    /// The warning for plain ws:// across a network (nil for wss:// or a loopback relay).
    public var exposureWarning: ClientNotice? { exposureWarning(route: .direct) }

    /// The same for a relay reached on `route`. Through a proxy the path at risk is the one beyond
    /// it, and an onion service has none: Tor encrypts the whole way to it.
    public func exposureWarning(route: RelayRoute) -> ClientNotice? {
        if usesTLS || hostIsLoopback { return nil }
        switch route {
        case .direct: return .unencryptedRelay(host: hostHeader)
        case .tor, .proxy: return hostIsOnion ? nil : .unencryptedRelayBeyondProxy(host: hostHeader, route: route)
        }
    }
}
