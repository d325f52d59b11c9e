import CSodium

/// Derivation of a session's master key from what the handshake agreed.
public enum SessionKeyDerivation {
    /// Domain separation for the master key.
    static let label = Array("securechat/v3/session-master".utf8)
    /// Domain separation for a master key continued with a retained secret.
    static let continuedLabel = Array("securechat/v3/continued-master".utf8)

    /// master = BLAKE2b-256(key: handshakeSecret, message: label || transcriptHash).
    ///
    /// `handshakeSecret` is CPace's ISK (64 bytes) or the raw X25519 shared secret (32 bytes);
    /// `transcriptHash` binds the keys to everything both sides said in the handshake. CPace's
    /// §10.3 recommends running ISK through a KDF before use; keyed BLAKE2b is libsodium's
    /// (`crypto_generichash`), and it accepts keys of 16 to 64 bytes.
    public static func masterKey(handshakeSecret: SecureBytes, transcriptHash: [UInt8]) -> SecureBytes {
        precondition((16...64).contains(handshakeSecret.count), "BLAKE2b keys are 16...64 bytes")
        Sodium.ensureInitialized()
        let message = label + transcriptHash
        return SecureBytes(count: SodiumSizes.kdfKey) { out in
            handshakeSecret.withUnsafeBytes { key in
                message.withUnsafeBytes { input in
                    _ = crypto_generichash(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                        input.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(input.count),
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count)
                }
            }
        }
    }
}

extension SessionKeyDerivation {
    /// A handshake that continues an earlier one: continued = BLAKE2b-256(key: the retained
    /// secret, message: "securechat/v3/continued-master" ‖ master). Without the retained secret
    /// nobody gets it, whoever took part in the key exchange. `master` is wiped.
    static func continued(master: SecureBytes, retained: SecureBytes) -> SecureBytes {
        precondition(master.count == SodiumSizes.kdfKey && (16...64).contains(retained.count))
        Sodium.ensureInitialized()
        // The message holds the master key, so it is built in guarded memory, and wiped.
        let message = SecureBytes(count: continuedLabel.count + master.count) { buffer in
            buffer.copyBytes(from: continuedLabel)
            master.withUnsafeBytes { key in
                UnsafeMutableRawBufferPointer(rebasing: buffer[continuedLabel.count...]).copyMemory(from: key)
            }
        }
        master.wipe()
        defer { message.wipe() }
        return SecureBytes(count: SodiumSizes.kdfKey) { out in
            retained.withUnsafeBytes { key in
                message.withUnsafeBytes { input in
                    _ = crypto_generichash(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                        input.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(input.count),
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count)
                }
            }
        }
    }
}
