import ChatCore
import NIOCore
import NIOHTTP1

/// Write a complete small HTTP response and close the connection.
private func respond(
    context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String = "text/plain; charset=utf-8",
    body: [UInt8]
) {
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: contentType)
    headers.add(name: "Content-Length", value: String(body.count))
    headers.add(name: "Connection", value: "close")
    let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
    context.write(
        NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
    let written = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: written)
    written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
}

/// Refuses plain HTTP requests on the WebSocket port with `426 Upgrade Required`.
final class NotWebSocketHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let hub: RelayHub
    private let id: ConnectionID

    init(hub: RelayHub, id: ConnectionID) {
        self.hub = hub
        self.id = id
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        hub.refusedPlainHTTP(id)
        respond(
            context: context, status: .upgradeRequired,
            body: Array("this is a WebSocket relay: connect with ws:// or wss://\n".utf8)
        )
    }
}

/// What `/healthz` says.
enum RelayHealth: Sendable {
    case ok
    /// A cluster node that cannot reach Redis: it forwards between its local pairs but takes no
    /// new JOIN (503, so that a load balancer sends new clients elsewhere).
    case degraded
    case shuttingDown
}

/// The operations listener: `GET /healthz` (200 `ok`; 503 `degraded` for a cluster node without
/// Redis, 503 while shutting down) and
/// `GET /metrics` (Prometheus text format). Counts only; nothing here names a room or an address.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The metrics in Prometheus text format, rendered on the relay's event loop.
    private let exposition: @Sendable () -> EventLoopFuture<[UInt8]>
    private let health: @Sendable () -> EventLoopFuture<RelayHealth>
    private var requestHead: HTTPRequestHead?

    init(
        exposition: @escaping @Sendable () -> EventLoopFuture<[UInt8]>,
        health: @escaping @Sendable () -> EventLoopFuture<RelayHealth>
    ) {
        self.exposition = exposition
        self.health = health
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            requestHead = head
        case .body:
            break
        case .end:
            guard let head = requestHead else { return }
            requestHead = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            switch (head.method, path) {
            case (.GET, "/healthz"):
                health().hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                    let health = (try? result.get()) ?? .shuttingDown
                    let text: String
                    switch health {
                    case .ok: text = "ok\n"
                    case .degraded: text = "degraded: cluster unavailable (redis)\n"
                    case .shuttingDown: text = "shutting down\n"
                    }
                    respond(context: context, status: health == .ok ? .ok : .serviceUnavailable, body: Array(text.utf8))
                }
            case (.GET, "/metrics"):
                exposition().hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                    switch result {
                    case let .success(body):
                        respond(
                            context: context, status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
                            body: body
                        )
                    case .failure:
                        respond(context: context, status: .serviceUnavailable, body: Array("shutting down\n".utf8))
                    }
                }
            default:
                respond(context: context, status: .notFound, body: Array("try /healthz or /metrics\n".utf8))
            }
        }
    }
}
