/// Why a cryptographic operation refused its input. None of these is ever shown as a message.
public enum CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A public key of the wrong length.
    case invalidPublicKeyLength(Int)
    /// The peer's public key is a low-order point (the shared secret would be all zeros, or the
    /// key is on libsodium's blocklist): accepting it would let a relay force a known key.
    case weakPublicKey
    /// The peer presented our own public key back to us (a reflection by the relay).
    case reflectedPublicKey
    /// The sequence number is lower than the next expected one: a replay or a duplicate.
    case replayed(sequence: UInt64, expected: UInt64)
    /// The sequence number is ahead of the next expected one: a message in between is missing.
    case outOfOrder(sequence: UInt64, expected: UInt64)
    /// The ciphertext is shorter than its authentication tag: truncated.
    case truncated(length: Int)
    /// The Poly1305 tag did not verify: the ciphertext, its header or its key was altered.
    case authenticationFailed
    /// No keys: the session is not in a state where anything can be encrypted or decrypted.
    case noKeys
    /// A sequence number would wrap; the session must be re-keyed (2^64 messages: unreachable).
    case sequenceExhausted

    public var description: String {
        switch self {
        case let .invalidPublicKeyLength(length): "public key has \(length) bytes, expected 32"
        case .weakPublicKey: "peer public key is a low-order point"
        case .reflectedPublicKey: "peer public key equals ours (reflected)"
        case let .replayed(sequence, expected): "replayed message #\(sequence) (expected #\(expected))"
        case let .outOfOrder(sequence, expected): "out-of-order message #\(sequence) (expected #\(expected))"
        case let .truncated(length): "truncated ciphertext (\(length) bytes)"
        case .authenticationFailed: "message failed authentication (tampered or wrong key)"
        case .noKeys: "no session keys"
        case .sequenceExhausted: "sequence numbers exhausted"
        }
    }
}
