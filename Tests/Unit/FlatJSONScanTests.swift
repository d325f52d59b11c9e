@testable import ChatCore
import Testing

@Suite("FlatJSON skips plain string bytes eight at a time, exactly")
struct FlatJSONScanTests {
    static func stops(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20
    }

    static func word(_ bytes: [UInt8]) -> UInt64 {
        UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }

    /// What `stoppingBytes` promises: zero when no byte stops the string, else the lowest flag at
    /// the first byte that does.
    static func check(_ bytes: [UInt8]) -> Bool {
        let stops = JSONString.stoppingBytes(word(bytes))
        guard let first = bytes.firstIndex(where: Self.stops) else { return stops == 0 }
        return stops != 0 && stops.trailingZeroBitCount / 8 == first && stops.trailingZeroBitCount % 8 == 7
    }

    @Test("Every byte value at every position of a word, among plain ASCII and UTF-8 neighbours")
    func everyByteEveryPosition() {
        // Plain ASCII, each kind of stopping byte, and bytes of multi-byte UTF-8.
        let fillers: [UInt8] = [UInt8(ascii: "A"), UInt8(ascii: "/"), UInt8(ascii: " "), 0x00, 0x1F, 0x22, 0x5C]
        for filler in fillers + [0x7F, 0x80, 0xFF] {
            for position in 0..<8 {
                for byte in 0...255 {
                    var bytes = [UInt8](repeating: filler, count: 8)
                    bytes[position] = UInt8(byte)
                    #expect(Self.check(bytes), "\(bytes)")
                    // And with everything before `position` plain, everything after it `filler`.
                    for plain in 0..<position { bytes[plain] = UInt8(ascii: "Q") }
                    #expect(Self.check(bytes), "\(bytes)")
                }
            }
        }
    }

    @Test("Seeded random words, most with several stopping bytes: the first one found exactly")
    func randomWords() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<200_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let bytes = withUnsafeBytes(of: state ^ (state >> 29)) { Array($0) }
            #expect(Self.check(bytes))
        }
    }

    @Test("A control character at any offset of a long string is reported at that offset")
    func controlCharacterOffsets() {
        let prefix = #"{"type":"JOIN","room":""#
        for length in 0..<40 {
            for position in 0..<length {
                var text = Array(prefix.utf8) + [UInt8](repeating: UInt8(ascii: "Q"), count: length)
                text[prefix.utf8.count + position] = 0x1F
                text += Array(#""}"#.utf8)
                let expected = WireError.malformedJSON(
                    offset: prefix.utf8.count + position, reason: .controlCharacterInString)
                #expect(throws: expected) { try WireCodec.decodeClientMessage(text) }
            }
            // Unterminated: the scan runs to the end of the input.
            let open = Array(prefix.utf8) + [UInt8](repeating: UInt8(ascii: "Q"), count: length)
            #expect(throws: WireError.malformedJSON(offset: open.count, reason: .unexpectedEnd)) {
                try WireCodec.decodeClientMessage(open)
            }
        }
    }

    @Test("An escape at any offset of a long string is found and decoded there")
    func escapeOffsets() throws {
        let prefix = Array(#"{"type":"ERROR","code":"NO_PEER","message":""#.utf8)
        for length in 1..<40 {
            for position in 0..<length {
                var text = [UInt8](repeating: UInt8(ascii: "m"), count: length)
                text.replaceSubrange(position..<(position + 1), with: Array(#"\u0041"#.utf8))
                let frame = prefix + text + Array(#""}"#.utf8)
                var expected = [UInt8](repeating: UInt8(ascii: "m"), count: length)
                expected[position] = UInt8(ascii: "A")
                let decoded = try WireCodec.decodeRelayMessage(frame)
                #expect(decoded == .error(code: .noPeer, message: String(decoding: expected, as: UTF8.self)))
            }
        }
    }
}
