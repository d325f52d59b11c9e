import RelayCore
import Testing

/// The PROXY protocol v2 header decoder (`--trust-proxy proxy-protocol`) on byte sequences
/// written from HAProxy's specification, §2.2.
@Suite("Relay: PROXY protocol v2 header")
struct ProxyProtocolTests {
    static let signature = ProxyProtocolV2.signature

    /// A header: version 2 with `command`, `familyAndProtocol`, then `body` (addresses, TLVs).
    static func header(command: UInt8 = 1, familyAndProtocol: UInt8, body: [UInt8]) -> [UInt8] {
        signature + [0x20 | command, familyAndProtocol, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    static let ipv4Body: [UInt8] = [192, 0, 2, 17, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB]

    @Test("TCP over IPv4: the source address; the connection's own bytes follow the header")
    func ipv4() {
        let bytes = Self.header(familyAndProtocol: 0x11, body: Self.ipv4Body) + Array("GET / HTTP/1.1".utf8)
        #expect(ProxyProtocolV2.parse(bytes) == .header(length: 28, client: .ipv4(0xC000_0211)))
    }

    @Test("TCP over IPv6, with TLVs after the addresses: the source address, the TLVs skipped")
    func ipv6WithTLVs() {
        let source: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 1, 0, 2] + [0, 0, 0, 0, 0, 0, 0, 7]
        let destination = [UInt8](repeating: 0, count: 15) + [1]
        let tlv: [UInt8] = [0x05, 0x00, 0x03, 0x61, 0x62, 0x63]  // PP2_TYPE_UNIQUE_ID "abc"
        let bytes = Self.header(familyAndProtocol: 0x21, body: source + destination + [0, 80, 1, 187] + tlv)
        let client = RelayAddress.ipv6(high: 0x2001_0DB8_0001_0002, low: 7)
        #expect(ProxyProtocolV2.parse(bytes) == .header(length: 16 + 36 + 6, client: client))
    }

    @Test("LOCAL (the proxy's own health check): a header with no client, whatever the family")
    func local() {
        #expect(ProxyProtocolV2.parse(Self.header(command: 0, familyAndProtocol: 0x00, body: []))
            == .header(length: 16, client: nil))
        #expect(ProxyProtocolV2.parse(Self.header(command: 0, familyAndProtocol: 0x11, body: Self.ipv4Body))
            == .header(length: 28, client: nil))
    }

    @Test("PROXY with an unspecified family, or a Unix socket: one shared budget each")
    func sharedBudgets() {
        #expect(ProxyProtocolV2.parse(Self.header(familyAndProtocol: 0x00, body: []))
            == .header(length: 16, client: .unknown))
        let unix = Self.header(familyAndProtocol: 0x31, body: [UInt8](repeating: 0x2F, count: 216))
        #expect(ProxyProtocolV2.parse(unix) == .header(length: 232, client: .unix))
    }

    @Test("Every prefix of a header is incomplete; a wrong byte in the signature is invalid at once")
    func prefixes() {
        let bytes = Self.header(familyAndProtocol: 0x11, body: Self.ipv4Body)
        for count in 0..<bytes.count {
            #expect(ProxyProtocolV2.parse(Array(bytes.prefix(count))) == .incomplete, "prefix of \(count)")
        }
        // A TLS ClientHello or an HTTP request is refused on its first byte.
        #expect(ProxyProtocolV2.parse([0x16]) == .invalid(.badSignature))
        #expect(ProxyProtocolV2.parse(Array("GET / HTTP/1.1\r\n".utf8)) == .invalid(.badSignature))
        // PROXY protocol v1 (text) is not accepted.
        #expect(ProxyProtocolV2.parse(Array("PROXY TCP4 192.0.2.17 10.0.0.1 50000 443\r\n".utf8))
            == .invalid(.badSignature))
    }

    @Test("Invalid headers: version, command, family, a length too short for the family, too long")
    func invalid() {
        var badVersion = Self.header(familyAndProtocol: 0x11, body: Self.ipv4Body)
        badVersion[12] = 0x11
        #expect(ProxyProtocolV2.parse(badVersion) == .invalid(.badVersion))
        #expect(ProxyProtocolV2.parse(Self.header(command: 2, familyAndProtocol: 0x11, body: Self.ipv4Body))
            == .invalid(.badCommand))
        #expect(ProxyProtocolV2.parse(Self.header(familyAndProtocol: 0x41, body: Self.ipv4Body))
            == .invalid(.badFamily))
        #expect(ProxyProtocolV2.parse(Self.header(familyAndProtocol: 0x21, body: Self.ipv4Body))
            == .invalid(.shortAddress))
        // Judged from the length field alone: no need to wait for bytes that will be refused.
        let tooLong = Self.signature + [0x21, 0x11, 0xFF, 0xFF]
        #expect(ProxyProtocolV2.parse(tooLong) == .invalid(.tooLong))
        let atTheCap = RelayLimits.proxyHeaderMaxBytes - 16
        let padding = [UInt8](repeating: 0, count: atTheCap - 12)
        let longest = Self.header(familyAndProtocol: 0x11, body: Self.ipv4Body + padding)
        #expect(ProxyProtocolV2.parse(longest)
            == .header(length: RelayLimits.proxyHeaderMaxBytes, client: .ipv4(0xC000_0211)))
    }
}
