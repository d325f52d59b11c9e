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
}
