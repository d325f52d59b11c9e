/// A `ws://` or `wss://` URL (RFC 6455 §3): scheme, host, port and request target.
///
/// Hand-written rather than taken from Foundation's `URL`: the ws-URI grammar is small, we want
/// typed errors for each way it can be wrong, and the networking library should not pull in
/// Foundation for one parser. Fragments and user info are refused (RFC 6455 forbids fragments;
/// credentials in a relay URL would only leak into logs).
public struct WebSocketURL: Hashable, Sendable, CustomStringConvertible {
    /// The two WebSocket schemes.
    public enum Scheme: String, Hashable, Sendable {
        /// Plain TCP.
        case ws
        /// TLS (wss://).
        case wss

        /// 80 for ws, 443 for wss.
        public var defaultPort: Int {
            switch self {
            case .ws: 80
            case .wss: 443
            }
        }
    }

    /// The longest URL text accepted.
    public static let lengthMaxBytes = 2048

    public let scheme: Scheme
    /// The host name or IP literal, without the brackets of an IPv6 literal.
    public let host: String
    /// The TCP port (the scheme's default when the URL names none).
    public let port: Int
    /// The request target: a path starting with `/`, with the query if any.
    public let requestTarget: String

    /// Whether the connection uses TLS.
    public var usesTLS: Bool { scheme == .wss }

    /// Whether `host` is a Tor onion service (`….onion`): reachable only through Tor, and never to
    /// be looked up or connected to directly.
    public var hostIsOnion: Bool {
        let name = host.hasSuffix(".") ? host.dropLast() : Substring(host)
        return name == "onion" || name.hasSuffix(".onion")
    }

    /// Whether `host` is an IPv4 or IPv6 literal (and so must not be sent as TLS SNI).
    public var hostIsIPAddress: Bool { Self.isIPv4Literal(host) || host.contains(":") }

    /// The value of the HTTP `Host` header: `host[:port]`, with brackets around an IPv6 literal.
    public var hostHeader: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return port == scheme.defaultPort ? hostPart : "\(hostPart):\(port)"
    }

    public var description: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "\(scheme.rawValue)://\(hostPart):\(port)\(requestTarget)"
    }

    /// A URL from its parts.
    public init(scheme: Scheme, host: String, port: Int? = nil, requestTarget: String = "/") throws(WebSocketURLError) {
        guard !host.isEmpty else { throw .missingHost }
        guard Self.isValidHost(host) else { throw .invalidHost }
        let resolvedPort = port ?? scheme.defaultPort
        guard (1...65_535).contains(resolvedPort) else { throw .invalidPort(String(resolvedPort)) }
        guard requestTarget.hasPrefix("/"), !requestTarget.contains("#"),
            requestTarget.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else { throw .invalidPath }
        self.scheme = scheme
        self.host = host
        self.port = resolvedPort
        self.requestTarget = requestTarget
    }

    /// Parse `ws://host[:port][/path][?query]` or the same with `wss://`.
    public init(_ text: String) throws(WebSocketURLError) {
        guard text.utf8.count <= Self.lengthMaxBytes else { throw .tooLong }
        guard let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") else {
            throw .unsupportedScheme("")
        }
        let schemeText = text[..<colon].lowercased()
        guard let scheme = Scheme(rawValue: schemeText) else {
            throw .unsupportedScheme(String(schemeText.prefix(16)))
        }
        let rest = text[text.index(colon, offsetBy: 3)...]
        if rest.contains("#") { throw .fragmentNotAllowed }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = String(rest[authorityEnd...])
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        if authority.contains("@") { throw .userInfoNotAllowed }

        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            // An IPv6 literal: [addr] or [addr]:port.
            guard let close = authority.firstIndex(of: "]") else { throw .invalidHost }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let afterClose = authority[authority.index(after: close)...]
            if !afterClose.isEmpty {
                guard afterClose.hasPrefix(":") else { throw .invalidHost }
                portText = afterClose.dropFirst()
            }
            guard host.contains(":") else { throw .invalidHost }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        var port: Int?
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy(\.isASCII),
                let value = Int(portText)
            else { throw .invalidPort(String(portText.prefix(8))) }
            port = value
        }
        try self.init(scheme: scheme, host: String(host).lowercased(), port: port, requestTarget: target)
    }

    private static func isValidHost(_ host: String) -> Bool {
        guard host.utf8.count <= 255 else { return false }
        if host.contains(":") {
            // IPv6 literal: hex digits, colons, dots (embedded IPv4), and a zone after '%'.
            return host.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                    UInt8(ascii: "A")...UInt8(ascii: "F"), UInt8(ascii: ":"), UInt8(ascii: "."), UInt8(ascii: "%"):
                    true
                default:
                    false
                }
            }
        }
        // A registered name: letters, digits, '-', '.', '_' (RFC 3986 unreserved, no percent-encoding).
        return host.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
                true
            default:
                false
            }
        }
    }

    private static func isIPv4Literal(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCII) && (Int(part).map { $0 <= 255 } ?? false)
        }
    }
}

/// Why a WebSocket URL was refused.
public enum WebSocketURLError: Error, Hashable, Sendable, CustomStringConvertible {
    case tooLong
    case unsupportedScheme(String)
    case missingHost
    case invalidHost
    case invalidPort(String)
    case invalidPath
    case fragmentNotAllowed
    case userInfoNotAllowed

    public var description: String {
        switch self {
        case .tooLong: "URL longer than \(WebSocketURL.lengthMaxBytes) bytes"
        case let .unsupportedScheme(scheme):
            scheme.isEmpty ? "URL must start with ws:// or wss://" : "unsupported scheme \"\(scheme)\" (use ws or wss)"
        case .missingHost: "URL has no host"
        case .invalidHost: "URL host is not a valid name or IP literal"
        case let .invalidPort(port): "invalid port \"\(port)\" (1-65535)"
        case .invalidPath: "URL path must start with / and contain only visible ASCII"
        case .fragmentNotAllowed: "WebSocket URLs cannot have a #fragment"
        case .userInfoNotAllowed: "user:password@ is not allowed in a relay URL"
        }
    }
}
