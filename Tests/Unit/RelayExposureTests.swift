import ChatNetworking
import Testing

@testable import ChatClient
@testable import ClientCore

@Suite("The warning for plain ws:// across a network")
struct RelayExposureTests {
    @Test("Loopback is localhost, 127.0.0.0/8 and ::1 as typed; a name that merely starts with 127 is not")
    func loopback() throws {
        for url in ["ws://127.0.0.1:8080", "ws://127.1.2.3", "ws://localhost:1", "ws://[::1]:8080", "ws://LOCALHOST",
                    "ws://relay.localhost", "ws://[::ffff:127.0.0.1]:1"] {
            #expect(try WebSocketURL(url).hostIsLoopback, "\(url)")
            #expect(try WebSocketURL(url).exposureWarning == nil, "\(url)")
        }
        for url in ["ws://127.example.com", "ws://192.168.1.20:8080", "ws://relay.example", "ws://[2001:db8::1]",
                    "ws://0.0.0.0:8080", "ws://10.0.0.1"] {
            #expect(try !WebSocketURL(url).hostIsLoopback, "\(url)")
            #expect(try WebSocketURL(url).exposureWarning?.kind == .unencryptedRelay, "\(url)")
        }
        #expect(try WebSocketURL("wss://relay.example").exposureWarning == nil)
        #expect(try WebSocketURL("ws://192.168.1.20:8080").exposureWarning?.text.hasPrefix(
            "ws:// is not encrypted on the way to 192.168.1.20:8080: anyone on the network path sees the room") == true)
    }

    @Test("Through Tor or a proxy: no warning for an onion service; beyond the proxy, one that names the hop")
    func throughProxy() throws {
        let tor = RelayRoute.tor(endpoint: "127.0.0.1:9050")
        #expect(try WebSocketURL("ws://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion")
            .exposureWarning(route: tor) == nil)
        #expect(try WebSocketURL("wss://relay.example").exposureWarning(route: tor) == nil)
        let text = try #require(try WebSocketURL("ws://relay.example:8080").exposureWarning(route: tor)?.text)
        #expect(text.hasPrefix("ws:// is not encrypted between Tor's exit relay and relay.example:8080"), "\(text)")
        #expect(text.contains("not your address"))
        let proxied = try WebSocketURL("ws://relay.example").exposureWarning(route: .proxy(endpoint: "10.0.0.2:1080"))
        #expect(proxied?.text.hasPrefix("ws:// is not encrypted between the proxy and relay.example") == true)
        #expect(try WebSocketURL("ws://x.onion").hostIsOnion && WebSocketURL("ws://X.ONION.").hostIsOnion)
        #expect(try !WebSocketURL("ws://onion.example").hostIsOnion)
    }

    @Test("The invitation for an onion relay tells the peer to add --tor")
    func onionInvitation() {
        let onion = "ws://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion"
        let invitation = Invitation.make(
            code: "ROOM1-orbit-velvet", ownPassword: false, relay: onion, defaultRelay: ClientApp.defaultRelay,
            caFile: nil, sameMachineCommand: nil)
        #expect(invitation.commands == ["securechat --join --tor --relay \(onion)"])
        let remote = Invitation.make(
            code: "ROOM1-orbit-velvet", ownPassword: false, relay: onion, defaultRelay: ClientApp.defaultRelay,
            caFile: nil, sameMachineCommand: "./run.sh")
        #expect(remote.commands == ["./run.sh --join", "securechat --join --tor --relay \(onion)"])
    }
}
