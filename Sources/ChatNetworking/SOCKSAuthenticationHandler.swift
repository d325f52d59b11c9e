import NIOCore
import NIOSOCKS

/// The method negotiation and RFC 1929 username/password authentication, in front of NIOSOCKS's
/// `SOCKSClientHandler`.
///
/// Why this handler: swift-nio-extras' SOCKS client (1.35.2) greets with "no authentication"
/// only (its state machine preconditions on it), and stream isolation over Tor needs RFC 1929
/// credentials. Why not a SOCKS client of our own: NIOSOCKS already does the rest: the CONNECT
/// request with the relay's host name (socks5h), the reply with its typed code and bound address,
/// buffering the application's writes until the tunnel is up, and forwarding whatever follows the
/// reply. This handler adds only what it lacks.
///
/// It sits between the socket and `SOCKSClientHandler`. It sends its own greeting (the methods of
/// `SOCKSAuthentication`), runs the username/password sub-negotiation when the proxy picks it, and
/// then answers NIOSOCKS's greeting, which it kept from the proxy, with "no authentication
/// required", as the proxy would have: NIOSOCKS goes on with the CONNECT request as usual. From then
/// on every byte passes through untouched.
///
/// Bounded: before it passes bytes through it holds at most the two bytes of one answer (each
/// answer is exactly two bytes); anything past them is handed on, never accumulated. NIOSOCKS then
/// holds at most one CONNECT reply (262 bytes) before it decides. No trap is reachable from the
/// proxy's bytes: NIOSOCKS's precondition on the chosen method only sees this handler's "none",
/// and its traps on long names and bad ports are kept away by `SOCKSTunnel.targetAddress`.
final class SOCKSAuthenticationHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// The greeting is not sent yet (the channel is not active).
        case idle
        /// The greeting went out; the proxy's method choice (2 bytes) is awaited.
        case awaitingMethod
        /// The credentials went out; the proxy's verdict (2 bytes) is awaited.
        case awaitingVerdict
        /// Authenticated (or no authentication needed): bytes pass through.
        case passing
        /// A typed error was raised and the channel closed.
        case failed
    }

    private let authentication: SOCKSAuthentication
    private var state = State.idle
    /// Bytes of the current answer received so far (at most 2: see `answerBytes`).
    private var partial: [UInt8] = []
    /// NIOSOCKS's own greeting was held back; it is answered once authentication is done.
    private var heldGreeting = false
    private var answeredGreeting = false
    /// Every proxy answer in the negotiation is two bytes (RFC 1928 §3, RFC 1929 §2).
    private static let answerBytes = 2

    init(authentication: SOCKSAuthentication) {
        self.authentication = authentication
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendGreeting(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendGreeting(context: context)
        context.fireChannelActive()
    }

    private func sendGreeting(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        state = .awaitingMethod
        let methods = authentication.methods
        var greeting = context.channel.allocator.buffer(capacity: 2 + methods.count)
        greeting.writeInteger(UInt8(5))
        greeting.writeInteger(UInt8(methods.count))
        greeting.writeBytes(methods)
        context.writeAndFlush(wrapOutboundOut(greeting), promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !heldGreeting else {
            context.write(data, promise: promise)
            return
        }
        // The first write from NIOSOCKS is its greeting ("no authentication"): kept from the proxy,
        // which has had ours; NIOSOCKS gets its answer from this handler.
        heldGreeting = true
        promise?.succeed(())
        if case .passing = state { answerGreeting(context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        // Bounded: each round consumes at least one byte or stops.
        while buffer.readableBytes > 0 {
            switch state {
            case .passing:
                context.fireChannelRead(wrapInboundOut(buffer))
                return
            case .failed, .idle:
                return  // After a failure the channel is closing; before the greeting nothing is due.
            case .awaitingMethod, .awaitingVerdict:
                let wanted = Self.answerBytes - partial.count
                partial += buffer.readBytes(length: min(wanted, buffer.readableBytes)) ?? []
                guard partial.count == Self.answerBytes else { return }
                let answer = partial
                partial = []
                advance(answer, context: context)
            }
        }
    }

    /// One whole answer of the proxy, in the state that awaited it.
    private func advance(_ answer: [UInt8], context: ChannelHandlerContext) {
        do {
            switch state {
            case .awaitingMethod:
                try chooseMethod(version: answer[0], method: answer[1], context: context)
            case .awaitingVerdict:
                // RFC 1929 §2: VER 1, STATUS 0 for success. Some proxies echo VER 5; accept both.
                guard answer[0] == 1 || answer[0] == 5 else { throw SOCKSProxyError.malformedReply }
                guard answer[1] == 0 else { throw SOCKSProxyError.authenticationFailed(status: answer[1]) }
                authenticated(context: context)
            case .idle, .passing, .failed:
                return
            }
        } catch {
            state = .failed
            context.fireErrorCaught(error)
            context.close(promise: nil)
        }
    }

    private func chooseMethod(version: UInt8, method: UInt8, context: ChannelHandlerContext) throws {
        guard version == 5 else { throw SOCKSProxyError.notSOCKS5(version: version) }
        guard method != SOCKSMethod.noAcceptable else { throw SOCKSProxyError.noAcceptableMethod }
        guard authentication.methods.contains(method) else { throw SOCKSProxyError.unexpectedMethod(method) }
        guard method == SOCKSMethod.usernamePassword else {
            authenticated(context: context)
            return
        }
        let credentials = authentication.credentials
        var request = context.channel.allocator.buffer(
            capacity: 3 + credentials.username.count + credentials.password.count)
        request.writeInteger(UInt8(1))  // RFC 1929 sub-negotiation version.
        request.writeInteger(UInt8(credentials.username.count))  // 1...255: checked by SOCKSCredentials.
        request.writeBytes(credentials.username)
        request.writeInteger(UInt8(credentials.password.count))
        request.writeBytes(credentials.password)
        state = .awaitingVerdict
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
    }

    private func authenticated(context: ChannelHandlerContext) {
        state = .passing
        if heldGreeting { answerGreeting(context: context) }
    }

    /// NIOSOCKS's greeting, answered as the proxy would have: version 5, "no authentication required".
    private func answerGreeting(context: ChannelHandlerContext) {
        guard !answeredGreeting else { return }
        answeredGreeting = true
        var answer = context.channel.allocator.buffer(capacity: 2)
        answer.writeBytes([5, SOCKSMethod.none])
        context.fireChannelRead(wrapInboundOut(answer))
    }
}

/// Why the SOCKS5 proxy did not open the tunnel to the relay.
public enum SOCKSProxyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The proxy could not (or would not) connect to the relay: RFC 1928 §6's reply code, or one of
    /// Tor's extended codes (0xF0-0xF7, onion services).
    case connectionFailed(reply: UInt8)
    /// The proxy refused the username and password (RFC 1929 status).
    case authenticationFailed(status: UInt8)
    /// The proxy accepts none of the methods offered.
    case noAcceptableMethod
    /// The proxy picked a method that was not offered.
    case unexpectedMethod(UInt8)
    /// The answer is not SOCKS version 5 (an HTTP or SOCKS4 proxy, another service).
    case notSOCKS5(version: UInt8)
    /// The reply broke the protocol (a reserved byte, an address type, an answer out of turn).
    case malformedReply
    /// The proxy closed the connection before the tunnel was open.
    case closedBeforeEstablished
    /// The tunnel was not open within the handshake timeout.
    case timedOut(seconds: Int64)
    /// The relay's host or port does not fit a SOCKS5 request (a name over 255 bytes).
    case targetNotRepresentable

    public var description: String {
        switch self {
        case let .connectionFailed(reply): "the SOCKS proxy could not connect (reply \(reply))"
        case let .authenticationFailed(status): "the SOCKS proxy refused the credentials (status \(status))"
        case .noAcceptableMethod: "the SOCKS proxy accepts none of the offered authentication methods"
        case let .unexpectedMethod(method): "the SOCKS proxy chose method \(method), which was not offered"
        case let .notSOCKS5(version): "not a SOCKS5 proxy (version byte \(version))"
        case .malformedReply: "malformed SOCKS5 reply"
        case .closedBeforeEstablished: "the SOCKS proxy closed the connection before the tunnel was open"
        case let .timedOut(seconds): "the SOCKS tunnel was not open within \(seconds) s"
        case .targetNotRepresentable: "the relay's host name does not fit a SOCKS5 request (over 255 bytes)"
        }
    }

    /// NIOSOCKS's errors, typed as ours (nil for errors that are not the proxy's).
    init?(_ error: any Error) {
        switch error {
        case let error as SOCKSProxyError: self = error
        case let error as SOCKSError.ConnectionFailed: self = .connectionFailed(reply: error.reply.value)
        case let error as SOCKSError.InvalidProtocolVersion: self = .notSOCKS5(version: error.actual)
        case is SOCKSError.InvalidReservedByte, is SOCKSError.InvalidAddressType, is SOCKSError.UnexpectedRead,
             is SOCKSError.InvalidAuthenticationSelection, is SOCKSError.InvalidClientState,
             is SocketAddressError:
            self = .malformedReply
        default: return nil
        }
    }
}
