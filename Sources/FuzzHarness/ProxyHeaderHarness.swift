import RelayCore

/// The PROXY protocol v2 decoder (`--trust-proxy proxy-protocol`) fed arbitrary first bytes of a
/// connection. Besides "no crash, reads stay in bounds" (ASan), it checks what the relay's shell
/// relies on:
///
/// - a header's length is within 16 and `RelayLimits.proxyHeaderMaxBytes` and within the input;
/// - the verdict does not depend on how the bytes arrive: every prefix shorter than a header is
///   `incomplete`, every prefix of an invalid input is `incomplete` or the same `invalid`, and
///   bytes after a header change nothing (the connection's own bytes follow it);
/// - `incomplete` is only ever said of fewer bytes than the cap (so the shell's wait is bounded);
/// - a header the decoder accepts, re-encoded canonically, reads as the same client.
public func fuzzProxyHeader(_ data: UnsafeRawBufferPointer) {
    let bytes = Array(data)
    let verdict = ProxyProtocolV2.parse(bytes)
    switch verdict {
    case .incomplete:
        require(bytes.count < RelayLimits.proxyHeaderMaxBytes, "incomplete at \(bytes.count) bytes, past the cap")
    case let .header(length, client):
        require(
            length >= ProxyProtocolV2.fixedBytes && length <= RelayLimits.proxyHeaderMaxBytes, "length \(length)")
        require(length <= bytes.count, "a header longer than its input")
        for cut in stride(from: 0, to: length, by: max(1, length / 64)) {
            let prefixVerdict = ProxyProtocolV2.parse(Array(bytes.prefix(cut)))
            require(prefixVerdict == .incomplete, "prefix of \(cut) is not incomplete")
        }
        require(ProxyProtocolV2.parse(bytes + [0x16, 0x03, 0x01]) == verdict, "trailing bytes changed the verdict")
        if let client { checkReencoded(client) }
    case .invalid:
        for cut in stride(from: 1, to: bytes.count, by: max(1, bytes.count / 64)) {
            let earlier = ProxyProtocolV2.parse(Array(bytes.prefix(cut)))
            require(earlier == .incomplete || earlier == verdict, "prefix of \(cut): \(earlier), whole: \(verdict)")
        }
    }
}

/// A header for `client` written canonically (TCP, PROXY command) reads back as `client`.
func checkReencoded(_ client: RelayAddress) {
    let header: [UInt8]
    switch client {
    case let .ipv4(address):
        let source = withUnsafeBytes(of: address.bigEndian) { Array($0) }
        header = proxyHeader(family: 0x11, body: source + [127, 0, 0, 1, 0x30, 0x39, 0x01, 0xBB])
    case let .ipv6(high, low):
        let source = withUnsafeBytes(of: high.bigEndian) { Array($0) }
            + withUnsafeBytes(of: low.bigEndian) { Array($0) }
        header = proxyHeader(family: 0x21, body: source + [UInt8](repeating: 0, count: 16) + [0x30, 0x39, 0x01, 0xBB])
    case .unix:
        header = proxyHeader(family: 0x31, body: [UInt8](repeating: 0, count: 216))
    case .unknown:
        header = proxyHeader(family: 0x00, body: [])
    }
    require(ProxyProtocolV2.parse(header) == .header(length: header.count, client: client), "re-encoded \(client)")
}

/// A v2 header with the PROXY command: the signature, version 2, `family` (and protocol), the
/// length, then `body`.
public func proxyHeader(family: UInt8, body: [UInt8]) -> [UInt8] {
    ProxyProtocolV2.signature + [0x21, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
}
