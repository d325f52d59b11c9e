/// Standard base64 (RFC 4648 §4, with padding), strict: canonical encodings only.
///
/// Encoding and decoding are plain table arithmetic here rather than libsodium's constant-time
/// `sodium_bin2base64`/`sodium_base642bin`: what the wire carries in base64 is public (ciphertext,
/// public keys, nonces), so constant time buys nothing, and libsodium's encoder was the largest
/// single cost of sending a file chunk (BENCHMARKS.md, "File transfer"). `Base64DecodeTests`
/// checks both directions against libsodium. `isCanonical` is a non-allocating check with exactly
/// the same acceptance as `decode`, for the relay, which validates payloads but never decodes them.
public enum Base64 {
    /// The base64 text of `bytes`.
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var output: [UInt8] = []
        append(bytes, to: &output)
        return output
    }

    public static func encode(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { encode($0) }
    }

    /// The number of characters `encode` makes of `count` bytes.
    public static func encodedCount(_ count: Int) -> Int {
        (count + 2) / 3 * 4
    }

    /// Append the base64 text of `bytes` to `output`, without an intermediate array (a file chunk's
    /// 61 KB of text is written once, straight into the frame).
    public static func append(_ bytes: UnsafeRawBufferPointer, to output: inout [UInt8]) {
        let count = bytes.count
        let encoded = encodedCount(count)
        guard encoded > 0 else { return }
        let start = output.count
        output.reserveCapacity(start + encoded)
        output.append(contentsOf: repeatElement(0, count: encoded))
        output.withUnsafeMutableBufferPointer { whole in
            let out = UnsafeMutableBufferPointer(rebasing: whole[start...])
            alphabet.withUnsafeBufferPointer { table in encodeGroups(bytes, table, out) }
        }
    }

    /// Write the base64 text of `bytes` into the front of `out` (a binary SIGNAL converted to its
    /// text form straight into the frame's buffer); false, and nothing written, if `out` is shorter
    /// than `encodedCount(bytes.count)`.
    public static func write(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        let encoded = encodedCount(bytes.count)
        guard out.count >= encoded else { return false }
        guard encoded > 0 else { return true }
        let typed = out.bindMemory(to: UInt8.self)
        alphabet.withUnsafeBufferPointer { table in
            encodeGroups(bytes, table, UnsafeMutableBufferPointer(rebasing: typed[..<encoded]))
        }
        return true
    }

    /// Encode `bytes` into `out` (exactly `encodedCount(bytes.count)` long) with `table`.
    @inline(__always)
    private static func encodeGroups(
        _ bytes: UnsafeRawBufferPointer, _ table: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>
    ) {
        let count = bytes.count
        let whole = count / 3 * 3
        var input = 0
        var written = 0
        // Bounded: `input` moves by three up to `whole`.
        while input < whole {
            let group = UInt32(bytes[input]) << 16 | UInt32(bytes[input + 1]) << 8 | UInt32(bytes[input + 2])
            out[written] = table[Int(group >> 18)]
            out[written + 1] = table[Int(group >> 12 & 0x3F)]
            out[written + 2] = table[Int(group >> 6 & 0x3F)]
            out[written + 3] = table[Int(group & 0x3F)]
            input += 3
            written += 4
        }
        let rest = count - whole
        guard rest > 0 else { return }
        let group = UInt32(bytes[input]) << 16 | (rest == 2 ? UInt32(bytes[input + 1]) << 8 : 0)
        out[written] = table[Int(group >> 18)]
        out[written + 1] = table[Int(group >> 12 & 0x3F)]
        out[written + 2] = rest == 2 ? table[Int(group >> 6 & 0x3F)] : UInt8(ascii: "=")
        out[written + 3] = UInt8(ascii: "=")
    }

    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Decode canonical base64, or nil: the same acceptance as `isCanonical`, in one pass.
    ///
    /// Decoding is plain arithmetic, done here rather than by `sodium_base642bin`: what the wire
    /// carries in base64 is public (ciphertext, public keys, nonces), so libsodium's constant-time
    /// decoder buys nothing, and it was 9% of a simulation's instructions (BENCHMARKS.md,
    /// "Simulator"). Whole groups go through a table without a branch per byte (the per-byte
    /// version was 43% of a file receiver's samples), and the table marks every character outside
    /// the alphabet with its high bit, ORed over the whole text and checked once at the end: one
    /// pass over a chunk's 61 KB instead of a validating pass before the decoding one (BENCHMARKS.md,
    /// "File transfer"). `Base64DecodeTests` checks it against libsodium's decoder and `isCanonical`.
    public static func decode(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        let count = text.count
        guard count % 4 == 0 else { return nil }
        if count == 0 { return [] }
        let padding = text[count - 1] != UInt8(ascii: "=") ? 0 : text[count - 2] == UInt8(ascii: "=") ? 2 : 1
        var outside: UInt8 = 0
        let decoded = [UInt8](unsafeUninitializedCapacity: count / 4 * 3) { output, initializedCount in
            sextets.withUnsafeBufferPointer { table in
                outside = decodeGroups(text, padding: padding, table, output)
            }
            initializedCount = count / 4 * 3 - padding
        }
        return outside & invalid == 0 ? decoded : nil
    }

    /// Decode `text` (a multiple of 4 long, `padding` `=` at its end) into `output`; the OR of
    /// every data character's table entry (its `invalid` bit set if any is outside the alphabet,
    /// or if the last one carries bits the padding says do not exist).
    @inline(__always)
    private static func decodeGroups(
        _ text: UnsafeRawBufferPointer, padding: Int, _ table: UnsafeBufferPointer<UInt8>,
        _ output: UnsafeMutableBufferPointer<UInt8>
    ) -> UInt8 {
        let whole = text.count / 4 - 1
        var outside: UInt8 = 0
        var index = 0
        var written = 0
        // Bounded: `index` moves by four, `whole` times; no early exit, so no branch per group.
        for _ in 0..<whole {
            let a = table[Int(text[index])], b = table[Int(text[index + 1])]
            let c = table[Int(text[index + 2])], d = table[Int(text[index + 3])]
            outside |= a | b | c | d
            let group = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
            output[written] = UInt8(truncatingIfNeeded: group >> 16)
            output[written + 1] = UInt8(truncatingIfNeeded: group >> 8)
            output[written + 2] = UInt8(truncatingIfNeeded: group)
            index += 4
            written += 3
        }
        // The last group: padding characters count as zero bits; `=` anywhere else is outside.
        // (An outside character garbles its group's bytes: the caller then returns nil.)
        let a = table[Int(text[index])], b = table[Int(text[index + 1])]
        let c = padding == 2 ? 0 : table[Int(text[index + 2])]
        let d = padding >= 1 ? 0 : table[Int(text[index + 3])]
        outside |= a | b | c | d
        // Canonical: the bits the padding drops must be zero.
        if padding == 1 && c & 0b11 != 0 || padding == 2 && b & 0b1111 != 0 { outside |= invalid }
        let group = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
        output[written] = UInt8(truncatingIfNeeded: group >> 16)
        if padding < 2 { output[written + 1] = UInt8(truncatingIfNeeded: group >> 8) }
        if padding == 0 { output[written + 2] = UInt8(truncatingIfNeeded: group) }
        return outside
    }

    /// The bit `sextets` sets for characters outside the alphabet (`=` included).
    private static let invalid: UInt8 = 0x80

    /// Each character's sextet, `invalid` for everything else.
    private static let sextets: [UInt8] = (0...255).map { sextet(UInt8($0)) ?? invalid }

    /// True when `text` is canonical padded base64: length a multiple of 4, only the standard
    /// alphabet, `=` only as the last one or two characters, and zero unused bits before padding.
    public static func isCanonical(_ text: UnsafeRawBufferPointer) -> Bool {
        let count = text.count
        guard count % 4 == 0 else { return false }
        if count == 0 { return true }
        var padding = 0
        if text[count - 1] == UInt8(ascii: "=") { padding = text[count - 2] == UInt8(ascii: "=") ? 2 : 1 }
        let dataCount = count - padding
        // Every byte checked without an early exit and without branches, so that the compiler
        // vectorizes the loop: about 1.5 instructions a byte instead of 13 (isCanonical was 5% of
        // a simulation's instructions, BENCHMARKS.md). Same alphabet as `sextet`.
        var outside: UInt8 = 0
        for index in 0..<dataCount {
            let byte = text[index]
            let letter: UInt8 = (byte | 0x20) &- UInt8(ascii: "a") < 26 ? 1 : 0  // A-Z and a-z only
            let digit: UInt8 = byte &- UInt8(ascii: "0") < 10 ? 1 : 0
            let plus: UInt8 = byte == UInt8(ascii: "+") ? 1 : 0
            let slash: UInt8 = byte == UInt8(ascii: "/") ? 1 : 0
            outside |= (letter | digit | plus | slash) ^ 1
        }
        guard outside == 0 else { return false }
        // The last data character must not carry bits that the padding says do not exist.
        if padding > 0, let last = sextet(text[dataCount - 1]) {
            let unusedBitsMask: UInt8 = padding == 1 ? 0b11 : 0b1111
            if last & unusedBitsMask != 0 { return false }
        }
        return true
    }

    @inline(__always)
    static func sextet(_ byte: UInt8) -> UInt8? {
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
