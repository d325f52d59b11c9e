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
