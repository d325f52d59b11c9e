import ChatCore

/// The session lifecycle as docs/PROTOCOL.md documents it, written out here rather than derived
/// from `SessionStateMachine`'s table: a checker that asked the table that produced the
/// transitions could never disagree with it.
public enum Lifecycle {
    /// Whether a session may report a change from `from` to `to`.
    public static func isLegal(from: SessionState, to: SessionState) -> Bool {
        switch (from, to) {
        case (.destroyed, _): false
        case (_, .destroyed): true
        case (.initial, .searching): true
        case (.searching, .userFound), (.searching, .disconnected): true
        case (.userFound, .keySetup), (.userFound, .disconnected): true
        case (.keySetup, .connected), (.keySetup, .disconnected), (.keySetup, .userFound): true
        case (.connected, .disconnected): true
        case (.disconnected, .searching), (.disconnected, .userFound): true
        default: false
        }
    }
}

