import ChatCore
import RelayCore
import Foundation
import FuzzHarness
import Testing

/// One named test per bug the fuzzers found: the minimised input from FuzzTesting/Regressions
/// through its harness, plus the same scenario written out readably with its specific checks.
@Suite("Fuzz regressions")
struct RegressionTests {
    static func input(_ target: String, _ name: String) throws -> Data {
        try Data(contentsOf: CorpusReplayTests.fuzzTesting.appendingPathComponent("Regressions")
            .appendingPathComponent(target).appendingPathComponent(name))
    }

    /// FuzzRelayFrame: a key of one letter and many combining accents (one Character) made the
    /// relay answer with an ERROR whose message exceeded the 256 bytes a client accepts, because
    /// error descriptions cut untrusted text at 32 Characters instead of 32 bytes.
    @Test("Regression: the relay's ERROR for a key of combining marks is readable by a client")
    func errorReplyOverLimit() throws {
        let data = try Self.input("FuzzRelayFrame", "error-reply-over-256-bytes-combining-key.json")
        data.withUnsafeBytes { fuzzRelayFrame($0) }
        var rooms = RelayRooms<Int>()
        let actions = rooms.receive(frame: [UInt8](data), from: 7)
        guard case let .send(to: 7, reply)? = actions.first, case let .error(code, message) = reply else {
            Issue.record("expected an ERROR reply, got \(actions)")
            return
        }
        #expect(code == .unknownField)
        #expect(message.utf8.count <= WireLimits.default.errorMessageMaxBytes)
        #expect(try WireCodec.decodeRelayMessage(WireCodec.encode(reply)) == reply)
    }

    /// FuzzSession: a connection blip during the handshake (both JOINs reach the relay, then one
    /// side's connection drops before anything else is delivered, then it reconnects) made each
    /// side see the other's fresh KEY_EXCHANGE as a restart and answer with a fresh one of its own,
    /// forever: the network never settled and the handshake never completed.
    @Test("Regression: a reconnect during the handshake does not make the two sides re-key forever")
    func handshakePingPong() throws {
        let data = try Self.input("FuzzSession", "handshake-ping-pong-after-reconnect.bin")
        data.withUnsafeBytes { fuzzSession($0) }

        // Without a password (X25519) and with one (CPace, whose share is answered again the same way).
        for configuration in [ChatWorld.Configuration.small, .smallWithPassword] {
            let world = ChatWorld(configuration: configuration)
            for step: WorldStep in [.transportUp(side: 0), .transportUp(side: 1), .deliverUp(side: 0),
                                    .deliverUp(side: 1), .transportDown(side: 0), .transportUp(side: 0), .settle] {
                world.apply(step)
            }
            #expect(world.violations.isEmpty, "\(world.violations)")
            let connectsAndChats = {
                #expect(world.processes.map(\.session.state) == [.connected, .connected])
                #expect(world.processes[0].session.safetyNumber == world.processes[1].session.safetyNumber)
                // And a message crosses in each direction.
                world.send(0, Array("ping".utf8))
                world.send(1, Array("pong".utf8))
                world.settle()
                #expect(world.processes[0].shown.count == 1 && world.processes[1].shown.count == 1)
            }
            if configuration.password == nil {
                connectsAndChats()
            } else {
                // With the driver's immediate reconnect, the PEER_LEFT/PEER_FOUND churn makes side 0
                // pair three openings of side 1 and spend the guess budget (2 unconfirmed tags):
                // it ends "authentication failed" after an honest blip. Known since the driver-level
                // world; the fix belongs to the session protocol (docs/SECURITY.md, "The guess budget").
                withKnownIssue("a reconnect during a password handshake can spend the guess budget") {
                    connectsAndChats()
                }
            }
            #expect(world.violations.isEmpty, "\(world.violations)")
        }
    }
}
