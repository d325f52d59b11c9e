import ChatCore
import ChatTesting

/// The invariants are ChatTesting's, shared with the fuzz harness and the tests.
public typealias Invariant = ChatTesting.Invariant

/// A broken invariant: the run stops at the first one.
public struct Violation: Error, Sendable, Hashable, Codable {
    public var invariant: Invariant
    /// What exactly was seen.
    public var detail: String
    /// Virtual time of the event that broke it.
    public var atNanoseconds: UInt64
    /// The last trace lines before it, oldest first.
    public var traceTail: [String]
}

/// The lifecycle table as a legality matrix: `allowed[from][to]` when some event moves `from` to `to`.
struct TransitionTable {
    private let allowed: [[Bool]]

    init() {
        let states = SessionState.allCases
        allowed = states.map { from in
            states.map { to in
                SessionEvent.allCases.contains { SessionStateMachine.transition(from: from, on: $0) == to }
            }
        }
    }

    func isLegal(from: SessionState, to: SessionState) -> Bool {
        allowed[from.index][to.index]
    }
}

extension SessionState {
    /// Position in `allCases` (declaration order), for tables and compact trace records.
    var index: Int {
        switch self {
        case .initial: 0
        case .searching: 1
        case .userFound: 2
        case .keySetup: 3
        case .connected: 4
        case .disconnected: 5
        case .destroyed: 6
        }
    }
}
