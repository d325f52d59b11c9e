import NIOCore
import RelayCore

extension RelayAddress {
    /// The address of a connection's remote end, for the per-address limits (RelayCore's
    /// `AddressKey` says how it is counted: an IPv4 address, or an IPv6 /64).
    public init(_ address: SocketAddress?) {
        switch address {
        case let .v4(v4)?:
            let bytes = withUnsafeBytes(of: v4.address.sin_addr) { ($0[0], $0[1], $0[2], $0[3]) }
            self.init(ipv4: bytes)
        case let .v6(v6)?:
            self = withUnsafeBytes(of: v6.address.sin6_addr) { RelayAddress(ipv6: $0) } ?? .unknown
        case .unixDomainSocket?:
            self = .unix
        case nil:
            self = .unknown
        }
    }
}
