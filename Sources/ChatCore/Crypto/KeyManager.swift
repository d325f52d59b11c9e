import CSodium

/// An X25519 public key: 32 public bytes.
public struct PublicKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else { throw .invalidPublicKeyLength(bytes.count) }
        self.bytes = bytes
    }

    /// Lexicographic byte order; it decides which side of a session is "low" and "high".
    public static func < (lhs: PublicKey, rhs: PublicKey) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    /// A short fingerprint for display: the first 8 bytes in hex, in groups of four digits.
    public var fingerprint: String {
        let hex = Hex.encode(Array(bytes.prefix(8)))
        return stride(from: 0, to: hex.count, by: 4).map { offset in
            let start = hex.index(hex.startIndex, offsetBy: offset)
            return String(hex[start..<hex.index(start, offsetBy: 4)])
        }.joined(separator: " ")
    }

    public var description: String { "PublicKey(\(fingerprint))" }
}

/// Holds one ephemeral X25519 key pair. The secret half lives only in guarded memory.
///
/// A session makes a fresh pair for every handshake (`generateKeyPair`) and wipes it as soon as
/// the session keys are derived or the session ends (`wipeKeys`).
public final class KeyManager {
    /// The current public key, or nil when no key pair is held.
    public private(set) var publicKey: PublicKey?
    private var secretKey: SecureBytes?

    public init() {
        Sodium.ensureInitialized()
    }

    deinit {
        wipeKeys()
    }

    /// True while a secret key is held.
    public var hasKeyPair: Bool { secretKey != nil }

    /// Make a fresh key pair from `entropy`, replacing (and wiping) any previous one.
    @discardableResult
    public func generateKeyPair(entropy: some EntropySource) -> PublicKey {
        wipeKeys()
        let secret = SecureBytes(count: SodiumSizes.scalarMult) { entropy.fill($0) }
        var publicBytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
        let status = secret.withUnsafeBytes { sk in
            publicBytes.withUnsafeMutableBytes { pk in
                crypto_scalarmult_base(pk.baseAddress!, sk.baseAddress!)
            }
        }
        precondition(status == 0, "crypto_scalarmult_base failed")
        let key = try! PublicKey(publicBytes)  // 32 bytes by construction
        secretKey = secret
        publicKey = key
        return key
    }

    /// Install a known secret key (known-answer tests only; sessions always generate).
    public func importSecretKey(_ secret: SecureBytes) -> PublicKey {
        precondition(secret.count == SodiumSizes.scalarMult)
        wipeKeys()
        var publicBytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
        secret.withUnsafeBytes { sk in
            publicBytes.withUnsafeMutableBytes { pk in _ = crypto_scalarmult_base(pk.baseAddress!, sk.baseAddress!) }
        }
        let key = try! PublicKey(publicBytes)
        secretKey = secret
        publicKey = key
        return key
    }

    /// The raw X25519 shared secret with `peer` (RFC 7748), refusing low-order peer keys and a
    /// reflected copy of our own key.
    public func sharedSecret(with peer: PublicKey) throws(CryptoError) -> SecureBytes {
        guard let secretKey, let publicKey else { throw .noKeys }
        guard peer != publicKey else { throw .reflectedPublicKey }
        let shared = SecureBytes(count: SodiumSizes.scalarMult)
        let status = shared.withUnsafeMutableBytes { out in
            secretKey.withUnsafeBytes { sk in
                peer.bytes.withUnsafeBytes { pk in
                    crypto_scalarmult(out.baseAddress!, sk.baseAddress!, pk.baseAddress!)
                }
            }
        }
        // libsodium returns -1 for blocklisted low-order points and for an all-zero result.
        guard status == 0 else {
            shared.wipe()
            throw .weakPublicKey
        }
        return shared
    }

    /// Wipe the secret key now. Safe to call at any time, any number of times.
    public func wipeKeys() {
        secretKey?.wipe()
        secretKey = nil
        publicKey = nil
    }
}

/// Lower-case hexadecimal, for fingerprints, tests and traces.
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var output: [UInt8] = []
        for byte in bytes {
            output.append(digits[Int(byte >> 4)])
            output.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decode hex (either case); nil on odd length or a non-hex character.
    public static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = JSONString.hexValue(utf8[index]), let low = JSONString.hexValue(utf8[index + 1]) else {
                return nil
            }
            output.append(UInt8(high << 4 | low))
            index += 2
        }
        return output
    }
}
