import CSodium

/// A safety number: 60 decimal digits, in 12 groups of 5 as Signal shows them, computed from the
/// whole handshake transcript, for `/verify`.
///
/// Both sides compute it from the same public data, put in a canonical order (the two parties
/// sorted by their lv-encoded key and hello), so two users who read out equal numbers know that
/// each saw the other's key and hello unchanged. A relay in the middle holds one transcript with
/// each user; it would need two transcripts with equal numbers, and it must find them within one
/// handshake: with 60 digits (199 bits) that is a birthday search of about 2^100 hashes and key
/// generations (docs/SECURITY.md, "Safety number length", which also says why we hash once and
/// not 5200 times as Signal does).
public struct SafetyNumber: Hashable, Sendable, CustomStringConvertible {
    /// Digits in a safety number.
    public static let digitCount = 60
    /// Digits per displayed group.
    public static let digitsPerGroup = 5
    /// Groups in a safety number.
    public static let groupCount = digitCount / digitsPerGroup
    /// log2(10^60), rounded down: the bits a match must collide on.
    public static let entropyBits = 199
    /// Domain separation: this hash is used for nothing else.
    static let label = Array("securechat/v3/safety-number".utf8)

    /// One side of the handshake as it appeared on the wire.
    public struct Party: Hashable, Sendable {
        /// The public key or share (the KEY_EXCHANGE or PAKE `key` field).
        public var key: [UInt8]
        /// The hello payload (the `payload` field: version, instance, epoch, ...).
        public var hello: [UInt8]

        public init(key: [UInt8], hello: [UInt8]) {
            self.key = key
            self.hello = hello
        }

        /// lv_cat(key, hello): the canonical encoding that also decides the order.
        var encoded: [UInt8] { CPace.lvCat(key, hello) }
    }

    /// The 60 digits, without spaces.
    public let digits: String

    /// The safety number of a handshake in `room` between `local` and `peer`.
    ///
    /// SHA-512 over lv_cat(label, room, first, second), where first and second are the two
    /// parties' lv_cat(key, hello) in lexicographic order, so both sides get the same input. The
    /// digits are Signal's encoding: each of 12 consecutive 5-byte chunks of the digest, read
    /// big-endian, modulo 100000, as five digits (bias below 10^-7 per group: 2^40 is not a
    /// multiple of 10^5, and 2^40 / 10^5 is about 1.1 x 10^7).
    public init(room: RoomCode, local: Party, peer: Party) {
        let localEncoded = local.encoded
        let peerEncoded = peer.encoded
        // The larger first, as o_cat orders (draft-irtf-cfrg-cpace Appendix A.3.2).
        let (first, second) = CPace.isLexicographicallyLarger(peerEncoded, localEncoded)
            ? (peerEncoded, localEncoded) : (localEncoded, peerEncoded)
        let input = CPace.lvCat([Self.label, Array(room.value.utf8), first, second])
        let digest = CPace.sha512(input)
        precondition(digest.count >= Self.groupCount * 5)
        var text = ""
        text.reserveCapacity(Self.digitCount)
        for group in 0..<Self.groupCount {
            var chunk: UInt64 = 0
            for byte in digest[(group * 5)..<(group * 5 + 5)] { chunk = chunk << 8 | UInt64(byte) }
            let value = chunk % 100_000
            let decimal = String(value)
            text += String(repeating: "0", count: Self.digitsPerGroup - decimal.count) + decimal
        }
        digits = text
    }

    /// The 12 groups of five digits.
    public var groups: [String] {
        (0..<Self.groupCount).map { group in
            let start = digits.index(digits.startIndex, offsetBy: group * Self.digitsPerGroup)
            return String(digits[start..<digits.index(start, offsetBy: Self.digitsPerGroup)])
        }
    }

    /// The groups in three lines of four, the way `/verify` shows them.
    public var displayLines: [String] {
        let groups = self.groups
        return stride(from: 0, to: groups.count, by: 4).map { start in
            groups[start..<min(start + 4, groups.count)].joined(separator: " ")
        }
    }

    /// True when `typed` (spaces, dashes and line breaks ignored) is this number, all 60 digits.
    /// Comparing fewer digits is not offered: a 5-digit match costs a relay only ~300 tries.
    public func matches(_ typed: String) -> Bool {
        let typedDigits = typed.unicodeScalars.filter { !" -\t\r\n".unicodeScalars.contains($0) }
        return String(String.UnicodeScalarView(typedDigits)) == digits
    }

    /// The groups separated by spaces.
    public var description: String { groups.joined(separator: " ") }
}
