import ChatCore
import Testing

@Suite("Session state machine: every state × every event")
struct StateMachineTests {
    typealias S = SessionState
    typealias E = SessionEvent

    /// The expected table, written out independently of the implementation. Anything not listed
    /// must be rejected.
    static let expected: [S: [E: S]] = [
        .initial: [.transportUp: .searching, .quit: .destroyed, .fatalError: .destroyed],
        .searching: [
            .peerFound: .userFound, .transportDown: .disconnected, .peerLeft: .searching,
            .quit: .destroyed, .fatalError: .destroyed,
        ],
        .userFound: [
            .keysGenerated: .keySetup, .transportDown: .disconnected, .peerLeft: .disconnected,
            .quit: .destroyed, .fatalError: .destroyed,
        ],
        .keySetup: [
            .keyConfirmed: .connected, .transportDown: .disconnected, .peerLeft: .disconnected,
            .peerRestarted: .userFound, .quit: .destroyed, .fatalError: .destroyed,
        ],
        .connected: [
            .sendMessage: .connected, .receiveMessage: .connected, .transportDown: .disconnected,
            .peerLeft: .disconnected, .peerRestarted: .disconnected, .quit: .destroyed, .fatalError: .destroyed,
        ],
        .disconnected: [
            .transportUp: .searching, .peerFound: .userFound, .transportDown: .disconnected,
            .peerLeft: .disconnected, .quit: .destroyed, .fatalError: .destroyed,
        ],
        .destroyed: [:],
    ]

    static let pairs: [(S, E)] = S.allCases.flatMap { state in E.allCases.map { (state, $0) } }

    @Test("Each (state, event) pair is a defined transition or a typed rejection", arguments: pairs)
    func pair(state: S, event: E) {
        var machine = SessionStateMachine(state: state)
        let outcome: Result<SessionState, SessionStateMachine.Rejection>
        do { outcome = .success(try machine.apply(event)) } catch { outcome = .failure(error) }
        if let next = Self.expected[state]?[event] {
            #expect(outcome == .success(next))
            #expect(machine.state == next)
        } else {
            #expect(outcome == .failure(SessionStateMachine.Rejection(state: state, event: event)))
            #expect(machine.state == state, "a rejection leaves the state alone")
        }
    }

    @Test("The table covers all 77 pairs and the original lifecycle is a path through it")
    func lifecycle() throws {
        #expect(Self.pairs.count == S.allCases.count * E.allCases.count)
        var machine = SessionStateMachine()
        for event: E in [.transportUp, .peerFound, .keysGenerated, .keyConfirmed, .transportDown, .quit] {
            try machine.apply(event)
        }
        #expect(machine.state == .destroyed)
    }

    @Test("Nothing is sent or received outside CONNECTED")
    func onlyConnectedCarriesMessages() {
        for state in S.allCases {
            let send = SessionStateMachine.transition(from: state, on: .sendMessage)
            let receive = SessionStateMachine.transition(from: state, on: .receiveMessage)
            #expect((send != nil) == (state == .connected))
            #expect((receive != nil) == (state == .connected))
        }
    }

    @Test("DESTROYED is terminal")
    func destroyedIsTerminal() {
        for event in E.allCases {
            #expect(SessionStateMachine.transition(from: .destroyed, on: event) == nil)
        }
    }
}
