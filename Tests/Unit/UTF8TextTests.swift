@testable import ChatCore
import Testing
import TestSupport

@Suite("UTF8Text accepts exactly what String(validating:as:) accepts", .cpuBound)
struct UTF8TextTests {
    static func reference(_ bytes: [UInt8]) -> String? {
        String(validating: bytes, as: UTF8.self)
    }

    static func candidate(_ bytes: [UInt8]) -> String? {
        bytes.withUnsafeBytes { UTF8Text.string(validating: $0) }
    }

    @Test("Edge cases: ASCII, NUL, overlong forms, surrogates, past U+10FFFF, truncated sequences")
    func edgeCases() {
        let cases: [[UInt8]] = [
            [], Array("hello".utf8), [0x00], [0x41, 0x00, 0x42], Array("ünïcödé 🙂".utf8),
            [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0x80, 0x80],
            [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xEF, 0xBF, 0xBF],
            [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
            [0xF5, 0x80, 0x80, 0x80], [0xFE], [0xFF], [0xF0, 0x90, 0x80, 0x41], [0xE2, 0x82], [0xC3],
        ]
        for bytes in cases {
            #expect(Self.candidate(bytes) == Self.reference(bytes), "\(bytes)")
        }
    }

    @Test("Every one- and two-byte input, and seeded random inputs up to 12 bytes: same verdict and text")
    func exhaustiveShortAndRandom() {
        for first in 0...255 {
            #expect(Self.candidate([UInt8(first)]) == Self.reference([UInt8(first)]))
            for second in 0...255 {
                let bytes = [UInt8(first), UInt8(second)]
                #expect(Self.candidate(bytes) == Self.reference(bytes))
            }
        }
        var state: UInt64 = 0x0123_4567_89AB_CDEF
        var accepted = 0
        for round in 0..<50_000 {
            let bytes = (0..<(round % 12 + 1)).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                // Bias towards the bytes that start and continue multi-byte sequences.
                let byte = UInt8(truncatingIfNeeded: state >> 56)
                return state & 0x100 == 0 ? byte | 0x80 : byte
            }
            let expected = Self.reference(bytes)
            if expected != nil { accepted += 1 }
            #expect(Self.candidate(bytes) == expected)
        }
        // The random inputs exercise both verdicts.
        #expect(accepted > 1_000 && accepted < 49_000)
    }
}
