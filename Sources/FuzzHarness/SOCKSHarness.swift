import ChatNetworking
import NIOCore
import NIOEmbedded

// The SOCKS5 client's harness: a hostile proxy's replies, fed to the very handlers the client
// runs (ours for RFC 1929 in front of NIOSOCKS's client) on an EmbeddedChannel.
//
// Input: byte 0 picks what the client offers (bit 0: "none or username/password", else
// username/password only) and how the proxy's bytes are cut into reads (bits 1-3); the rest is
// everything the proxy sends. Checked with `require` (so libFuzzer records a crash), besides "no
// trap, no leak" under ASan:
//
// - the outcome after all the bytes equals a small model of RFC 1928/1929 read in order: the
//   tunnel opens exactly when the model says so, fails exactly when it does, with the same typed
//   error, and otherwise still waits;
// - a decision is never left waiting past the longest possible answers (2 + 2 + 262 bytes): the
//   client buffers no more than that from a proxy;
// - what the client sent is exactly the greeting, the credentials (only if the proxy picked
//   username/password), the CONNECT request with the relay's name, and the application's bytes
//   only once the tunnel is open;
// - every byte after the proxy's reply reaches the application, in order, once.

/// The relay's name and port in every CONNECT request of the harness.
let socksHarnessHost = "relay.example.onion"
let socksHarnessPort = 443

/// The proxy's bytes against the SOCKS client handlers.
public func fuzzSOCKSReply(_ data: UnsafeRawBufferPointer) {
    guard let config = data.first else { return }
    let proxyBytes = Array(data.dropFirst())
    let credentials = try! SOCKSCredentials(username: Array("user".utf8), password: Array("secret".utf8))
    let authentication: SOCKSAuthentication = config & 1 == 0
        ? .noneOrUsernamePassword(credentials) : .usernamePasswordOnly(credentials)
    let chunkSizes = [1, 2, 3, 5, 10, 64, 263, Int.max]
    let chunk = chunkSizes[Int(config >> 1) & 7]

    let run = SOCKSHarnessRun(authentication: authentication)
    var offset = 0
    // Bounded by the input: each round feeds at least one byte.
    while offset < proxyBytes.count && run.channel.isActive {
        let end = proxyBytes.count - offset <= chunk ? proxyBytes.count : offset + chunk
        run.feed(Array(proxyBytes[offset..<end]))
        offset = end
    }
    let expected = SOCKSModel.outcome(offered: authentication, proxyBytes: proxyBytes)
    run.check(expected, proxyBytes: proxyBytes, authentication: authentication)
    run.finish()
}

/// One client connection on an EmbeddedChannel, with an application handler behind the SOCKS ones.
final class SOCKSHarnessRun {
    let channel = EmbeddedChannel()
    let record = SOCKSHandshakeRecord()
    let application = SOCKSHarnessApplication()
    static let applicationBytes: [UInt8] = Array("GET / HTTP/1.1\r\n".utf8)

    init(authentication: SOCKSAuthentication) {
        do {
            try SOCKSTunnel.addHandlers(
                to: channel, authentication: authentication, host: socksHarnessHost, port: socksHarnessPort,
                record: record)
            try channel.pipeline.syncOperations.addHandler(application)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9050)).wait()
        } catch {
            fatalError("harness set-up failed: \(error)")
        }
        // The application writes at once, as TLS or HTTP would: held until the tunnel is open.
        channel.writeAndFlush(ByteBuffer(bytes: Self.applicationBytes), promise: nil)
    }

    /// Close the channel and let its event loop remove the handlers: the pipeline and its
    /// handler contexts refer to each other until then (and the application's write the SOCKS
    /// handler still holds with them). A channel the SOCKS handlers already closed after a
    /// failure counts as closed: plain `finish()` throws `alreadyClosed` there before running
    /// the loop, which left every failed run's channel (35 allocations, 6.3 KB) leaked.
    func finish() {
        _ = try? channel.finish(acceptAlreadyClosed: true)
        // Should `finish` still throw before running the loop, the removal runs here.
        channel.embeddedEventLoop.run()
    }

    func feed(_ bytes: [UInt8]) {
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            // An error the pipeline did not handle: the application handler takes them all.
            fatalError("unhandled error reached the end of the pipeline: \(error)")
        }
    }

    /// Everything the client wrote to the proxy, in order.
    func sentBytes() -> [UInt8] {
        var sent: [UInt8] = []
        // Bounded: the handlers write a handful of buffers.
        while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
            sent += Array(buffer.readableBytesView)
        }
        return sent
    }

    func check(_ expected: SOCKSModel.Outcome, proxyBytes: [UInt8], authentication: SOCKSAuthentication) {
        let sent = sentBytes()
        let exchange = SOCKSModel.clientBytes(offered: authentication, proxyBytes: proxyBytes)
        switch expected {
        case let .established(replyEnd):
            require(record.established && record.error == nil, "the model opens the tunnel, the client did not")
            require(application.received == Array(proxyBytes[replyEnd...]), "bytes after the reply were not passed on")
            require(sent == exchange + Self.applicationBytes, "the client sent \(sent), expected \(exchange) + data")
        case let .failed(error):
            require(!record.established, "the client opened a tunnel the model refuses (\(error))")
            require(record.error == error, "the client failed with \(String(describing: record.error)), not \(error)")
            require(!channel.isActive, "the channel stays open after \(error)")
            require(application.received.isEmpty, "bytes reached the application after a failure")
            require(sent == exchange, "the client sent \(sent), expected \(exchange)")
        case .waiting:
            require(proxyBytes.count < SOCKSModel.answersMaxBytes, "still waiting after \(proxyBytes.count) bytes")
            require(!record.established && record.error == nil, "the client decided before the model")
            require(application.received.isEmpty, "bytes reached the application before the tunnel opened")
            require(sent == exchange, "the client sent \(sent), expected \(exchange)")
        }
    }
}

/// Behind the SOCKS handlers: takes what reaches the application, and every error (a real
/// pipeline's TLS and HTTP handlers would).
final class SOCKSHarnessApplication: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += Array(unwrapInboundIn(data).readableBytesView)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}

/// RFC 1928 and RFC 1929 as the client must read them, in order, whole answers at a time.
enum SOCKSModel {
    enum Outcome: Equatable {
        /// The tunnel is open; the proxy's reply ends at this offset.
        case established(replyEnd: Int)
        case failed(SOCKSProxyError)
        case waiting
    }

    /// The longest the proxy's answers can be before the client must have decided: the method
    /// choice (2), the RFC 1929 verdict (2), and a reply with a 255-byte name (4 + 1 + 255 + 2).
    static let answersMaxBytes = 2 + 2 + 262

    /// What the proxy's bytes lead to.
    static func outcome(offered: SOCKSAuthentication, proxyBytes bytes: [UInt8]) -> Outcome {
        guard bytes.count >= 2 else { return .waiting }
        // The method choice.
        guard bytes[0] == 5 else { return .failed(.notSOCKS5(version: bytes[0])) }
        if bytes[1] == 0xFF { return .failed(.noAcceptableMethod) }
        let offeredMethods: [UInt8] = switch offered {
        case .noneOrUsernamePassword: [0, 2]
        case .usernamePasswordOnly: [2]
        }
        guard offeredMethods.contains(bytes[1]) else { return .failed(.unexpectedMethod(bytes[1])) }
        var index = 2
        if bytes[1] == 2 {
            guard bytes.count >= 4 else { return .waiting }
            guard bytes[2] == 1 || bytes[2] == 5 else { return .failed(.malformedReply) }
            guard bytes[3] == 0 else { return .failed(.authenticationFailed(status: bytes[3])) }
            index = 4
        }
        return reply(bytes, from: index)
    }

    /// The CONNECT reply from `start`, checked field by field as it arrives (version, reply,
    /// reserved, address type, then the address and port once all there).
    static func reply(_ bytes: [UInt8], from start: Int) -> Outcome {
        let available = bytes.count - start
        guard available >= 1 else { return .waiting }
        guard bytes[start] == 5 else { return .failed(.notSOCKS5(version: bytes[start])) }
        guard available >= 3 else { return .waiting }
        guard bytes[start + 2] == 0 else { return .failed(.malformedReply) }
        guard available >= 4 else { return .waiting }
        let addressBytes: Int
        switch bytes[start + 3] {
        case 1: addressBytes = 4
        case 4: addressBytes = 16
        case 3:
            guard available >= 5 else { return .waiting }
            addressBytes = 1 + Int(bytes[start + 4])
        default: return .failed(.malformedReply)
        }
        let end = start + 4 + addressBytes + 2
        guard bytes.count >= end else { return .waiting }
        guard bytes[start + 1] == 0 else { return .failed(.connectionFailed(reply: bytes[start + 1])) }
        return .established(replyEnd: end)
    }

    /// What the client must have sent, given what the proxy answered so far.
    static func clientBytes(offered: SOCKSAuthentication, proxyBytes bytes: [UInt8]) -> [UInt8] {
        let methods: [UInt8] = switch offered {
        case .noneOrUsernamePassword: [0, 2]
        case .usernamePasswordOnly: [2]
        }
        var sent: [UInt8] = [5, UInt8(methods.count)] + methods
        guard bytes.count >= 2, bytes[0] == 5, bytes[1] != 0xFF, methods.contains(bytes[1]) else { return sent }
        if bytes[1] == 2 {
            let credentials = offered.credentials
            sent += [1, UInt8(credentials.username.count)] + credentials.username
            sent += [UInt8(credentials.password.count)] + credentials.password
            guard bytes.count >= 4, bytes[2] == 1 || bytes[2] == 5, bytes[3] == 0 else { return sent }
        }
        let host = Array(socksHarnessHost.utf8)
        let port = [UInt8(socksHarnessPort >> 8), UInt8(socksHarnessPort & 0xFF)]
        return sent + [5, 1, 0, 3, UInt8(host.count)] + host + port
    }
}
