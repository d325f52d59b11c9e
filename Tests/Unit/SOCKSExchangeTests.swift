import ChatNetworking
import NIOCore
import NIOEmbedded
import Testing

/// The client's SOCKS5 exchange (RFC 1929 handler in front of NIOSOCKS's client) against recorded
/// byte sequences. Every microsocks sequence here (Debian's microsocks 1.0.3, with and without
/// `-u alice -P s3cret`, a wrong password, and no relay behind it) was recorded with
/// `strace -f -xx -e trace=write,recvfrom microsocks ...` while the real client connected through it
/// to `ws://localhost:PORT`: what the client sent (recvfrom) and what microsocks answered (write).
/// Only the two port bytes of the CONNECT request differ here (8080; the recording used a free port).
/// Tor's onion-service reply code (F0) is from tor's socks-extensions.txt.
@Suite("SOCKS5 exchange, byte for byte")
struct SOCKSExchangeTests {
    static let credentials = try! SOCKSCredentials(username: Array("alice".utf8), password: Array("s3cret".utf8))
    static let relayName = "localhost"
    static let relayPort = 8080
    /// CONNECT localhost:8080 by name (address type 3): socks5h, nothing resolved by the client.
    static let connectRequest: [UInt8] = [0x05, 0x01, 0x00, 0x03, 0x09] + Array("localhost".utf8) + [0x1F, 0x90]
    /// microsocks' success reply, recorded: version, succeeded, reserved, IPv4 0.0.0.0 port 0.
    static let microsocksSuccess: [UInt8] = [0x05, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    static let upgradeRequest = Array("GET / HTTP/1.1\r\n".utf8)
    static let upgradeAnswer = Array("HTTP/1.1 101 Switching Protocols\r\n".utf8)

    /// A client connection on an EmbeddedChannel: the SOCKS handlers, then one that records what
    /// reaches the application (as TLS or HTTP would get it) and swallows errors.
    final class Client {
        let channel = EmbeddedChannel()
        let record = SOCKSHandshakeRecord()
        let application = Application()

        final class Application: ChannelInboundHandler {
            typealias InboundIn = ByteBuffer
            var received: [UInt8] = []
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                received += Array(unwrapInboundIn(data).readableBytesView)
            }
            func errorCaught(context: ChannelHandlerContext, error: any Error) {}
        }

        init(_ authentication: SOCKSAuthentication, host: String = relayName, port: Int = relayPort) throws {
            try SOCKSTunnel.addHandlers(
                to: channel, authentication: authentication, host: host, port: port, record: record)
            try channel.pipeline.syncOperations.addHandler(application)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1080)).wait()
            // The HTTP upgrade request is written at once, as in the real pipeline.
            channel.writeAndFlush(ByteBuffer(bytes: upgradeRequest), promise: nil)
        }

        /// The proxy sends `bytes` (`byteByByte`: one read per byte, the worst case of TCP).
        func proxySends(_ bytes: [UInt8], byteByByte: Bool = false) throws {
            let pieces = byteByByte ? bytes.map { [$0] } : [bytes]
            for piece in pieces where channel.isActive {
                try channel.writeInbound(ByteBuffer(bytes: piece))
            }
        }

        /// Everything the client sent since the last call.
        func sent() throws -> [UInt8] {
            var bytes: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                bytes += Array(buffer.readableBytesView)
            }
            return bytes
        }
    }

    @Test("No authentication (microsocks without -u): greeting, CONNECT by name, reply, then the relay's bytes",
          arguments: [false, true])
    func noAuthentication(byteByByte: Bool) throws {
        let client = try Client(.noneOrUsernamePassword(Self.credentials))
        // Offers "none" and username/password: a proxy that needs nothing picks none.
        #expect(try client.sent() == [0x05, 0x02, 0x00, 0x02])
        try client.proxySends([0x05, 0x00], byteByByte: byteByByte)
        #expect(try client.sent() == Self.connectRequest, "no credentials when the proxy picks none")
        #expect(!client.record.established)
        try client.proxySends(Self.microsocksSuccess + Self.upgradeAnswer, byteByByte: byteByByte)
        #expect(client.record.established && client.record.error == nil)
        #expect(try client.sent() == Self.upgradeRequest, "the application's bytes go out once the tunnel is open")
        #expect(client.application.received == Self.upgradeAnswer)
    }

    @Test("Username and password (microsocks -u/-P, RFC 1929): only that method offered, the credentials sent",
          arguments: [false, true])
    func usernamePassword(byteByByte: Bool) throws {
        let client = try Client(.usernamePasswordOnly(Self.credentials))
        #expect(try client.sent() == [0x05, 0x01, 0x02])
        try client.proxySends([0x05, 0x02], byteByByte: byteByByte)
        #expect(try client.sent() == [0x01, 0x05] + Array("alice".utf8) + [0x06] + Array("s3cret".utf8))
        try client.proxySends([0x01, 0x00], byteByByte: byteByByte)
        #expect(try client.sent() == Self.connectRequest)
        try client.proxySends(Self.microsocksSuccess, byteByByte: byteByByte)
        #expect(client.record.established)
        #expect(try client.sent() == Self.upgradeRequest)
    }

    @Test("Wrong credentials: microsocks answers 01 02 and closes; a typed error, nothing more sent")
    func wrongCredentials() throws {
        let client = try Client(.usernamePasswordOnly(Self.credentials))
        _ = try client.sent()
        try client.proxySends([0x05, 0x02])
        _ = try client.sent()
        try client.proxySends([0x01, 0x02])
        #expect(client.record.error == .authenticationFailed(status: 2))
        #expect(!client.channel.isActive)
        #expect(try client.sent().isEmpty, "no CONNECT after a refusal")
    }

    @Test("A proxy that wants credentials none was offered for: 05 FF, a typed error")
    func noAcceptableMethod() throws {
        let client = try Client(.noneOrUsernamePassword(Self.credentials))
        _ = try client.sent()
        try client.proxySends([0x05, 0xFF])
        #expect(client.record.error == .noAcceptableMethod)
        #expect(!client.channel.isActive)
    }

    @Test("Username/password only: a proxy that picks 'none' is refused (Tor's isolation must not be lost)")
    func noneWhenPasswordRequired() throws {
        let client = try Client(.usernamePasswordOnly(Self.credentials))
        _ = try client.sent()
        try client.proxySends([0x05, 0x00])
        #expect(client.record.error == .unexpectedMethod(0))
        #expect(try client.sent().isEmpty)
    }

    @Test("The proxy cannot reach the relay: microsocks' 'connection refused' (reply 5) and Tor's F0, typed",
          arguments: [UInt8(0x05), 0x04, 0xF0])
    func connectionRefused(reply: UInt8) throws {
        let client = try Client(.noneOrUsernamePassword(Self.credentials))
        _ = try client.sent()
        try client.proxySends([0x05, 0x00])
        _ = try client.sent()
        try client.proxySends([0x05, reply, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
        #expect(client.record.error == .connectionFailed(reply: reply))
        #expect(!client.record.established && !client.channel.isActive)
        #expect(client.application.received.isEmpty)
    }

    @Test("Not a SOCKS5 proxy: an HTTP proxy's answer is a typed error")
    func notSOCKS5() throws {
        let client = try Client(.noneOrUsernamePassword(Self.credentials))
        try client.proxySends(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8))
        #expect(client.record.error == .notSOCKS5(version: UInt8(ascii: "H")))
        #expect(!client.channel.isActive)
    }

    @Test("An IP-literal relay goes as an address (type 1), a name as a name (type 3): nothing is resolved")
    func addressTypes() throws {
        let client = try Client(.noneOrUsernamePassword(Self.credentials), host: "127.0.0.1", port: 8080)
        _ = try client.sent()
        try client.proxySends([0x05, 0x00])
        #expect(try client.sent() == [0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x1F, 0x90])
        let onion = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion"
        let named = try Client(.noneOrUsernamePassword(Self.credentials), host: onion, port: 80)
        _ = try named.sent()
        try named.proxySends([0x05, 0x00])
        #expect(try named.sent() == [0x05, 0x01, 0x00, 0x03, UInt8(onion.utf8.count)] + Array(onion.utf8) + [0, 80])
    }

    @Test("A name NIOSOCKS cannot carry (over 255 bytes) is a typed error, not a trap")
    func nameTooLong() {
        let channel = EmbeddedChannel()
        #expect(throws: SOCKSProxyError.targetNotRepresentable) {
            try SOCKSTunnel.addHandlers(
                to: channel, authentication: .noneOrUsernamePassword(Self.credentials),
                host: String(repeating: "a", count: 256), port: 443, record: SOCKSHandshakeRecord())
        }
    }

    @Test("--tor: username/password only, fresh random credentials per run (Tor's IsolateSOCKSAuth)")
    func torCredentials() throws {
        let first = SOCKSProxy.tor()
        let second = SOCKSProxy.tor()
        #expect(first.endpoint == "127.0.0.1:9050" && first.isTor)
        guard case let .usernamePasswordOnly(one) = first.authentication,
              case let .usernamePasswordOnly(two) = second.authentication
        else {
            Issue.record("--tor must offer username/password only")
            return
        }
        #expect(one.username.count == 32 && one.password.count == 32)
        #expect(one.username != two.username && one.password != two.password)
        #expect(!"\(one)".contains(String(decoding: one.password, as: UTF8.self)), "the password is never printed")
    }

    @Test("Proxy URLs: IP addresses only (no lookup), no credentials, socks5 or socks5h")
    func proxyURLs() throws {
        #expect(try SOCKSProxy(url: "socks5://127.0.0.1:9050", credentials: nil).endpoint == "127.0.0.1:9050")
        #expect(try SOCKSProxy(url: "SOCKS5H://[::1]:1080/", credentials: nil).endpoint == "[::1]:1080")
        #expect(try SOCKSProxy(url: "socks5://localhost:1081", credentials: nil).endpoint == "127.0.0.1:1081")
        #expect(try SOCKSProxy(url: "socks5://10.0.0.1", credentials: nil).endpoint == "10.0.0.1:1080")
        let withCredentials = try SOCKSProxy(url: "socks5://127.0.0.1:1", credentials: Self.credentials)
        #expect(withCredentials.authentication == .usernamePasswordOnly(Self.credentials))
        #expect(throws: SOCKSProxyURLError.hostNotAnAddress("proxy.example")) {
            try SOCKSProxy(url: "socks5://proxy.example:1080", credentials: nil)
        }
        #expect(throws: SOCKSProxyURLError.credentialsInURL) {
            try SOCKSProxy(url: "socks5://user:pw@127.0.0.1:1080", credentials: nil)
        }
        #expect(throws: SOCKSProxyURLError.unsupportedScheme) {
            try SOCKSProxy(url: "http://127.0.0.1:8080", credentials: nil)
        }
        #expect(throws: SOCKSProxyURLError.invalidPort("70000")) {
            try SOCKSProxy(url: "socks5://127.0.0.1:70000", credentials: nil)
        }
        #expect(throws: SOCKSProxyURLError.invalidCredentials) {
            try SOCKSCredentials(username: [], password: Array("x".utf8))
        }
    }
}
