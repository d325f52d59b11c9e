import CSodium
import ChatCore
import Testing

@Suite("Base64 decoding agrees with libsodium's decoder")
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

    @Test("Non-canonical text is refused")
    func refusals() {
        for text in ["A", "AA", "AAA", "AA=", "A===", "AB==", "AAB=", "A@==", "AA==AA==", "====", "AAAA=", " AAA"] {
            #expect(Array(text.utf8).withUnsafeBytes { Base64.decode($0) } == nil, "\(text)")
        }
    }

    @Test("Every byte at every position of 4 to 12 characters, padded or not: same verdict as libsodium")
    func everyByteEveryPosition() {
        // isCanonical checks the alphabet branch-free over the whole text (so that it vectorizes):
        // check it byte by byte against libsodium's strict decoder.
        let bases = ["QUJD", "QUI=", "QQ==", "QUJDREVG", "QUJDREU=", "QUJDRA==", "QUJDREVGR0hJ", "QUJDREVGR0g="]
        for base in bases {
            for position in 0..<base.utf8.count {
                for byte in 0...255 {
                    var text = Array(base.utf8)
                    text[position] = UInt8(byte)
                    let canonical = text.withUnsafeBytes { Base64.isCanonical($0) }
                    #expect(canonical == (Self.sodiumDecode(text) != nil), "\(base) [\(position)] = \(byte)")
                    #expect(canonical == (text.withUnsafeBytes { Base64.decode($0) } != nil))
                }
            }
        }
    }
}
