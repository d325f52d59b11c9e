import ChatCore

/// Why a code typed on the command line was refused.
public enum InvitationCodeError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidRoom(RoomCode.Invalid)
    /// A `ROOM-word-word` code: the password part needs the authentication feature (CPace),
    /// which this build does not have yet. Refused rather than silently ignored, so that no one
    /// believes a password protects the chat when it does not.
    case passwordPartUnsupported

    public var description: String {
        switch self {
        case let .invalidRoom(reason): "invalid code: \(reason.rawValue)"
        case .passwordPartUnsupported:
            "codes with a password part (ROOM-word-word) are not supported by this build; use the room part only"
        }
    }
}

/// The code two people share to meet in a room.
///
/// Today a code is the room alone (`^[A-Z0-9]+$`, typed in any case). The authentication issue
/// extends it to the magic-wormhole shape `ROOM-word-word`, where only the room part ever goes
/// to the relay.
public enum InvitationCode {
    /// Characters of generated room codes: digits and capitals without the look-alikes 0/O and
    /// 1/I/L, so a code read aloud or copied by hand survives.
    static let alphabet: [Character] = Array("23456789ABCDEFGHJKMNPQRSTUVWXYZ")
    /// Generated codes have 10 characters: 31^10 ≈ 2^49.5 rooms.
    public static let generatedLength = 10

    /// Parse a code as the user typed it (surrounding spaces ignored, any case).
    public static func parse(_ text: String) throws(InvitationCodeError) -> RoomCode {
        let trimmed = text.trimmingASCIIWhitespace().uppercased()
        if trimmed.contains("-") { throw .passwordPartUnsupported }
        do {
            return try RoomCode(trimmed)
        } catch {
            throw .invalidRoom(error)
        }
    }

    /// A fresh random room code from `entropy`.
    public static func generate(entropy: some EntropySource) -> RoomCode {
        var text = ""
        for _ in 0..<generatedLength {
            text.append(alphabet[Int(entropy.uniform(below: UInt64(alphabet.count)))])
        }
        do {
            return try RoomCode(text)
        } catch {
            preconditionFailure("generated room code \(text) is invalid: \(error)")
        }
    }

    /// The exact command the peer should type to join `room`.
    public static func peerCommand(room: RoomCode, relay: String, defaultRelay: String, caFile: String?) -> String {
        var command = "securechat \(room.value)"
        if relay != defaultRelay { command += " --relay \(relay)" }
        if caFile != nil { command += " --ca-file <the same CA certificate>" }
        return command
    }
}

extension String {
    /// The string without leading and trailing ASCII spaces, tabs, CR and LF (no Foundation).
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
