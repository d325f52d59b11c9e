import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `--trust-proxy` with a real relay and real sockets (issue 14, "Admission"): every connection
/// comes from 127.0.0.1, as it does behind a reverse proxy or a Tor onion service. With
/// `proxy-protocol` the per-address caps (and the IPv6 prefix tiers) apply to the address each
/// PROXY v2 header names; with `shared-address` they are off. The control, the same caps
/// applying to 127.0.0.1 itself without `--trust-proxy`, is `RelayLimitsTests`'
/// per-address test.
@Suite("relay: --trust-proxy", .serialized)
struct RelayTrustProxyTests {
    /// A PROXY protocol v2 header (HAProxy's specification §2.2, written from it, not from the
    /// relay's decoder): PROXY command, TCP, the source `address` (4 or 16 bytes), a destination
    /// of the same family, ports 50000 and 443.
    static func proxyHeader(_ address: [UInt8]) -> [UInt8] {
        let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
        let family: UInt8 = address.count == 4 ? 0x11 : 0x21
        let body = address + [UInt8](repeating: 0, count: address.count - 1) + [1] + [0xC3, 0x50, 0x01, 0xBB]
        return signature + [0x21, family, 0, UInt8(body.count)] + body
    }

    static func ipv6(_ groups: [UInt16]) -> [UInt8] {
        groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// How the relay treated one connection: `served` when its JOIN was answered JOINED,
    /// otherwise what it was told (the ERROR code and the close code).
    static func outcome(port: Int, address: [UInt8]?, room: String) throws -> String {
        let connection = try Flooder(port: port, prefix: address.map(proxyHeader) ?? [])
        connection.sendAll(Flooder.text(#"{"type":"JOIN","room":"\#(room)"}"#))
        let frames = connection.serverFrames(timeoutSeconds: 5, until: { frames in
            frames.contains { $0.opcode == 0x8 } || frames.contains { $0.text.contains("JOINED") }
        })
        if frames.contains(where: { $0.text.contains(#""type":"JOINED""#) }) { return "served" }
        return frames.map { frame in
            frame.opcode == 0x8 && frame.payload.count >= 2
                ? "close \(Int(frame.payload[0]) << 8 | Int(frame.payload[1]))" : frame.text
        }.joined(separator: ", ")
    }

    @Test("proxy-protocol: the per-address cap and the /56 tier count the address the header names, not 127.0.0.1; no header, no service")
    func proxyProtocol() async throws {
        try await withRelay([
            "--trust-proxy", "proxy-protocol", "--connections-per-address-max", "2",
            "--connections-per-ipv6-56-max", "2",
        ]) { relay in
            let port = relay.port
            let room = uniqueRoom("PROXIED")
            let first: [UInt8] = [203, 0, 113, 7]
            let second: [UInt8] = [198, 51, 100, 9]
            // Three /64s of one /56 (2001:db8:0:1000::/56).
            let sixes = (0..<3).map { Self.ipv6([0x2001, 0x0DB8, 0, 0x1000 + UInt16($0), 0, 0, 0, 1]) }
            // Held open while the next ones connect (each in its own room: two per room).
            var held: [Flooder] = []
            for _ in 0..<2 { held.append(try Flooder(port: port, prefix: Self.proxyHeader(first))) }
            let refused = try await offPool { try Self.outcome(port: port, address: first, room: room) }
            #expect(refused.contains("TOO_MANY_CONNECTIONS") && refused.contains("close 1013"), "\(refused)")
            // Another client behind the same proxy is its own address: served.
            #expect(try await offPool { try Self.outcome(port: port, address: second, room: room) } == "served")
            for address in sixes.prefix(2) { held.append(try Flooder(port: port, prefix: Self.proxyHeader(address))) }
            let prefixRefused = try await offPool { try Self.outcome(port: port, address: sixes[2], room: room) }
            #expect(prefixRefused.contains("TOO_MANY_CONNECTIONS"), "\(prefixRefused)")
            // No header at all: closed before the upgrade.
            #expect(throws: Flooder.Failure.self) { try Flooder(port: port) }
            let metric = { (reason: String) in try await relay.metric(#"relay_rejections_total{reason="\#(reason)"}"#) }
            #expect(try await metric("connections_per_address_max") == 1)
            #expect(try await metric("connections_per_prefix_max") == 1)
            #expect(try await metric("bad_proxy_header") == 1)
            withExtendedLifetime(held) {}
        }
    }

    @Test("shared-address: behind a proxy that hides addresses, the per-address cap is off (every client is 127.0.0.1)")
    func sharedAddress() async throws {
        try await withRelay(["--trust-proxy", "shared-address", "--connections-per-address-max", "2"]) { relay in
            let port = relay.port
            var held: [Flooder] = []
            for _ in 0..<4 { held.append(try Flooder(port: port)) }
            let room = uniqueRoom("SHARED")
            let outcome = try await offPool { try Self.outcome(port: port, address: nil, room: room) }
            #expect(outcome == "served", "\(relay.process.stderr.all.suffix(20))")
            #expect(try await relay.metric(#"relay_rejections_total{reason="connections_per_address_max"}"#) == 0)
            withExtendedLifetime(held) {}
        }
    }
}

extension Flooder {
    /// One frame from the relay (server frames are not masked).
    struct ServerFrame {
        var opcode: UInt8
        var payload: [UInt8]
        var text: String { String(decoding: payload, as: UTF8.self) }
    }

    /// Write all of `bytes` (the socket is non-blocking: wait while the kernel's buffer is full).
    func sendAll(_ bytes: [UInt8]) {
        var offset = 0
        // Bounded by the bytes and by 1,000 waits of 1 ms.
        for _ in 0..<1000 where offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent > 0 { offset += sent } else { usleep(1000) }
        }
    }

    /// Read and decode frames until `done` says so, the connection ends, or the timeout.
    func serverFrames(timeoutSeconds: Double, until done: ([ServerFrame]) -> Bool) -> [ServerFrame] {
        var bytes: [UInt8] = []
        var frames: [ServerFrame] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
        // Bounded by the deadline.
        while ContinuousClock.now < deadline, !done(frames) {
            let count = read(fd, &buffer, buffer.count)
            if count == 0 { break }
            if count < 0 {
                usleep(2000)
                continue
            }
            bytes += buffer[0..<count]
            frames = Self.decodeFrames(bytes).frames
        }
        return frames
    }

    /// Whole unmasked frames with payloads under 64 KiB (RFC 6455 §5.2), and the bytes they took;
    /// a partial one is left out.
    static func decodeFrames(_ bytes: [UInt8]) -> (frames: [ServerFrame], consumed: Int) {
        var frames: [ServerFrame] = []
        var offset = 0
        // Bounded: each pass consumes at least the 2-byte header.
        while offset + 2 <= bytes.count {
            var length = Int(bytes[offset + 1] & 0x7F)
            guard length != 127 else { break }
            var start = offset + 2
            if length == 126 {
                guard start + 2 <= bytes.count else { break }
                length = Int(bytes[start]) << 8 | Int(bytes[start + 1])
                start += 2
            }
            guard start + length <= bytes.count else { break }
            frames.append(ServerFrame(opcode: bytes[offset] & 0x0F, payload: Array(bytes[start..<(start + length)])))
            offset = start + length
        }
        return (frames, offset)
    }
}
