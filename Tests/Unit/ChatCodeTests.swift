import CSodium
@_spi(Testing) import ChatCore
import ChatTesting
import Testing

@Suite("Chat codes: ROOM-word-word, the wordlist, and a password that never reaches the wire")
struct ChatCodeTests {
    @Test("The wordlist is BIP-39 English exactly: 2048 words, SHA-256 of the upstream file")
    func wordlist() throws {
        // Parse every word back through the public parser, in order, and rebuild english.txt.
        var rebuilt: [UInt8] = []
        var words: [String] = []
        for index in 0..<2048 {
            // Drive generation with an entropy source that picks word `index` for both words.
            let code = ChatCode.generate(entropy: FixedEntropy(Self.drawBytes(room: 0, words: [index, index])))
            let text = code.revealForSharing()
            let word = String(text.split(separator: "-")[1])
            words.append(word)
            rebuilt += Array(word.utf8) + [0x0A]
        }
        #expect(Set(words).count == 2048)
        #expect(words == words.sorted())
        #expect(Set(words.map { $0.prefix(4) }).count == 2048, "BIP-39 words are unique in 4 letters")
        var digest = [UInt8](repeating: 0, count: 32)
        crypto_hash_sha256(&digest, rebuilt, UInt64(rebuilt.count))
        // SHA-256 of bitcoin/bips bip-0039/english.txt (= mnemonic 0.21's mnemonic/wordlist/english.txt).
        #expect(Hex.encode(digest) == "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda")
    }

    /// Entropy bytes that make `ChatCode.generate` pick room symbol `room` eight times and the
    /// given word indices: `uniform(below:)` draws 8 little-endian bytes per choice and (for
    /// these small values, far below its rejection limit) returns them modulo the bound.
    static func drawBytes(room: UInt64, words: [Int]) -> [UInt8] {
        var bytes: [UInt8] = []
        for value in Array(repeating: room, count: 8) + words.map(UInt64.init) {
            withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
        }
        return bytes
    }

    @Test("Entropy as stated: 32 unambiguous room symbols x 8 = 40 bits, 2048 words x 2 = 22 bits")
    func entropy() {
        #expect(ChatCode.roomAlphabet.count == 32)
        #expect(Set(ChatCode.roomAlphabet).count == 32)
        for ambiguous in "01IO".utf8 { #expect(!ChatCode.roomAlphabet.contains(ambiguous)) }
        #expect(ChatCode.roomEntropyBits == ChatCode.generatedRoomLength * 5)  // log2(32) = 5.
        #expect(ChatCode.passwordEntropyBits == ChatCode.generatedWordCount * 11)  // log2(2048) = 11.
        #expect(ChatCode.roomEntropyBits == 40 && ChatCode.passwordEntropyBits == 22)
    }

    @Test("Generated codes have the form ROOM-word-word and parse back to the same room and password")
    func generateAndParse() throws {
        let entropy = SeededEntropy(seed: 7)
        var rooms: Set<RoomCode> = []
        for _ in 0..<200 {
            let code = ChatCode.generate(entropy: entropy)
            let text = code.revealForSharing()
            let parts = text.split(separator: "-")
            #expect(parts.count == 3)
            #expect(parts[0].utf8.count == 8 && parts[0].utf8.allSatisfy { ChatCode.roomAlphabet.contains($0) })
            let parsed = try ChatCode.parse(text)
            #expect(parsed.room == code.room)
            #expect(parsed.password?.prsForTesting == code.password?.prsForTesting)
            #expect(code.password?.prsForTesting == Array("\(parts[1])-\(parts[2])".utf8))
            rooms.insert(code.room)
        }
        #expect(rooms.count == 200)
    }

    @Test("Known draw: fixed entropy gives a fixed code")
    func knownDraw() {
        // Room symbol 10 of the alphabet is "C"; words 0 and 2047 are "abandon" and "zoo".
        let code = ChatCode.generate(entropy: FixedEntropy(Self.drawBytes(room: 10, words: [0, 2047])))
        #expect(code.revealForSharing() == "CCCCCCCC-abandon-zoo")
        #expect(code.room.value == "CCCCCCCC")
        #expect(code.wordCount == 2)
    }

    @Test("Typing is forgiving: case, spaces, repeated dashes and 4-letter prefixes")
    func normalisation() throws {
        let canonical = try ChatCode.parse("ABCD2345-oyster-lemon")
        for variant in ["abcd2345-oyster-lemon", "  ABCD2345 Oyster LEMON ", "abcd2345--oyster - lemon",
                        "ABCD2345-oyst-lemo", "ABCD2345\toyster\nlemon"] {
            let parsed = try ChatCode.parse(variant)
            #expect(parsed.room == canonical.room, "\(variant)")
            #expect(parsed.password?.prsForTesting == canonical.password?.prsForTesting, "\(variant)")
        }
        #expect(canonical.password?.prsForTesting == Array("oyster-lemon".utf8))
        // A room alone is a code without a password.
        let roomOnly = try ChatCode.parse("room42")
        #expect(roomOnly.room.value == "ROOM42")
        #expect(roomOnly.password == nil)
        #expect(roomOnly.revealForSharing() == "ROOM42")
    }

    @Test("Bad codes get typed errors that never echo a word")
    func errors() {
        #expect(throws: ChatCode.ParseError.empty) { try ChatCode.parse("  - - ") }
        #expect(throws: ChatCode.ParseError.invalidRoom(.badCharacter)) { try ChatCode.parse("RO?M-oyster-lemon") }
        #expect(throws: ChatCode.ParseError.invalidRoom(.tooLong)) {
            try ChatCode.parse(String(repeating: "A", count: 65) + "-oyster")
        }
        #expect(throws: ChatCode.ParseError.unknownWord(position: 2)) { try ChatCode.parse("ROOM-oyster-lemonade") }
        #expect(throws: ChatCode.ParseError.unknownWord(position: 1)) { try ChatCode.parse("ROOM-zzzz") }
        #expect(throws: ChatCode.ParseError.unknownWord(position: 1)) { try ChatCode.parse("ROOM-héllo") }
        #expect(throws: ChatCode.ParseError.ambiguousWord(position: 1)) { try ChatCode.parse("ROOM-abs") }
        #expect(throws: ChatCode.ParseError.tooManyWords(9)) {
            try ChatCode.parse("ROOM" + String(repeating: "-zoo", count: 9))
        }
        #expect(throws: ChatCode.ParseError.tooLong) { try ChatCode.parse(String(repeating: "A", count: 257)) }
        let message = ChatCode.ParseError.unknownWord(position: 2).description
        #expect(message.contains("--password"))
    }

    @Test("Descriptions, debug output and reflection never show the words")
    func redaction() throws {
        let code = try ChatCode.parse("ROOM42-oyster-lemon")
        let shown = ["\(code)", String(reflecting: code), String(describing: code.password!),
                     String(reflecting: code.password!), "\(Mirror(reflecting: code).children.map { "\($0.value)" })"]
        for text in shown {
            #expect(!text.contains("oyster") && !text.contains("lemon"), "\(text)")
        }
        #expect("\(code)".contains("ROOM42"))
    }

    @Test("Only the room reaches the wire: a JOIN frame for a code holds no password byte sequence")
    func onlyRoomOnWire() throws {
        let code = try ChatCode.parse("ROOM42-oyster-lemon")
        let frame = WireCodec.encode(ClientMessage.join(code.room))
        let text = String(decoding: frame, as: UTF8.self)
        #expect(text == #"{"type":"JOIN","room":"ROOM42"}"#)
        #expect(!text.lowercased().contains("oyster") && !text.lowercased().contains("lemon"))
    }

    @Test("A password of one's own: OpaqueString-style preparation (NFC, spaces), typed refusals")
    func userPassword() throws {
        // NFC: a decomposed "é" is the same password as the precomposed one.
        #expect(try Password("caf\u{65}\u{301}").prsForTesting == Array("caf\u{E9}".utf8))
        // Non-ASCII spaces become U+0020.
        #expect(try Password("a\u{00A0}b\u{3000}c").prsForTesting == Array("a b c".utf8))
        // Nothing else changes: case and surrounding spaces are part of the password.
        #expect(try Password(" Secret ").prsForTesting == Array(" Secret ".utf8))
        #expect(throws: Password.Invalid.empty) { try Password("") }
        #expect(throws: Password.Invalid.controlCharacter) { try Password("pass\u{7}word") }
        #expect(throws: Password.Invalid.controlCharacter) { try Password("line\nbreak") }
        #expect(throws: Password.Invalid.tooLong) { try Password(String(repeating: "x", count: 1025)) }
        #expect(try Password(String(repeating: "x", count: 1024)).byteCount == 1024)
        // A typed password equal to a code's words is the same PRS (so `--password oyster-lemon` matches).
        let fromCode = try ChatCode.parse("R-oyster-lemon").password?.prsForTesting
        #expect(try Password("oyster-lemon").prsForTesting == fromCode)
    }
}
