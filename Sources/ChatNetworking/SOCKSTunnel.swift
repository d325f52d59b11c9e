import NIOCore
import NIOSOCKS
import Synchronization

/// The SOCKS5 handlers at the front of a channel's pipeline: ours for authentication, then
/// NIOSOCKS's client for the CONNECT request, then a recorder of how the tunnel fared.
public enum SOCKSTunnel {
    /// Add the SOCKS5 handlers to `channel` (first thing in its initializer, before TLS and HTTP):
    /// the handlers that follow can write at once, NIOSOCKS holds their bytes until the tunnel to
    /// `host`:`port` is open.
    ///
    /// - Parameters:
    ///   - host: the relay's host name, sent to the proxy as a name (never resolved here), or an IP
    ///     literal, sent as an address. At most 255 bytes (NIOSOCKS traps on longer names;
    ///     `WebSocketURL` refuses them, and so does this function).
    ///   - record: learns whether the tunnel opened, or the proxy's typed error.
    public static func addHandlers(
        to channel: any Channel, authentication: SOCKSAuthentication, host: String, port: Int,
        record: SOCKSHandshakeRecord
    ) throws {
        let target = try targetAddress(host: host, port: port)
        let handlers: [any ChannelHandler] = [
            SOCKSAuthenticationHandler(authentication: authentication),
            SOCKSClientHandler(targetAddress: target),
            SOCKSOutcomeRecorder(record: record),
        ]
        try channel.pipeline.syncOperations.addHandlers(handlers)
    }

    /// The CONNECT target: an IP literal as an address (parsed with inet_pton: no lookup), anything
    /// else as a domain name for the proxy to resolve.
    static func targetAddress(host: String, port: Int) throws -> SOCKSAddress {
        // NIOSOCKS writes the name's length as one byte and the port as two: out-of-range values
        // would trap there, so they are refused here with a typed error.
        guard !host.isEmpty, host.utf8.count <= 255, (1...65_535).contains(port) else {
            throw SOCKSProxyError.targetNotRepresentable
        }
        // SocketAddress(ipAddress:) is inet_pton: it parses literals and never resolves a name.
        if let address = try? SocketAddress(ipAddress: host, port: port) { return .address(address) }
        return .domain(host, port: port)
    }
}

/// What became of one connection's SOCKS handshake: filled in on the event loop, read after the
/// connection attempt failed, to report the proxy's own error rather than the channel's closing.
public final class SOCKSHandshakeRecord: Sendable {
    private struct State {
        var established = false
        var error: SOCKSProxyError?
    }

    private let state = Mutex(State())

    public init() {}

    /// The tunnel to the relay opened.
    public var established: Bool { state.withLock { $0.established } }
    /// The first error the proxy caused, if any.
    public var error: SOCKSProxyError? { state.withLock { $0.error } }

    func markEstablished() {
        state.withLock { $0.established = true }
    }

    func record(_ error: SOCKSProxyError) {
        state.withLock { state in
            if state.error == nil && !state.established { state.error = error }
        }
    }
}

/// After NIOSOCKS's handler: notes the tunnel's opening and the proxy's typed errors, and passes
/// everything on.
final class SOCKSOutcomeRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let record: SOCKSHandshakeRecord

    init(record: SOCKSHandshakeRecord) {
        self.record = record
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is SOCKSProxyEstablishedEvent { record.markEstablished() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let proxyError = SOCKSProxyError(error) { record.record(proxyError) }
        context.fireErrorCaught(error)
    }
}
