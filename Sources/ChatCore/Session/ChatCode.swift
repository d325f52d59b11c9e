/// A chat password: the CPace PRS. It never leaves the client.
///
/// The bytes live only in guarded memory and have no public accessor: the only thing that can
/// read them is `CPaceParty` (same module). `Password` is deliberately not `Equatable`,
/// `Hashable`, `Codable` or a `String`, its description is redacted, and nothing in the wire codec
/// accepts it, so it cannot reach the relay by accident (croc's CVE-2023-43617 sent the whole
/// code, password included, to its relay as the room name).
public final class Password: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The longest password accepted, in bytes of its normalised UTF-8 form.
    public static let byteCountMax = 1024

    /// Why a user-supplied password was refused.
    public enum Invalid: String, Error, Hashable, Sendable, CustomStringConvertible {
        case empty = "the password is empty"
        case tooLong = "the password is longer than 1024 bytes"
        case controlCharacter = "the password contains a control character"

        public var description: String { rawValue }
    }

    /// The PRS bytes (internal: CPace reads them, nothing else).
    let secret: SecureBytes

    private init(secret: SecureBytes) {
        self.secret = secret
    }

    /// A password of the user's own (`--password` or a prompt), prepared the way RFC 8265's
    /// OpaqueString profile prepares passwords, as the CPace draft asks (§4.3): every non-ASCII
    /// space becomes U+0020, control characters are refused, and the result is put in Unicode
    /// Normalization Form C, so "é" typed precomposed on one side and decomposed on the other is
    /// the same password. No case folding and no trimming: those would change the password.
    public convenience init(_ text: String) throws(Invalid) {
        guard !text.isEmpty else { throw .empty }
        // Bounded by the input: at most `byteCountMax * 4` scalars are looked at.
        guard text.utf8.count <= Self.byteCountMax * 4 else { throw .tooLong }
        var mapped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control:
                throw .controlCharacter
            case .spaceSeparator:
                mapped.append(" ")
            default:
                mapped.append(scalar)
            }
        }
        // NFC: the standard library's own normaliser (the one String comparison uses). It is
        // underscored but public and ABI-stable; ChatCore has no Foundation to call instead.
        var normalized = String(mapped)._nfcCodeUnits
        defer { Sodium.memzero(&normalized) }
        guard normalized.count <= Self.byteCountMax else { throw .tooLong }
        self.init(secret: normalized.withUnsafeBytes { SecureBytes(copying: $0) })
    }

    /// The password of a generated or typed code: its words joined by "-", e.g. "oyster-lemon".
    convenience init(words indices: [Int]) {
        precondition(!indices.isEmpty && indices.count <= ChatCode.wordCountMax)
        var joined = Array(indices.map { BIP39Wordlist.words[$0] }.joined(separator: "-").utf8)
        defer { Sodium.memzero(&joined) }
        self.init(secret: joined.withUnsafeBytes { SecureBytes(copying: $0) })
    }

    /// The number of PRS bytes (not secret in CPace: the draft's generator string encodes it).
    public var byteCount: Int { secret.count }

    /// Wipe the password now (at the end of a chat; re-keys need it until then).
    public func wipe() {
        secret.wipe()
    }

    /// True once `wipe()` has run.
    public var isWiped: Bool { secret.isWiped }

    /// An independent copy in its own guarded memory: a session keeps one and wipes it when it
    /// ends, whatever its creator does with the original.
    func copy() -> Password {
        Password(secret: secret.withUnsafeBytes { SecureBytes(copying: $0) })
    }

    public var description: String { "Password(redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: []) }

    /// A copy of the PRS bytes in an ordinary array, for tests only.
    @_spi(Testing)
    public var prsForTesting: [UInt8] { secret.withUnsafeBytes { Array($0) } }
}

/// A code in the magic-wormhole style: `ROOM-word-word`.
///
/// The room part (`[A-Z0-9]`) is all the relay ever sees; the words are the password and never
/// leave the client. A generated code has an 8-character room from a 32-symbol alphabet (40 bits)
/// and two words from the BIP-39 English list (2 x 11 = 22 bits). The room bits only keep strangers
/// out of each other's rooms (the relay sees the room anyway); the 22 password bits are what a
/// malicious relay must guess, online, one guess per session: CPace gives it no offline attack
/// (docs/SECURITY.md, "CPace: one online guess, no offline dictionary attack").
public struct ChatCode: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The room alphabet: digits 2-9 and letters without I and O, so that no two symbols look
    /// alike (0/O, 1/I/L) and every symbol carries exactly 5 bits.
    public static let roomAlphabet: [UInt8] = Array("23456789ABCDEFGHJKLMNPQRSTUVWXYZ".utf8)
    /// Room characters in a generated code.
    public static let generatedRoomLength = 8
    /// Words in a generated code.
    public static let generatedWordCount = 2
    /// Bits of entropy of a generated room part: 8 x log2(32) = 40.
    public static let roomEntropyBits = 40
    /// Bits of entropy of a generated password: 2 x log2(2048) = 22.
    public static let passwordEntropyBits = 22
    /// The most words a typed code may have.
    public static let wordCountMax = 8
    /// The longest typed code accepted, in bytes.
    public static let textLengthMax = 256

    /// Why a typed code was refused. Cases never echo a word: words are the password.
    public enum ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        /// Nothing but spaces and dashes.
        case empty
        /// Longer than `textLengthMax` bytes.
        case tooLong
        /// The room part is not a valid room code.
        case invalidRoom(RoomCode.Invalid)
        /// Word number `position` (1-based) is not on the wordlist.
        case unknownWord(position: Int)
        /// Word number `position` is a prefix of several words: type more letters.
        case ambiguousWord(position: Int)
        /// More than `wordCountMax` words.
        case tooManyWords(Int)

        public var description: String {
            switch self {
            case .empty: "the code is empty"
            case .tooLong: "the code is too long"
            case let .invalidRoom(reason): "the room part is invalid: \(reason.rawValue)"
            case let .unknownWord(position):
                "word \(position) of the code is not on the wordlist; check the spelling, "
                    + "or use --password for a password of your own"
            case let .ambiguousWord(position): "word \(position) of the code is ambiguous: type at least 4 letters"
            case let .tooManyWords(count): "the code has \(count) words; at most \(ChatCode.wordCountMax) are allowed"
            }
        }
    }

    /// The room: the only part that goes to the relay.
    public let room: RoomCode
    /// The password, or nil for a code without words (then there is no PAKE: the session falls
    /// back to X25519 and safety numbers, unless `--password` supplies one).
    public let password: Password?
    /// The word indices of the password (nil for a code without words).
    private let wordIndices: [Int]?

    private init(room: RoomCode, wordIndices: [Int]?) {
        self.room = room
        self.wordIndices = wordIndices
        self.password = wordIndices.map { Password(words: $0) }
    }

    /// A fresh code: 8 room symbols and 2 words, every choice uniform (rejection sampling).
    public static func generate(entropy: some EntropySource) -> ChatCode {
        var room: [UInt8] = []
        for _ in 0..<generatedRoomLength {
            room.append(roomAlphabet[Int(entropy.uniform(below: UInt64(roomAlphabet.count)))])
        }
        var indices: [Int] = []
        for _ in 0..<generatedWordCount {
            indices.append(Int(entropy.uniform(below: UInt64(BIP39Wordlist.words.count))))
        }
        defer { Sodium.memzero(&room) }
        // The alphabet is A-Z and 2-9, so the room is valid by construction.
        let code = room.withUnsafeBytes { try! RoomCode(validating: $0) }
        return ChatCode(room: code, wordIndices: indices)
    }

    /// Read a code as a person types it: `ROOM-word-word`, any case, with dashes or spaces
    /// between the parts (and around them). Words may be abbreviated to a prefix of at least
    /// four letters that names one word (BIP-39 words are unique in their first four letters).
    /// A code with only a room part has no password.
    public static func parse(_ text: String) throws(ParseError) -> ChatCode {
        guard text.utf8.count <= textLengthMax else { throw .tooLong }
        var parts: [[UInt8]] = [[]]
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "-"), UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                if !(parts[parts.count - 1].isEmpty) { parts.append([]) }
            default:
                parts[parts.count - 1].append(byte)
            }
        }
        if parts[parts.count - 1].isEmpty { parts.removeLast() }
        defer {
            for index in parts.indices { Sodium.memzero(&parts[index]) }
        }
        guard let roomPart = parts.first else { throw .empty }
        let upper = roomPart.map { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) ? $0 - 32 : $0 }
        let room: RoomCode
        do throws(RoomCode.Invalid) {
            room = try upper.withBytes { buffer throws(RoomCode.Invalid) in try RoomCode(validating: buffer) }
        } catch {
            throw .invalidRoom(error)
        }
        let words = parts.dropFirst()
        guard words.count <= wordCountMax else { throw .tooManyWords(words.count) }
        if words.isEmpty { return ChatCode(room: room, wordIndices: nil) }
        var indices: [Int] = []
        for (offset, word) in words.enumerated() {
            indices.append(try wordIndex(word, position: offset + 1))
        }
        return ChatCode(room: room, wordIndices: indices)
    }

    /// The index of a typed word: an exact match, or a prefix of 4+ letters matching one word.
    private static func wordIndex(_ typed: [UInt8], position: Int) throws(ParseError) -> Int {
        let lower = typed.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
        let candidate = String(decoding: lower, as: UTF8.self)
        let words = BIP39Wordlist.words
        // The list is sorted: binary search for the first word not below the candidate.
        var low = 0
        var high = words.count
        while low < high {  // Bounded: halves each time (11 steps for 2048 words).
            let middle = (low + high) / 2
            if words[middle].utf8.lexicographicallyPrecedes(candidate.utf8) { low = middle + 1 } else { high = middle }
        }
        guard low < words.count else { throw .unknownWord(position: position) }
        if words[low] == candidate { return low }
        guard words[low].hasPrefix(candidate) else { throw .unknownWord(position: position) }
        // A prefix is accepted from four letters on, where it names exactly one BIP-39 word;
        // a shorter one is refused even when unique, so one rule covers every word.
        guard lower.count >= 4 else { throw .ambiguousWord(position: position) }
        return low
    }

    /// The whole code as the user must see it once to pass it on (`ROOM-word-word`). This string
    /// holds the password: show it, never log it, never send it.
    public func revealForSharing() -> String {
        guard let wordIndices else { return room.value }
        return ([room.value] + wordIndices.map { BIP39Wordlist.words[$0] }).joined(separator: "-")
    }

    /// The number of words (0 for a room-only code).
    public var wordCount: Int { wordIndices?.count ?? 0 }

    /// Redacted: the room and how many words follow, never the words.
    public var description: String {
        wordCount == 0 ? "ChatCode(\(room))" : "ChatCode(\(room)-<\(wordCount) words redacted>)"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["room": room]) }
}
