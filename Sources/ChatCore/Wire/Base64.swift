import CSodium

/// Standard base64 (RFC 4648 §4, with padding), strict: canonical encodings only.
///
/// Encoding goes through libsodium's `sodium_bin2base64` (constant-time, and already linked);
/// decoding is done here after the strict canonical check (see `decode`). `isCanonical` is a
/// non-allocating check with exactly the same acceptance as `decode`, for the relay, which
/// validates payloads but never decodes them.
public enum Base64 {
    /// The base64 text of `bytes`.
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        Sodium.ensureInitialized()
        let encodedLength = sc_base64_encoded_len(bytes.count)  // includes the NUL terminator
        var output = [UInt8](repeating: 0, count: encodedLength)
        output.withUnsafeMutableBytes { out in
            _ = sodium_bin2base64(
                out.baseAddress!.assumingMemoryBound(to: CChar.self), encodedLength,
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
                sc_base64_variant_original())
        }
        output.removeLast()  // the NUL terminator
        return output
    }

    public static func encode(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { encode($0) }
    }

    /// Decode canonical base64, or nil.
    ///
    /// After `isCanonical` has checked every character, the padding and the unused bits, decoding
    /// is plain arithmetic, done here rather than by `sodium_base642bin`: what the wire carries in
    /// base64 is public (ciphertext, public keys, nonces), so libsodium's constant-time decoder buys
    /// nothing, and it was 9% of a simulation's instructions (BENCHMARKS.md, "Simulator").
    /// `Base64DecodeTests` checks it against libsodium's decoder.
    public static func decode(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        guard isCanonical(text) else { return nil }
        let count = text.count
        if count == 0 { return [] }
        let padding = text[count - 1] != UInt8(ascii: "=") ? 0 : text[count - 2] == UInt8(ascii: "=") ? 2 : 1
        let decodedCount = count / 4 * 3 - padding
        return [UInt8](unsafeUninitializedCapacity: decodedCount) { output, initializedCount in
            var written = 0
            var index = 0
            // Bounded: `index` moves by four up to `count`, a multiple of four.
            while index < count {
                // Canonical: every non-padding character has a sextet; padding counts as zero bits.
                let group = UInt32(sextet(text[index]) ?? 0) << 18 | UInt32(sextet(text[index + 1]) ?? 0) << 12
                    | UInt32(sextet(text[index + 2]) ?? 0) << 6 | UInt32(sextet(text[index + 3]) ?? 0)
                output[written] = UInt8(truncatingIfNeeded: group >> 16)
                written += 1
                if written < decodedCount {
                    output[written] = UInt8(truncatingIfNeeded: group >> 8)
                    written += 1
                }
                if written < decodedCount {
                    output[written] = UInt8(truncatingIfNeeded: group)
                    written += 1
                }
                index += 4
            }
            initializedCount = written
        }
    }

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
