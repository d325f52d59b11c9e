import ChatCore
import RelayCore
import Testing

@Suite("Error descriptions stay within what the relay may send back")
struct WireErrorDescriptionTests {
    /// The relay answers a malformed frame with ERROR(code, description); a client reads an ERROR
    /// message only up to 256 bytes. A key of one letter and 300 combining accents is one
    /// Character, so a 32-Character excerpt of it was 600 bytes and the reply was unreadable.
    @Test("A key made of one letter and 300 combining accents gives a readable ERROR (fuzz regression)")
    func combiningMarksInKey() throws {
        let key = "e" + String(repeating: "\u{301}", count: 300)
        let frame = Array(#"{"type":"JOIN","room":"R",""#.utf8) + Array(key.utf8) + Array(#"":1}"#.utf8)
        var rooms = RelayRooms<Int>()
        let actions = rooms.receive(frame: frame, from: 1)
        guard case let .send(to: 1, reply)? = actions.first, case let .error(code, message) = reply else {
            Issue.record("expected an ERROR, got \(actions)")
            return
        }
        #expect(code == .unknownField)
        #expect(message.utf8.count <= 256)
        #expect(try WireCodec.decodeRelayMessage(WireCodec.encode(reply)) == reply)
    }

    @Test("Every description echoing input keeps at most 32 bytes of it, cut between scalars")
    func excerptsAreBounded() {
        let long = String(repeating: "é", count: 40) + "\u{1F600}"
        for error: WireError in [.duplicateField(long), .unknownField(long), .wrongFieldType(long, expected: .string),
                                 .unknownType(long), .unknownErrorCode(long)] {
            #expect(error.description.utf8.count <= 100, "\(error.description)")
            #expect(error.description.contains(String(repeating: "é", count: 16)))
            #expect(!error.description.contains(String(repeating: "é", count: 17)))
        }
        // A 4-byte scalar that would straddle the limit is left out, not split.
        let straddling = String(repeating: "a", count: 30) + "\u{1F600}"
        #expect(WireError.unknownField(straddling).description == "unknown field \"\(String(repeating: "a", count: 30))\"")
    }
}
