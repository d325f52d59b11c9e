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

/// The operations listener: `GET /healthz` (200 `ok`, 503 while shutting down) and
/// `GET /metrics` (Prometheus text format). Counts only; nothing here names a room or an address.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The metrics in Prometheus text format, rendered on the relay's event loop.
    private let exposition: @Sendable () -> EventLoopFuture<[UInt8]>
    private let isHealthy: @Sendable () -> Bool
    private var requestHead: HTTPRequestHead?

    init(exposition: @escaping @Sendable () -> EventLoopFuture<[UInt8]>, isHealthy: @escaping @Sendable () -> Bool) {
        self.exposition = exposition
        self.isHealthy = isHealthy
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
                let healthy = isHealthy()
                respond(
                    context: context, status: healthy ? .ok : .serviceUnavailable,
                    body: Array((healthy ? "ok\n" : "shutting down\n").utf8)
                )
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
