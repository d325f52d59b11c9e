import ChatCore

#if canImport(Glibc)
    import Glibc
#endif

/// Looks for secrets in bytes that leave a client: each secret in the raw bytes, and inside every
/// run of base64 text, decoded, at any byte offset.
///
/// A secret that a client sends in the clear shows up raw; one that it base64-encodes without
/// encrypting (a record format that authenticates but does not encrypt, say) shows up only after
/// decoding. Decoding every base64 run of every frame is exact but costs a decode per frame, so a
/// prefilter runs first at memchr speed: base64 maps each 3-byte group of the decoded bytes to 4
/// characters aligned from the start of the run, so a secret at any offset shows up in the text as
/// one of three fixed character strings (one per offset modulo 3, the trick of secret scanners).
/// Only a frame that matches a pattern is decoded (every run, from each of its 4 character phases)
/// and searched for the secret itself, so a short secret's short patterns cost a decode now and
/// then, never a false report. `ChatTestingTests` checks the scanner against planted secrets at
/// every offset and alignment.
public struct SecretScanner: Sendable {
    /// One secret: its name (for reports; never its bytes) and what to look for.
    struct Needle: Sendable {
        let name: String
        let bytes: [UInt8]
        /// The raw secret, then its base64 forms for each phase.
        let patterns: [[UInt8]]
        /// A secret too short to have a whole 3-byte group at every phase has no pattern for some
        /// phase: it is always searched for in the decoded runs.
        let alwaysDecode: Bool
    }

    private var needles: [Needle] = []

    public init() {}

    /// Look for `secret` from now on. Secrets shorter than 3 bytes would match by chance and are
    /// refused.
    public mutating func add(_ secret: [UInt8], name: String) {
        precondition(secret.count >= 3, "a secret shorter than 3 bytes matches by chance")
        guard !needles.contains(where: { $0.bytes == secret }) else { return }
        var patterns = [secret]
        var alwaysDecode = false
        for phase in 0..<3 {
            // Skip bytes so that the rest starts on a 3-byte group boundary of the decoded bytes when
            // the secret starts at an offset congruent to `phase` modulo 3; keep only whole groups.
            let skip = (3 - phase) % 3
            let groups = (secret.count - skip) / 3
            guard groups >= 1 else {
                alwaysDecode = true
                continue
            }
            patterns.append(Base64.encode(Array(secret[skip..<(skip + groups * 3)])))
        }
        needles.append(Needle(name: name, bytes: secret, patterns: patterns, alwaysDecode: alwaysDecode))
    }

    /// Forget every secret.
    public mutating func removeAll() {
        needles.removeAll()
    }

    /// The secrets looked for.
    public var count: Int { needles.count }

    /// The name of the first secret found in `bytes` (raw or base64-decoded), or nil.
    public func find(in bytes: [UInt8]) -> String? {
        bytes.withUnsafeBytes { find(in: $0) }
    }

    /// The name of the first secret found in `bytes` (raw or base64-decoded), or nil.
    public func find(in bytes: UnsafeRawBufferPointer) -> String? {
        var decodedRuns: [[UInt8]]?
        for needle in needles {
            guard needle.alwaysDecode || needle.patterns.contains(where: { Self.contains($0, in: bytes) }) else {
                continue
            }
            if Self.contains(needle.bytes, in: bytes) { return needle.name }
            let runs = decodedRuns ?? Self.decodeBase64Runs(bytes)
            decodedRuns = runs
            for run in runs where run.withUnsafeBytes({ Self.contains(needle.bytes, in: $0) }) {
                return needle.name
            }
        }
        return nil
    }

    // MARK: Search and decoding

    /// Whether `needle` occurs in `bytes` (memchr for the first byte, memcmp for the rest; glibc's
    /// memmem is a GNU extension that Swift does not import).
    static func contains(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer) -> Bool {
        let needleCount = needle.count
        guard needleCount > 0, bytes.count >= needleCount, let base = bytes.baseAddress else { return false }
        return needle.withUnsafeBytes { pattern in
            let first = Int32(pattern[0])
            let lastStart = bytes.count - needleCount
            var offset = 0
            // Bounded: every iteration moves `offset` forward by at least one.
            while offset <= lastStart {
                guard let hit = memchr(base + offset, first, lastStart - offset + 1) else { return false }
                if memcmp(hit, pattern.baseAddress!, needleCount) == 0 { return true }
                offset = base.distance(to: UnsafeRawPointer(hit)) + 1
            }
            return false
        }
    }

    /// Every maximal run of base64 characters, decoded from each of its 4 character phases (so a
    /// run that does not start where its encoding started is still read right at one of them).
    static func decodeBase64Runs(_ bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
        var runs: [[UInt8]] = []
        var start = 0
        // Bounded: `start` only moves forward.
        while start < bytes.count {
            guard sextet(bytes[start]) != nil else {
                start += 1
                continue
            }
            var end = start
            while end < bytes.count, sextet(bytes[end]) != nil { end += 1 }
            for phase in 0..<4 where end - (start + phase) >= 2 {
                runs.append(decode(bytes, from: start + phase, to: end))
            }
            start = end
        }
        return runs
    }

    /// Decode `bytes[from..<to]` leniently: whole 4-character groups, then a last group of 2 or 3
    /// characters as the 1 or 2 bytes it stands for (the `=` padding ends a run).
    private static func decode(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((to - from + 3) / 4 * 3)
        var index = from
        // Bounded: each round consumes up to 4 characters.
        while to - index >= 2 {
            let characters = min(4, to - index)
            var word: UInt32 = 0
            for offset in 0..<4 {
                let value = offset < characters ? UInt32(sextet(bytes[index + offset]) ?? 0) : 0
                word = word << 6 | value
            }
            let decoded = [UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 8),
                           UInt8(truncatingIfNeeded: word)]
            output.append(contentsOf: decoded.prefix(characters - 1))
            index += characters
        }
        return output
    }

    @inline(__always)
    private static func sextet(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}

/// The planted plaintext of a simulated message: `PLAINTEXT-CANARY/<client>/<incarnation>/<number>/<filler>`.
///
/// Every message carries the canary, so one scan for it over every byte the relay handles shows
/// whether any plaintext leaked, and the receiver can tell exactly which message it got.
public enum Canary {
    public static let marker = "PLAINTEXT-CANARY/"
    public static let markerBytes = Array(marker.utf8)

    /// Which message a canary text is.
    public struct Identity: Hashable, Sendable {
        public var client: Int
        public var incarnation: Int
        public var number: Int

        public init(client: Int, incarnation: Int, number: Int) {
            self.client = client
            self.incarnation = incarnation
            self.number = number
        }
    }

    /// The text of message `number` of `client`'s process `incarnation`, padded with `fillerLength`
    /// letters drawn from `fillerSeed`.
    public static func text(client: Int, incarnation: Int, number: Int, fillerLength: Int, fillerSeed: UInt64)
        -> String
    {
        // Built as bytes, then validated once: per-character String appends cost more than the
        // session's encryption of the message.
        var bytes = markerBytes
        bytes.reserveCapacity(markerBytes.count + 24 + fillerLength)
        appendField(client, to: &bytes)
        appendField(incarnation, to: &bytes)
        appendField(number, to: &bytes)
        var state = fillerSeed
        for _ in 0..<fillerLength {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes.append(UInt8(ascii: "a") + UInt8((state >> 33) % 26))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `value` in decimal (as `String(value)` writes it), then a slash; without a String per field.
    private static func appendField(_ value: Int, to bytes: inout [UInt8]) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        let magnitude = value.magnitude
        var divisor: UInt = 1
        // Bounded: at most 19 steps (UInt.max has 20 digits).
        while divisor <= magnitude / 10 { divisor *= 10 }
        repeat {
            bytes.append(UInt8(ascii: "0") + UInt8(magnitude / divisor % 10))
            divisor /= 10
        } while divisor > 0
        bytes.append(UInt8(ascii: "/"))
    }

    /// The identity of a received text, or nil when it is not a well-formed simulated message.
    public static func parse(_ text: String) -> Identity? {
        // Over the contiguous UTF-8 bytes: stepping a Substring.UTF8View byte by byte cost ~3,500
        // instructions per message, 3% of a simulation (BENCHMARKS.md).
        var text = text
        return text.withUTF8 { bytes in
            guard bytes.starts(with: markerBytes) else { return nil }
            var index = markerBytes.count
            var fields = (0, 0, 0)
            for field in 0..<3 {
                var value = 0
                var digits = 0
                while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9"),
                    digits < 12
                {
                    value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                    digits += 1
                    index += 1
                }
                guard digits > 0, index < bytes.count, bytes[index] == UInt8(ascii: "/") else { return nil }
                index += 1
                switch field {
                case 0: fields.0 = value
                case 1: fields.1 = value
                default: fields.2 = value
                }
            }
            return Identity(client: fields.0, incarnation: fields.1, number: fields.2)
        }
    }
}
