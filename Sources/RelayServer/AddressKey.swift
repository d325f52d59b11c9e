import NIOCore

/// The key that the per-address limits (connections, join rate) count a client under.
///
/// IPv4: the address. IPv6: its /64 prefix, because a single host or home network is normally
/// given a whole /64 and can pick any of its 2^64 addresses at will: counting exact IPv6
/// addresses would give one attacker an unlimited number of budgets. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 client) counts as the IPv4
/// address it carries, so the same client gets one budget whichever socket it came in on.
///
/// The key is only held in memory for the limits; it is never logged at the default level and
/// never exported in metrics.
public enum AddressKey {
    /// The limits key for a connection's remote address.
    public static func of(_ address: SocketAddress?) -> String {
        switch address {
        case let .v4(v4)?:
            return ipv4Text(withUnsafeBytes(of: v4.address.sin_addr) { Array($0) })
        case let .v6(v6)?:
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            precondition(bytes.count == 16, "an IPv6 address has 16 bytes")
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                return ipv4Text(Array(bytes[12..<16]))
            }
            // The first four 16-bit groups, in the usual lowercase hex without leading zeros.
            let groups = stride(from: 0, to: 8, by: 2).map { index in
                String(UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1]), radix: 16)
            }
            return groups.joined(separator: ":") + "::/64"
        case .unixDomainSocket?:
            return "unix"
        case nil:
            return "unknown"
        }
    }

    private static func ipv4Text(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == 4, "an IPv4 address has 4 bytes")
        return bytes.map(String.init).joined(separator: ".")
    }
}
