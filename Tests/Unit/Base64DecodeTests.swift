import CSodium
import ChatCore
import Testing
import TestSupport

@Suite("Base64 decoding agrees with libsodium's decoder", .cpuBound)
struct Base64DecodeTests {
    /// libsodium's decoder, the reference.
    static func sodiumDecode(_ text: [UInt8]) -> [UInt8]? {
        var output = [UInt8](repeating: 0, count: text.count / 4 * 3 + 3)
        var decodedLength = 0
        let status = output.withUnsafeMutableBytes { out in
            text.withUnsafeBytes { input in
                sodium_base642bin(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                    input.baseAddress?.assumingMemoryBound(to: CChar.self), input.count,
                    nil, &decodedLength, nil, sc_base64_variant_original())
            }
        }
        guard status == 0 else { return nil }
        return Array(output.prefix(decodedLength))
    }

    @Test("Every length from 0 to 300 bytes, varied contents: same bytes as libsodium and as encoded")
    func roundTrips() {
        var state: UInt64 = 0x1234_5678_9ABC_DEF0
        for length in 0...300 {
            let bytes = (0..<length).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            let text = Base64.encode(bytes)
            let decoded = text.withUnsafeBytes { Base64.decode($0) }
            #expect(decoded == bytes)
            #expect(decoded == Self.sodiumDecode(text))
        }
        for byte in 0...255 {
            let bytes = [UInt8](repeating: UInt8(byte), count: byte % 5 + 1)
            #expect(Base64.encode(bytes).withUnsafeBytes { Base64.decode($0) } == bytes)
        }
    }

    /// libsodium's (constant-time) encoder, the reference for `Base64.encode`.
    static func sodiumEncode(_ bytes: [UInt8]) -> [UInt8] {
        let length = sc_base64_encoded_len(bytes.count)
        var output = [UInt8](repeating: 0, count: length)
        output.withUnsafeMutableBytes { out in
            bytes.withUnsafeBytes { input in
                _ = sodium_bin2base64(
                    out.baseAddress!.assumingMemoryBound(to: CChar.self), length,
                    input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count,
                    sc_base64_variant_original())
            }
        }
        return Array(output.dropLast())  // the NUL terminator
    }

    @Test("Encoding gives libsodium's text for every length from 0 to 300 bytes and every byte value")
    func encodingMatchesSodium() {
        var state: UInt64 = 0x0F1E_2D3C_4B5A_6978
        for length in 0...300 {
            let bytes = (0..<length).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            #expect(Base64.encode(bytes) == Self.sodiumEncode(bytes), "length \(length)")
            var appended = Array("prefix".utf8)
            bytes.withUnsafeBytes { Base64.append($0, to: &appended) }
            #expect(appended == Array("prefix".utf8) + Self.sodiumEncode(bytes), "length \(length)")
        }
        let everyByte = (0...255).map { UInt8($0) }
        for shift in 0..<3 {
            let bytes = Array(everyByte[shift...]) + everyByte.prefix(shift)
            #expect(Base64.encode(bytes) == Self.sodiumEncode(bytes))
        }
        let chunk = (0..<46_120).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        #expect(Base64.encode(chunk) == Self.sodiumEncode(chunk))
    }

    @Test("Non-canonical text is refused")
    func refusals() {
        for text in ["A", "AA", "AAA", "AA=", "A===", "AB==", "AAB=", "A@==", "AA==AA==", "====", "AAAA=", " AAA"] {
            #expect(Array(text.utf8).withUnsafeBytes { Base64.decode($0) } == nil, "\(text)")
        }
    }

    /// The canonical check byte by byte, as `isCanonical` did before it was made branch-free.
    static func referenceIsCanonical(_ text: [UInt8]) -> Bool {
        func sextet(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"): 62
            case UInt8(ascii: "/"): 63
            default: nil
            }
        }
        let count = text.count
        guard count % 4 == 0 else { return false }
        if count == 0 { return true }
        var padding = 0
        if text[count - 1] == UInt8(ascii: "=") { padding = text[count - 2] == UInt8(ascii: "=") ? 2 : 1 }
        let dataCount = count - padding
        for index in 0..<dataCount where sextet(text[index]) == nil {
            return false
        }
        if padding > 0, let last = sextet(text[dataCount - 1]) {
            let unusedBitsMask: UInt8 = padding == 1 ? 0b11 : 0b1111
            if last & unusedBitsMask != 0 { return false }
        }
        return true
    }

    @Test("Every byte at every position of 4 to 12 characters, padded or not: same verdict as byte by byte")
    func everyByteEveryPosition() {
        // isCanonical checks the alphabet branch-free over the whole text (so that it vectorizes).
        // (libsodium 1.0.18 is no reference for refusals: it decodes bytes above 0x7F, as signed chars.)
        let bases = ["QUJD", "QUI=", "QQ==", "QUJDREVG", "QUJDREU=", "QUJDRA==", "QUJDREVGR0hJ", "QUJDREVGR0g="]
        var refused = 0
        for base in bases {
            for position in 0..<base.utf8.count {
                for byte in 0...255 {
                    var text = Array(base.utf8)
                    text[position] = UInt8(byte)
                    let canonical = text.withUnsafeBytes { Base64.isCanonical($0) }
                    #expect(canonical == Self.referenceIsCanonical(text), "\(base) [\(position)] = \(byte)")
                    #expect(canonical == (text.withUnsafeBytes { Base64.decode($0) } != nil))
                    if !canonical { refused += 1 }
                }
            }
        }
        #expect(refused > 10_000)
    }

    @Test("A file chunk's text with one character outside the alphabet anywhere is refused, in one pass")
    func chunkSizedRefusals() {
        // The decoder checks while it decodes (no separate pass): a bad character in the middle of
        // the whole groups must refuse the text as surely as one in the last group.
        let chunk = (0..<46_120).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ $0 >> 7) }
        let text = Base64.encode(chunk)
        #expect(text.withUnsafeBytes { Base64.decode($0) } == chunk)
        var refused = 0
        for position in stride(from: 0, to: text.count, by: 997) + [text.count - 5, text.count - 4] {
            for byte: UInt8 in [0, UInt8(ascii: "="), UInt8(ascii: "-"), UInt8(ascii: "_"), 0x80, 0xC1, 0xFF] {
                var bad = text
                bad[position] = byte
                let decoded = bad.withUnsafeBytes { Base64.decode($0) }
                #expect(decoded == nil, "[\(position)] = \(byte)")
                #expect(bad.withUnsafeBytes { Base64.isCanonical($0) } == false)
                if decoded == nil { refused += 1 }
            }
        }
        #expect(refused == (text.count + 996) / 997 * 7 + 14)
    }
}
