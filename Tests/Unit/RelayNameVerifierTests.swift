import Testing

@testable import ChatNetworking

/// The name check that runs after NIOSSL's through a proxy (where NIOSSL would also accept an
/// IP-address SAN equal to the proxy's address).
@Suite("Relay name check through a proxy")
struct RelayNameVerifierTests {
    @Test("Exact names (any case, a final dot), and '*.' for exactly one leftmost label")
    func matching() {
        #expect(RelayNameVerifier.matches(host: "relay.example.org", pattern: "relay.example.org"))
        #expect(RelayNameVerifier.matches(host: "Relay.Example.org.", pattern: "relay.example.ORG"))
        #expect(RelayNameVerifier.matches(host: "relay.example.org", pattern: "*.example.org"))
        #expect(!RelayNameVerifier.matches(host: "example.org", pattern: "*.example.org"))
        #expect(!RelayNameVerifier.matches(host: "a.b.example.org", pattern: "*.example.org"))
        #expect(!RelayNameVerifier.matches(host: "relay.org", pattern: "*.org"))
        #expect(!RelayNameVerifier.matches(host: "relay.example.org", pattern: "relay.example.com"))
        #expect(!RelayNameVerifier.matches(host: "localhost", pattern: "127.0.0.1"))
        #expect(!RelayNameVerifier.matches(host: "", pattern: ""))
    }
}
