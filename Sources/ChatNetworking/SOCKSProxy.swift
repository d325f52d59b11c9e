import NIOCore

/// A SOCKS5 proxy that every connection to the relay goes through (`--proxy`, `--tor`).
///
/// The relay's host name goes to the proxy in the CONNECT request (RFC 1928 address type 3, what
/// curl calls socks5h): the client resolves no name, so neither its DNS server nor its network sees
/// which relay it uses. For the same reason the proxy itself is given as an IP address: reaching it
/// needs no lookup either (`localhost` is read as 127.0.0.1 without one).
public struct SOCKSProxy: Hashable, Sendable {
    /// Where the proxy listens (always numeric).
    public let address: SocketAddress
    /// How it is shown to people: `127.0.0.1:9050`, `[::1]:1080`.
    public let endpoint: String
    /// What the client offers the proxy (RFC 1928 methods, RFC 1929 credentials).
    public let authentication: SOCKSAuthentication
    /// It is Tor's SOCKS port (`--tor`): the words of errors and of the status line say so.
    public let isTor: Bool

    /// The Tor daemon's SOCKS port.
    public static let torPort = 9050
    /// Tor Browser's SOCKS port.
    public static let torBrowserPort = 9150

    /// Tor on this machine (`--tor`): 127.0.0.1:9050, username/password only, with `credentials`
    /// (fresh random ones per run: Tor's IsolateSOCKSAuth, on by default, then gives this run
    /// circuits of its own, shared with no other program and no other run).
    public static func tor(credentials: SOCKSCredentials = .random()) -> SOCKSProxy {
        SOCKSProxy(
            address: try! SocketAddress(ipAddress: "127.0.0.1", port: torPort),  // A constant literal.
            endpoint: "127.0.0.1:\(torPort)", authentication: .usernamePasswordOnly(credentials), isTor: true)
    }

    private init(address: SocketAddress, endpoint: String, authentication: SOCKSAuthentication, isTor: Bool) {
        self.address = address
        self.endpoint = endpoint
        self.authentication = authentication
        self.isTor = isTor
    }

    /// Parse `socks5://HOST:PORT` (or `socks5h://`, the same here: names always go to the proxy).
    /// HOST is an IPv4 address, a bracketed IPv6 address, or `localhost`; PORT defaults to 1080.
    ///
    /// - Parameter credentials: the user's (from the environment): then username/password is the
    ///   only method offered. Without them the client offers "no authentication" and
    ///   username/password with fresh random credentials: a proxy that needs none uses none, and
    ///   a Tor SOCKS port (Tor Browser's, say) picks username/password and isolates the run.
    public init(url text: String, credentials: SOCKSCredentials?) throws(SOCKSProxyURLError) {
        guard text.utf8.count <= 512 else { throw .invalid("longer than 512 bytes") }
        let lowered = text.lowercased()
        // No Foundation in this module: the scheme is one of two fixed prefixes.
        guard let scheme = ["socks5://", "socks5h://"].first(where: { lowered.hasPrefix($0) }) else {
            throw .unsupportedScheme
        }
        var authority = lowered.dropFirst(scheme.count)
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        guard !authority.contains("@") else { throw .credentialsInURL }
        guard !authority.contains("/"), !authority.contains("?"), !authority.contains("#") else {
            throw .invalid("a proxy URL has no path")
        }
        let (host, port) = try Self.hostAndPort(authority)
        // `localhost` without a lookup: its meaning is fixed (RFC 6761 §6.3), /etc/hosts is not read.
        let numericHost = host == "localhost" ? "127.0.0.1" : host
        let address: SocketAddress
        do {
            // inet_pton only (SocketAddress(ipAddress:) never resolves): a name is refused, not looked up.
            address = try SocketAddress(ipAddress: numericHost, port: port)
        } catch {
            throw .hostNotAnAddress(String(host.prefix(64)))
        }
        let shown = numericHost.contains(":") ? "[\(numericHost)]:\(port)" : "\(numericHost):\(port)"
        let authentication: SOCKSAuthentication = if let credentials {
            .usernamePasswordOnly(credentials)
        } else {
            .noneOrUsernamePassword(.random())
        }
        self.init(address: address, endpoint: shown, authentication: authentication, isTor: false)
    }

    private static func hostAndPort(_ authority: Substring) throws(SOCKSProxyURLError) -> (String, Int) {
        var host = authority
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw .hostNotAnAddress(String(authority.prefix(64)))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let rest = authority[authority.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw .invalid("junk after the IPv6 address") }
                portText = rest.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        }
        guard !host.isEmpty else { throw .hostNotAnAddress("") }
        guard let portText else { return (String(host), 1080) }
        guard portText.count <= 5, portText.allSatisfy(\.isASCII), let port = Int(portText), (1...65_535).contains(port)
        else { throw .invalidPort(String(portText.prefix(8))) }
        return (String(host), port)
    }
}

/// What the client offers a SOCKS5 proxy.
public enum SOCKSAuthentication: Hashable, Sendable {
    /// Offer "no authentication" and username/password (RFC 1929) with these credentials; the
    /// proxy chooses.
    case noneOrUsernamePassword(SOCKSCredentials)
    /// Offer username/password only: a proxy that will not check them cannot pick "none" instead
    /// (for Tor, that would silently lose the stream isolation the credentials are for).
    case usernamePasswordOnly(SOCKSCredentials)

    /// The credentials sent when the proxy picks username/password.
    public var credentials: SOCKSCredentials {
        switch self {
        case let .noneOrUsernamePassword(credentials), let .usernamePasswordOnly(credentials): credentials
        }
    }

    /// The RFC 1928 method numbers offered, in order of preference.
    var methods: [UInt8] {
        switch self {
        case .noneOrUsernamePassword: [SOCKSMethod.none, SOCKSMethod.usernamePassword]
        case .usernamePasswordOnly: [SOCKSMethod.usernamePassword]
        }
    }
}

/// RFC 1929 credentials: each 1 to 255 bytes.
public struct SOCKSCredentials: Hashable, Sendable, CustomStringConvertible {
    public let username: [UInt8]
    public let password: [UInt8]

    public init(username: [UInt8], password: [UInt8]) throws(SOCKSProxyURLError) {
        // RFC 1929 §2: a length byte each, and a zero length is meaningless.
        guard (1...255).contains(username.count), (1...255).contains(password.count) else {
            throw .invalidCredentials
        }
        self.username = username
        self.password = password
    }

    /// Fresh random credentials (16 random bytes each, as 32 hex digits) from the system's CSPRNG.
    /// They authenticate nothing: they only tell Tor which connections belong together.
    public static func random() -> SOCKSCredentials {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        func hex() -> [UInt8] {
            (0..<16).flatMap { _ -> [UInt8] in
                let byte = UInt8.random(in: 0...255, using: &generator)
                return [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]]
            }
        }
        return try! SOCKSCredentials(username: hex(), password: hex())  // 32 bytes each: always valid.
    }

    /// Never the password (nor the username, which may identify the user).
    public var description: String { "SOCKS credentials (\(username.count)-byte username, not shown)" }
}

/// RFC 1928 §3 method numbers.
enum SOCKSMethod {
    static let none: UInt8 = 0x00
    static let usernamePassword: UInt8 = 0x02
    static let noAcceptable: UInt8 = 0xFF
}

/// Why a proxy setting was refused.
public enum SOCKSProxyURLError: Error, Hashable, Sendable, CustomStringConvertible {
    case unsupportedScheme
    case credentialsInURL
    case hostNotAnAddress(String)
    case invalidPort(String)
    case invalidCredentials
    case invalid(String)

    public var description: String {
        switch self {
        case .unsupportedScheme: "a proxy must be socks5://HOST:PORT"
        case .credentialsInURL:
            "no user:password@ in the proxy URL (other users can read the command line); set "
                + "SECURECHAT_PROXY_USERNAME and SECURECHAT_PROXY_PASSWORD instead"
        case let .hostNotAnAddress(host):
            "the proxy host \"\(host)\" is not an IP address; give the proxy's address (127.0.0.1, [::1]): with a "
                + "proxy the client looks up no name at all"
        case let .invalidPort(port): "invalid proxy port \"\(port)\" (1-65535)"
        case .invalidCredentials: "the proxy username and password must each be 1 to 255 bytes"
        case let .invalid(reason): "invalid proxy URL: \(reason)"
        }
    }
}
