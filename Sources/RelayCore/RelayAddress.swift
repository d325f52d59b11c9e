/// A client's network address as the relay's admission sees it (no port). The NIO shell builds it
/// from the socket's remote address; the simulator gives each virtual client one of its own.
///
/// The relay keeps it in memory only for the per-address limits; it is never logged at the
/// default level and never exported in metrics.
public enum RelayAddress: Hashable, Sendable {
    /// An IPv4 address, in network order (192.0.2.1 is 0xC000_0201).
    case ipv4(UInt32)
    /// An IPv6 address: its first and last eight bytes, in network order. Use `init(ipv6:)`,
    /// which turns an IPv4-mapped address into `.ipv4`.
    case ipv6(high: UInt64, low: UInt64)
    /// A Unix domain socket (all such clients share one budget).
    case unix
    /// The shell could not tell (all such clients share one budget).
    case unknown

    /// An IPv4 address from its four bytes.
    public init(ipv4 bytes: (UInt8, UInt8, UInt8, UInt8)) {
        self = .ipv4(UInt32(bytes.0) << 24 | UInt32(bytes.1) << 16 | UInt32(bytes.2) << 8 | UInt32(bytes.3))
    }

    /// An IPv6 address from its 16 bytes; nil unless there are exactly 16. An IPv4-mapped address
    /// (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 client) becomes the IPv4
    /// address it carries, so the same client gets one budget whichever socket it came in on.
    public init?<Bytes: Collection<UInt8>>(ipv6 bytes: Bytes) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        if high == 0 && low >> 32 == 0xFFFF {
            self = .ipv4(UInt32(truncatingIfNeeded: low))
        } else {
            self = .ipv6(high: high, low: low)
        }
    }

    /// The key the per-address limits count this address under.
    public var limitsKey: AddressKey {
        switch self {
        case let .ipv4(address): AddressKey(kind: .ipv4, bits: UInt64(address))
        case let .ipv6(high, _): AddressKey(kind: .ipv6Prefix64, bits: high)
        case .unix: AddressKey(kind: .unix, bits: 0)
        case .unknown: AddressKey(kind: .unknown, bits: 0)
        }
    }
}

extension AddressKey {
    /// The wider IPv6 prefixes this /64 lies in, /56 then /48, each with its own cap (empty for
    /// any other key). One site or customer is normally given a /56 or a /48, so it holds 256 or
    /// 65,536 /64s: without these tiers one allocation could fill the relay's global cap with
    /// /64s that are each under the per-address cap.
    public var widerPrefixes: [AddressKey] {
        guard kind == .ipv6Prefix64 else { return [] }
        return [
            AddressKey(kind: .ipv6Prefix56, bits: bits & ~0xFF),
            AddressKey(kind: .ipv6Prefix48, bits: bits & ~0xFFFF),
        ]
    }
}

/// The key the relay's per-address limits (connections, join rate) count a client under.
///
/// IPv4: the address. IPv6: its /64 prefix, because a single host or home network is normally
/// given a whole /64 and can pick any of its 2^64 addresses at will: counting exact IPv6
/// addresses would give one attacker an unlimited number of budgets. The /56 and /48 prefixes
/// around a /64 (`widerPrefixes`) are keys of their own kinds, for the tiered caps.
public struct AddressKey: Hashable, Sendable, CustomStringConvertible {
    enum Kind: UInt8, Hashable, Sendable {
        case ipv4, ipv6Prefix64, ipv6Prefix56, ipv6Prefix48, unix, unknown
    }

    let kind: Kind
    /// The IPv4 address, or the first 64 bits of the IPv6 address (the bits past the prefix zero).
    let bits: UInt64

    /// `192.0.2.17`, `2001:db8:1:2::/64`, `2001:db8:1:200::/56` (four groups, lowercase hex
    /// without leading zeros), `unix` or `unknown`.
    public var description: String {
        switch kind {
        case .ipv4:
            return (0..<4).map { String((bits >> (24 - 8 * $0)) & 0xFF) }.joined(separator: ".")
        case .ipv6Prefix64, .ipv6Prefix56, .ipv6Prefix48:
            let length = kind == .ipv6Prefix64 ? 64 : kind == .ipv6Prefix56 ? 56 : 48
            return (0..<4).map { String((bits >> (48 - 16 * $0)) & 0xFFFF, radix: 16) }.joined(separator: ":")
                + "::/\(length)"
        case .unix:
            return "unix"
        case .unknown:
            return "unknown"
        }
    }
}
