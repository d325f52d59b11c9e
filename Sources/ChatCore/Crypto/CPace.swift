import CSodium

// CPace over ristretto255 with SHA-512 (the draft's CPACE-RISTR255-SHA512 suite), following
// draft-irtf-cfrg-cpace-21 ("CPace, a balanced composable PAKE"), cfrg/draft-irtf-cfrg-cpace.
// Section numbers in comments are that draft's.
//
// Every group operation is libsodium's (1.0.18): `crypto_core_ristretto255_from_hash` (the
// RFC 9496 element derivation), `crypto_scalarmult_ristretto255` (which decodes strictly and
// refuses the neutral element), `crypto_hash_sha512` and `crypto_auth_hmacsha512`. What is
// hand-written here is only the draft's byte encodings (prepend_len, lv_cat, o_cat, the
// generator string and the transcripts), because no library we may use provides them; each
// one cites the section that defines it and is checked against the draft's own vectors.

/// Why a CPace run stopped. Every case aborts the run (§7.2: "MUST abort"); none is retried.
public enum CPaceError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The peer's share is not a 32-byte ristretto255 encoding.
    case invalidShareLength(Int)
    /// The peer's share does not decode to a group element, or K is the neutral element
    /// (`scalar_mult_vfy` returned G.I): the draft's abort condition (§7.2, §8.3, §9).
    case invalidPeerShare
    /// The peer's share is our own, reflected back to us (the loopback attack of §10.1.2).
    case reflectedShare
    /// Associated data longer than `CPace.associatedDataMaxBytes`.
    case associatedDataTooLong(Int)
    /// The peer's key confirmation tag did not verify: the two sides do not hold the same ISK,
    /// so they used different passwords (or someone in the middle guessed and missed).
    case confirmationFailed
    /// The run already produced its result or aborted; a CPace party is single-use (§10.9).
    case alreadyFinished
    /// This peer share was already answered by this party (each pairing is computed once).
    case shareAlreadyAnswered

    public var description: String {
        switch self {
        case let .invalidShareLength(length): "CPace share has \(length) bytes, expected 32"
        case .invalidPeerShare: "CPace share is not a valid ristretto255 element (or yields the identity)"
        case .reflectedShare: "CPace share is our own, reflected back"
        case let .associatedDataTooLong(length): "CPace associated data too long (\(length) bytes)"
        case .confirmationFailed: "CPace key confirmation failed (different passwords?)"
        case .alreadyFinished: "CPace run already finished"
        case .shareAlreadyAnswered: "CPace share already answered"
        }
    }
}

/// The CPACE-RISTR255-SHA512 suite: constants, the draft's encodings and its group functions.
///
/// The encodings are public (they are pure functions of public data and are checked against the
/// draft's appendix vectors). Functions that handle the password, the scalar or the secret point
/// K are `@_spi(CPaceInternals)`: §10.3 says an implementation MUST NOT expose K, so only
/// known-answer tests reach them. Sessions use `CPaceParty`, which never reveals K or a scalar.
public enum CPace {
    /// G.DSI for ristretto255 (§8.3).
    public static let dsi: [UInt8] = Array("CPaceRistretto255".utf8)
    /// G.DSI || "_ISK" (§7.2).
    public static let dsiISK: [UInt8] = dsi + Array("_ISK".utf8)
    /// H.s_in_bytes for SHA-512: its input block size (§6.2).
    public static let hashInputBlockBytes = 128
    /// The size of a share Y, of K and of g: one ristretto255 encoding.
    public static let elementBytes = 32
    /// The size of ISK, sid_output and a confirmation tag: one SHA-512 output.
    public static let hashBytes = 64
    /// G.I: the public encoding of the neutral element (RFC 9496: all zeros).
    public static let neutralElement = [UInt8](repeating: 0, count: 32)
    /// A bound on ADa/ADb so a hostile peer cannot make us hash unbounded input.
    public static let associatedDataMaxBytes = 1024
    /// A bound on PRS (a password), CI and sid, for the same reason.
    public static let inputMaxBytes = 4096

    // MARK: String utilities (§6.3 and Appendix A)

    /// LEB128 encoding of `length` (§6.3, Appendix A.1.1): 7 bits per byte, least significant
    /// group first, bit 7 set while more bytes follow.
    public static func leb128(_ length: Int) -> [UInt8] {
        precondition(length >= 0)
        var remaining = UInt64(length)
        var encoded: [UInt8] = []
        // Bounded: a UInt64 has at most 10 groups of 7 bits.
        for _ in 0..<10 {
            let group = UInt8(remaining & 0x7F)
            remaining >>= 7
            encoded.append(remaining == 0 ? group : group | 0x80)
            if remaining == 0 { return encoded }
        }
        preconditionFailure("unreachable: UInt64 has at most 10 LEB128 groups")
    }

    /// prepend_len(data) = LEB128(len(data)) || data (§6.3, Appendix A.1.1).
    public static func prependLen(_ data: [UInt8]) -> [UInt8] {
        leb128(data.count) + data
    }

    /// lv_cat(a0, a1, ...) = prepend_len(a0) || prepend_len(a1) || ... (§6.3, Appendix A.1.3).
    public static func lvCat(_ parts: [UInt8]...) -> [UInt8] {
        lvCat(parts)
    }

    /// lv_cat over an array of parts.
    public static func lvCat(_ parts: [[UInt8]]) -> [UInt8] {
        var output: [UInt8] = []
        for part in parts { output += prependLen(part) }
        return output
    }

    /// lexiographically_larger(bytes1, bytes2) (Appendix A.3.1): the first differing byte decides;
    /// if one is a prefix of the other, the longer one is larger.
    public static func isLexicographicallyLarger(_ bytes1: [UInt8], _ bytes2: [UInt8]) -> Bool {
        for (byte1, byte2) in zip(bytes1, bytes2) where byte1 != byte2 {
            return byte1 > byte2
        }
        return bytes1.count > bytes2.count
    }

    /// o_cat(bytes1, bytes2) = "oc" || larger || smaller (§6.3, Appendix A.3.2).
    public static func oCat(_ bytes1: [UInt8], _ bytes2: [UInt8]) -> [UInt8] {
        let prefix = Array("oc".utf8)
        return isLexicographicallyLarger(bytes1, bytes2) ? prefix + bytes1 + bytes2 : prefix + bytes2 + bytes1
    }

    /// transcript_ir(Ya, ADa, Yb, ADb) = lv_cat(Ya, ADa) || lv_cat(Yb, ADb) (§6.3, Appendix A.3.4):
    /// for a fixed initiator A and responder B.
    public static func transcriptIR(ya: [UInt8], ada: [UInt8], yb: [UInt8], adb: [UInt8]) -> [UInt8] {
        lvCat(ya, ada) + lvCat(yb, adb)
    }

    /// transcript_oc(Ya, ADa, Yb, ADb) = o_cat(lv_cat(Ya, ADa), lv_cat(Yb, ADb)) (§6.3, Appendix
    /// A.3.6): for the symmetric setting, where either side may speak first. Swapping the two
    /// parties gives the same transcript, which is the point.
    public static func transcriptOC(ya: [UInt8], ada: [UInt8], yb: [UInt8], adb: [UInt8]) -> [UInt8] {
        oCat(lvCat(ya, ada), lvCat(yb, adb))
    }

    /// sid_output = H.hash("CPaceSidOutput" || transcript) (§10.6): a public session identifier,
    /// unique for honest parties, for runs that had no sid input.
    public static func sidOutput(transcript: [UInt8]) -> [UInt8] {
        sha512(Array("CPaceSidOutput".utf8) + transcript)
    }

    // MARK: Generator (§8.1, §8.3, Appendix A.2)

    /// len_zpad = MAX(0, s_in_bytes - len(prepend_len(PRS)) - len(prepend_len(G.DSI)) - 1) (§8.1).
    public static func zeroPaddingLength(prsByteCount: Int) -> Int {
        max(0, hashInputBlockBytes - 1 - (leb128(prsByteCount).count + prsByteCount) - prependLen(dsi).count)
    }

    /// generator_string(G.DSI, PRS, CI, sid, s_in_bytes) = lv_cat(DSI, PRS, zero_bytes(len_zpad),
    /// CI, sid) (§8.1, Appendix A.2). It contains the password, so it is built in guarded memory.
    @_spi(CPaceInternals)
    public static func generatorString(prs: UnsafeRawBufferPointer, ci: [UInt8], sid: [UInt8]) -> SecureBytes {
        precondition(prs.count <= inputMaxBytes && ci.count <= inputMaxBytes && sid.count <= inputMaxBytes)
        let head = prependLen(dsi) + leb128(prs.count)  // Public: the DSI and the password's length.
        let tail = lvCat([UInt8](repeating: 0, count: zeroPaddingLength(prsByteCount: prs.count)), ci, sid)
        return SecureBytes(count: head.count + prs.count + tail.count) { output in
            var offset = head.withUnsafeBytes { append($0, to: output, at: 0) }
            offset = append(prs, to: output, at: offset)
            offset = tail.withUnsafeBytes { append($0, to: output, at: offset) }
            assert(offset == output.count)
        }
    }

    /// Copy `source` into `output` at `offset`; returns the offset after it. For assembling hash
    /// inputs that hold secrets directly in guarded memory.
    static func append(_ source: UnsafeRawBufferPointer, to output: UnsafeMutableRawBufferPointer, at offset: Int)
        -> Int
    {
        precondition(offset + source.count <= output.count)
        if source.count > 0 {
            UnsafeMutableRawBufferPointer(rebasing: output[offset..<(offset + source.count)]).copyMemory(from: source)
        }
        return offset + source.count
    }

    /// gen_str_hash = H.hash(generator_string, 2 * field_size_bytes) = the full SHA-512 (§8.3).
    @_spi(CPaceInternals)
    public static func generatorHash(prs: UnsafeRawBufferPointer, ci: [UInt8], sid: [UInt8]) -> SecureBytes {
        let generatorString = generatorString(prs: prs, ci: ci, sid: sid)
        defer { generatorString.wipe() }
        return sha512Secure(generatorString)
    }

    /// g = calculate_generator(H, PRS, CI, sid) (§8.3): the element derivation of RFC 9496
    /// (`crypto_core_ristretto255_from_hash`) applied to gen_str_hash, returned encoded. It is a
    /// function of the password, so it stays in guarded memory.
    @_spi(CPaceInternals)
    public static func calculateGenerator(prs: UnsafeRawBufferPointer, ci: [UInt8], sid: [UInt8]) -> SecureBytes {
        let hash = generatorHash(prs: prs, ci: ci, sid: sid)
        defer { hash.wipe() }
        precondition(hash.count == SodiumSizes.ristretto255Hash)
        let generator = SecureBytes(count: SodiumSizes.ristretto255Point)
        let status = generator.withUnsafeMutableBytes { out in
            hash.withUnsafeBytes { input in
                crypto_core_ristretto255_from_hash(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    input.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        precondition(status == 0, "crypto_core_ristretto255_from_hash cannot fail")
        return generator
    }

    // MARK: Group functions (§6.1, §8.3)

    /// G.sample_scalar() as §8.3 RECOMMENDS: 32 random bytes with the bits above group_size_bits
    /// (252) cleared, read little-endian. Every such value is below the group order
    /// 2^252 + 2774...493, so it is canonical; the draft prefers this to rejection sampling because
    /// it has no data-dependent branch (§10.10). Zero (probability 2^-252) is redrawn, because
    /// y = 0 would make Y the neutral element.
    @_spi(CPaceInternals)
    public static func sampleScalar(entropy: some EntropySource) -> SecureBytes {
        // Bounded: each draw is zero with probability 2^-252.
        for _ in 0..<4 {
            let scalar = SecureBytes(count: SodiumSizes.ristretto255Scalar) { entropy.fill($0) }
            let isZero = scalar.withUnsafeMutableBytes { bytes in
                bytes[31] &= 0x0F  // Keep bits 0...251 (group_size_bits = 252).
                return sodium_is_zero(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count) == 1
            }
            if !isZero { return scalar }
            scalar.wipe()
        }
        preconditionFailure("entropy source returns only zeros")
    }

    /// Y = G.scalar_mult(y, g) = encode(y * g) (§8.3). Nil only if y * g is the neutral element,
    /// which a non-zero scalar and a generator from `calculateGenerator` never give (the group
    /// has prime order and g = I would need a SHA-512 output that maps to I).
    @_spi(CPaceInternals)
    public static func scalarMult(_ scalar: SecureBytes, _ generator: SecureBytes) -> [UInt8]? {
        precondition(scalar.count == SodiumSizes.ristretto255Scalar && generator.count == elementBytes)
        var share = [UInt8](repeating: 0, count: elementBytes)
        let status = share.withUnsafeMutableBytes { out in
            scalar.withUnsafeBytes { y in
                generator.withUnsafeBytes { g in
                    crypto_scalarmult_ristretto255(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        y.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        g.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        return status == 0 ? share : nil
    }

    /// G.scalar_mult_vfy(y, X) (§8.3): G.I if X does not decode, otherwise encode(y * decode(X)),
    /// which is G.I when the product is the neutral element. libsodium's
    /// `crypto_scalarmult_ristretto255` returns -1 in exactly those two cases (a non-canonical or
    /// non-ristretto encoding, or an all-zero result), and we then return G.I as the draft says.
    @_spi(CPaceInternals)
    public static func scalarMultVfy(_ scalar: SecureBytes, _ point: [UInt8]) -> SecureBytes {
        precondition(scalar.count == SodiumSizes.ristretto255Scalar)
        let result = SecureBytes(count: elementBytes)
        guard point.count == elementBytes else { return result }  // All zeros: G.I.
        let status = result.withUnsafeMutableBytes { out in
            scalar.withUnsafeBytes { y in
                point.withUnsafeBytes { x in
                    crypto_scalarmult_ristretto255(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        y.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        x.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        if status != 0 {
            result.withUnsafeMutableBytes { Sodium.memzero($0) }  // G.I, whatever libsodium left.
        }
        return result
    }

    /// Whether `share` can be a peer's Y: 32 bytes, the canonical encoding of a ristretto255
    /// element (RFC 9496 decoding, `crypto_core_ristretto255_is_valid_point`), and not G.I. A
    /// session checks this before handing a share to its party, so that a malformed share from the
    /// network is refused as a bad frame instead of aborting the run (public data: no timing
    /// concern).
    public static func isValidShare(_ share: [UInt8]) -> Bool {
        guard share.count == elementBytes, share != neutralElement else { return false }
        Sodium.ensureInitialized()
        return share.withUnsafeBytes {
            crypto_core_ristretto255_is_valid_point($0.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
        }
    }

    /// True when `element` is G.I (constant time: K is secret).
    static func isNeutral(_ element: SecureBytes) -> Bool {
        element.withUnsafeBytes { sodium_is_zero($0.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.count) == 1 }
    }

    // MARK: Keys (§7.2, §10.4)

    /// ISK = H.hash(lv_cat(G.DSI || "_ISK", sid, K) || transcript) (§7.2). The input holds K, so
    /// it is assembled in guarded memory.
    @_spi(CPaceInternals)
    public static func intermediateSessionKey(sid: [UInt8], k: SecureBytes, transcript: [UInt8]) -> SecureBytes {
        precondition(k.count == elementBytes)
        let head = prependLen(dsiISK) + prependLen(sid) + leb128(k.count)
        let input = SecureBytes(count: head.count + k.count + transcript.count) { output in
            var offset = head.withUnsafeBytes { append($0, to: output, at: 0) }
            offset = k.withUnsafeBytes { append($0, to: output, at: offset) }
            _ = transcript.withUnsafeBytes { append($0, to: output, at: offset) }
        }
        defer { input.wipe() }
        return sha512Secure(input)
    }

    /// mac_key = H.hash("CPaceMac" || sid || ISK) (§10.4).
    @_spi(CPaceInternals)
    public static func macKey(sid: [UInt8], isk: SecureBytes) -> SecureBytes {
        let head = Array("CPaceMac".utf8) + sid
        let input = SecureBytes(count: head.count + isk.count) { output in
            let offset = head.withUnsafeBytes { append($0, to: output, at: 0) }
            _ = isk.withUnsafeBytes { append($0, to: output, at: offset) }
        }
        defer { input.wipe() }
        return sha512Secure(input)
    }

    /// T = MAC(mac_key, lv_cat(Y, AD)) with MAC = HMAC-SHA-512 (§10.4: each party tags the message
    /// it sent; this works in the symmetric setting, without message ordering). The draft gives
    /// no vectors for it; the tests pin it against an independent computation (Python's hmac).
    @_spi(CPaceInternals)
    public static func confirmationTag(macKey: SecureBytes, share: [UInt8], associatedData: [UInt8]) -> [UInt8] {
        let message = lvCat(share, associatedData)
        var tag = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha512_bytes()))
        var state = crypto_auth_hmacsha512_state()
        macKey.withUnsafeBytes { key in
            _ = crypto_auth_hmacsha512_init(&state, key.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count)
        }
        message.withUnsafeBytes { input in
            _ = crypto_auth_hmacsha512_update(
                &state, input.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(input.count))
        }
        tag.withUnsafeMutableBytes { out in
            _ = crypto_auth_hmacsha512_final(&state, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        // The state held key-derived pads. libsodium's final already wipes it; wiping again keeps
        // this code correct whatever a future libsodium does.
        withUnsafeMutableBytes(of: &state) { Sodium.memzero($0) }
        return tag
    }

    // MARK: Hashing

    /// SHA-512 of public bytes.
    static func sha512(_ input: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialized()
        var output = [UInt8](repeating: 0, count: SodiumSizes.sha512)
        output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { bytes in
                _ = crypto_hash_sha512(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
            }
        }
        return output
    }

    /// SHA-512 of secret bytes, into guarded memory.
    static func sha512Secure(_ input: SecureBytes) -> SecureBytes {
        SecureBytes(count: SodiumSizes.sha512) { out in
            input.withUnsafeBytes { bytes in
                _ = crypto_hash_sha512(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
            }
        }
    }
}
