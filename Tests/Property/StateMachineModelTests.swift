import ChatCore
import PropertyBased
import Testing

/// Model-based test of `SessionStateMachine`, after Hypothesis's RuleBasedStateMachine: random
/// event sequences, each step compared with a small reference model, invariants after every step,
/// failing sequences shrunk (fewer events, earlier events).
@Suite("Session state machine against a reference model", .shrinking)
struct StateMachineModelTests {
    /// The lifecycle written event by event from docs/PROTOCOL.md ("States") and the design's
    /// list, independently of the implementation's state-by-state switch.
    static func reference(_ state: SessionState, _ event: SessionEvent) -> SessionState? {
        if state == .destroyed { return nil }  // Final.
        let withPeer: [SessionState] = [.userFound, .keySetup, .connected]
        switch event {
        case .quit, .fatalError: return .destroyed
        case .transportUp: return [.initial, .disconnected].contains(state) ? .searching : nil
        case .transportDown: return state == .initial ? nil : .disconnected
        case .peerFound: return [.searching, .disconnected].contains(state) ? .userFound : nil
        case .keysGenerated: return state == .userFound ? .keySetup : nil
        case .keyConfirmed: return state == .keySetup ? .connected : nil
        case .peerLeft:
            if state == .searching { return .searching }  // A stale PEER_LEFT: still waiting.
            return withPeer.contains(state) || state == .disconnected ? .disconnected : nil
        case .peerRestarted:
            return switch state {
            case .keySetup: .userFound
            case .connected: .disconnected
            default: nil
            }
        case .sendMessage, .receiveMessage: return state == .connected ? .connected : nil
        }
    }

    static let events = Gen<Int>.int(in: 0...(SessionEvent.allCases.count - 1)).array(of: 0...80)
        .map { $0.map { SessionEvent.allCases[$0] } }

    @Test("Random event sequences: accept/reject and the next state match the model at every step")
    func randomSequences() async {
        await propertyCheck(count: 500, input: Self.events) { events in
            var machine = SessionStateMachine()
            var modelState = SessionState.initial
            for (index, event) in events.enumerated() {
                let before = machine.state
                let expected = Self.reference(modelState, event)
                do throws(SessionStateMachine.Rejection) {
                    let next = try machine.apply(event)
                    #expect(expected == next, "step \(index): \(event) in \(before) went to \(next)")
                    #expect(machine.state == next)
                } catch {
                    #expect(expected == nil, "step \(index): \(event) in \(before) rejected, model says \(expected!)")
                    #expect(error == SessionStateMachine.Rejection(state: before, event: event))
                    #expect(machine.state == before, "a rejection changed the state")
                }
                modelState = expected ?? modelState
                // Invariants after every step.
                #expect(machine.state == modelState)
                if before == .destroyed { #expect(machine.state == .destroyed, "DESTROYED is final") }
                if machine.state == .connected && before != .connected {
                    #expect(before == .keySetup, "CONNECTED is entered only from KEY_SETUP")
                }
                if [.sendMessage, .receiveMessage].contains(event) && machine.state == .connected {
                    #expect(before == .connected, "messages only in CONNECTED")
                }
            }
        }
    }

    @Test("The model and the table agree on every (state, event) pair")
    func everyPair() {
        for state in SessionState.allCases {
            for event in SessionEvent.allCases {
                #expect(SessionStateMachine.transition(from: state, on: event) == Self.reference(state, event),
                        "\(event) in \(state)")
            }
        }
    }
}
