import ChatTesting

/// The session unit tests' world: ChatTesting's `SessionRoom` (sessions wired to one `RelayRooms`
/// in memory, on a hand-driven clock), under the name the tests have always used.
typealias InMemoryChat = SessionRoom
