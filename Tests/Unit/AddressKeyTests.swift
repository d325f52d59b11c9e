import NIOCore
import RelayCore
import RelayServer
import Testing

/// The key the relay's per-address limits count a client under (RelayCore's `AddressKey`), from
/// the socket address the NIO shell sees (`RelayAddress.init(_: SocketAddress?)`).
@Suite("Relay: the per-address limits key")
struct AddressKeyTests {
    func key(_ text: String) throws -> String {
        RelayAddress(try SocketAddress(ipAddress: text, port: 4242)).limitsKey.description
    }

    @Test("IPv4: the address itself", arguments: ["127.0.0.1", "192.0.2.17", "0.0.0.0", "255.255.255.255"])
    func ipv4(_ text: String) throws {
        #expect(try key(text) == text)
    }

    @Test("IPv6: every address of one /64 shares a key; another /64 gets another")
    func ipv6Prefix() throws {
        #expect(try key("2001:db8:1:2::1") == "2001:db8:1:2::/64")
        #expect(try key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64")
        #expect(try key("2001:0db8:0001:0002:dead:beef:0:7") == "2001:db8:1:2::/64")
        #expect(try key("2001:db8:1:3::1") == "2001:db8:1:3::/64")
        #expect(try key("::1") == "0:0:0:0::/64")
        #expect(try key("fe80::1") == "fe80:0:0:0::/64")
        let sameHost = RelayAddress(try SocketAddress(ipAddress: "2001:db8:1:2::1", port: 1)).limitsKey
        #expect(sameHost == RelayAddress(try SocketAddress(ipAddress: "2001:db8:1:2::99", port: 2)).limitsKey)
        #expect(sameHost != RelayAddress(try SocketAddress(ipAddress: "2001:db8:1:3::1", port: 2)).limitsKey)
    }

    @Test("An IPv4-mapped IPv6 address counts as its IPv4 address")
    func mapped() throws {
        #expect(try key("::ffff:192.0.2.17") == "192.0.2.17")
        #expect(try key("::ffff:c000:211") == "192.0.2.17")
        #expect(
            RelayAddress(try SocketAddress(ipAddress: "::ffff:192.0.2.17", port: 1))
                == RelayAddress(try SocketAddress(ipAddress: "192.0.2.17", port: 1)))
    }

    @Test("No address, or a Unix socket: one shared key each")
    func others() throws {
        #expect(RelayAddress(nil).limitsKey.description == "unknown")
        let unix = RelayAddress(try SocketAddress(unixDomainSocketPath: "/tmp/relay.sock"))
        #expect(unix.limitsKey.description == "unix")
    }
}
