import ChatCore
import RelayCore
import FuzzHarness
import PropertyBased
import Testing
import TestSupport

/// Model-based test of `RelayRooms` against `RoomsModel` (FuzzHarness), a naive array-based
/// reference that takes its parse results from the full decoder rather than the relay's
/// zero-copy validator. The FuzzRelayRooms fuzz target drives the same comparison with
/// coverage guidance; here generated sequences shrink to a minimal failing one.
@Suite("Relay room logic against a reference model", .shrinking, .cpuBound)
struct RelayRoomsModelTests {
    /// Steps from small integers (so they shrink): (kind, connection, argument, frame bytes).
    static let steps = zip(Gen<Int>.int(in: 0...11), Gen<Int>.int(in: 0...(RoomsScenario.connectionCount - 1)),
                           Gen<Int>.int(in: 0...5), Generators.clientMessage, Generators.edits)
        .map { kind, connection, argument, message, edits -> RoomsStep in
            switch kind {
            case 0, 1: .join(connection: connection, room: argument % RoomsScenario.rooms.count)
            case 2, 3: .joinWithToken(connection: connection, room: argument % 2, token: argument == 5 ? 255 : argument)
            case 4: .signal(connection: connection, kind: argument % RoomsScenario.kinds.count)
            case 5: .frame(connection: connection, bytes: WireCodec.encode(message))
            case 6: .frame(connection: connection, bytes: mutate(WireCodec.encode(message), edits))
            case 7: .disconnect(connection: connection)
            case 8, 9: .leave(connection: connection)
            case 10: .advance(seconds: argument * 8)
            default: .signal(connection: connection, kind: argument % RoomsScenario.kinds.count)
            }
        }
        .array(of: 0...60)

    @Test("Random frames and disconnects from six connections: same actions and state as the model")
    func randomSequences() async {
        await propertyCheck(count: 300, input: Self.steps) { steps in
            var scenario = RoomsScenario()
            for (index, step) in steps.enumerated() {
                let problems = scenario.apply(step)
                #expect(problems.isEmpty, "step \(index) \(step): \(problems.joined(separator: "; "))")
                if !problems.isEmpty { return }
            }
        }
    }

    @Test("Everyone leaving closes every room")
    func everyoneLeaves() async {
        await propertyCheck(count: 100, input: Self.steps) { steps in
            var scenario = RoomsScenario()
            for step in steps { _ = scenario.apply(step) }
            for connection in 0..<RoomsScenario.connectionCount {
                #expect(scenario.apply(.disconnect(connection: connection)).isEmpty)
            }
            // Reserved seats end with their grace period.
            #expect(scenario.apply(.advance(seconds: Int(RoomsScenario.graceSeconds))).isEmpty)
            #expect(scenario.relay.roomCount == 0)
            #expect(scenario.relay.joinedConnectionCount == 0)
        }
    }
}
