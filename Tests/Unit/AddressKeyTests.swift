import NIOCore
import RelayServer
import Testing

/// The key the relay's per-address limits count a client under (`AddressKey`).
@Suite("Relay: the per-address limits key")
struct AddressKeyTests {
    @Test("IPv4: the address itself", arguments: ["127.0.0.1", "192.0.2.17", "0.0.0.0", "255.255.255.255"])
    func ipv4(_ text: String) throws {
        #expect(AddressKey.of(try SocketAddress(ipAddress: text, port: 4242)) == text)
    }

    @Test("IPv6: every address of one /64 shares a key; another /64 gets another")
    func ipv6Prefix() throws {
        let key = { (text: String) in AddressKey.of(try SocketAddress(ipAddress: text, port: 443)) }
        #expect(try key("2001:db8:1:2::1") == "2001:db8:1:2::/64")
        #expect(try key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64")
        #expect(try key("2001:0db8:0001:0002:dead:beef:0:7") == "2001:db8:1:2::/64")
        #expect(try key("2001:db8:1:3::1") == "2001:db8:1:3::/64")
        #expect(try key("::1") == "0:0:0:0::/64")
        #expect(try key("fe80::1") == "fe80:0:0:0::/64")
    }

    @Test("An IPv4-mapped IPv6 address counts as its IPv4 address")
    func mapped() throws {
        #expect(AddressKey.of(try SocketAddress(ipAddress: "::ffff:192.0.2.17", port: 1)) == "192.0.2.17")
        #expect(AddressKey.of(try SocketAddress(ipAddress: "::ffff:c000:211", port: 1)) == "192.0.2.17")
    }

    @Test("No address, or a Unix socket: one shared key each")
    func others() throws {
        #expect(AddressKey.of(nil) == "unknown")
        #expect(AddressKey.of(try SocketAddress(unixDomainSocketPath: "/tmp/relay.sock")) == "unix")
    }
}
