/// One connection, as a shell numbers them: the relay numbers the WebSocket connections it
/// accepts, the client numbers its attempts to reach the relay. A counter, never reused within a
/// process, so an event from a connection that was already replaced can be recognised and ignored.
public struct ConnectionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64

    @inlinable
    public init(_ value: UInt64) {
        self.value = value
    }

    @inlinable
    public static func < (lhs: ConnectionID, rhs: ConnectionID) -> Bool { lhs.value < rhs.value }

    public var description: String { "c\(value)" }
}
