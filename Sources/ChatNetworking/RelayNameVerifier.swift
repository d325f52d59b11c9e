import NIOCore
import NIOSSL
import NIOTLS

/// Through a proxy, the relay's certificate must name the relay's host: a DNS name in its
/// subjectAltName (or, with no subjectAltName at all, its common name, which NIOSSL only ever
/// compares with the name).
///
/// Why: NIOSSL accepts a certificate whose IP-address SAN equals the address the socket is
/// connected to, even when a host name was given. Through a proxy that address is the proxy's:
/// any certificate for 127.0.0.1 from a trusted CA would then pass for every relay name. This
/// handler, right after NIOSSL's, closes the connection with NIOSSL's own "failed to validate
/// hostname" error when only an address could have matched; NIOSSL's full verification (chain,
/// dates, and the name itself) still runs before it.
final class RelayNameVerifier: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let host: String

    init(host: String) {
        self.host = host
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            let certificate = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self)
                .peerCertificate
            guard let certificate, Self.namesHost(certificate, host: host) else {
                context.fireErrorCaught(NIOSSLExtraError.failedToValidateHostname)
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Whether `certificate` names `host` by a DNS name (or has no SAN: then NIOSSL matched its CN
    /// against the name). `_subjectAlternativeNames` is NIOSSL's own accessor (underscored, public).
    static func namesHost(_ certificate: NIOSSLCertificate, host: String) -> Bool {
        let names = Array(certificate._subjectAlternativeNames())
        guard !names.isEmpty else { return true }
        return names.contains { name in
            name.nameType == .dnsName
                && matches(host: host, pattern: String(decoding: Array(name.contents), as: UTF8.self))
        }
    }

    /// RFC 6125 §6.4: exact (case-insensitive, without a final dot), or `*.` standing for exactly
    /// one leftmost label. Stricter than some matchers (no partial-label wildcards): a certificate
    /// refused here is refused, never accepted by mistake.
    static func matches(host: String, pattern: String) -> Bool {
        let withoutFinalDot = { (name: String) in name.hasSuffix(".") ? String(name.dropLast()) : name }
        let host = withoutFinalDot(host.lowercased())
        let pattern = withoutFinalDot(pattern.lowercased())
        guard !host.isEmpty, !pattern.isEmpty else { return false }
        if host == pattern { return true }
        // "*.example.org" matches "relay.example.org", not "example.org" nor "a.b.example.org"; a
        // wildcard over a single label ("*.org") matches nothing.
        guard pattern.hasPrefix("*.") else { return false }
        let suffix = pattern.dropFirst(2)
        guard suffix.contains("."), let dot = host.firstIndex(of: "."), dot != host.startIndex else { return false }
        return host[host.index(after: dot)...] == suffix
    }
}
