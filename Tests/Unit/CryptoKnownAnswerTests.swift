import CSodium
import ChatCore
import Testing

@Suite("Known answers: NaCl crypto_box and Wycheproof X25519")
struct CryptoKnownAnswerTests {
    @Test("NaCl crypto_box: KeyManager's keys and shared secret, with XSalsa20-Poly1305, reproduce box.exp")
    func naclCryptoBox() throws {
        let vector = try #require(try TestVectors.json("nacl-crypto_box-kat.json") as? [String: String])
        let aliceSecret = TestVectors.hex(vector["alice_secret"]!)
        let alice = KeyManager()
        let alicePublic = alice.importSecretKey(aliceSecret.withUnsafeBytes { SecureBytes(copying: $0) })
        #expect(alicePublic.bytes == TestVectors.hex(vector["alice_public"]!))

        let bob = KeyManager()
        let bobPublic = bob.importSecretKey(TestVectors.hex(vector["bob_secret"]!).withUnsafeBytes {
            SecureBytes(copying: $0)
        })
        #expect(bobPublic.bytes == TestVectors.hex(vector["bob_public"]!))

        // Both sides derive the same X25519 secret (what the session's key derivation starts from).
        let aliceShared = try alice.sharedSecret(with: bobPublic)
        let bobShared = try bob.sharedSecret(with: alicePublic)
        #expect(aliceShared.constantTimeEquals(bobShared))

        // crypto_box is HSalsa20(shared secret) as the key of crypto_secretbox, the cipher every
        // session record uses: from our shared secret, secretbox reproduces box.exp's ciphertext.
        var boxKey = [UInt8](repeating: 0, count: 32)
        let zeroInput = [UInt8](repeating: 0, count: 16)
        let derived = aliceShared.withUnsafeBytes { shared in
            crypto_core_hsalsa20(&boxKey, zeroInput, shared.baseAddress!.assumingMemoryBound(to: UInt8.self), nil)
        }
        #expect(derived == 0)
        let nonce = TestVectors.hex(vector["nonce"]!)
        let message = TestVectors.hex(vector["message"]!)
        var ciphertext = [UInt8](repeating: 0, count: message.count + SodiumSizes.secretboxMAC)
        let status = crypto_secretbox_easy(&ciphertext, message, UInt64(message.count), nonce, boxKey)
        #expect(status == 0)
        #expect(ciphertext == TestVectors.hex(vector["ciphertext"]!))

        // A low-order public key is refused instead of yielding a predictable secret.
        let weak = try PublicKey(TestVectors.hex(vector["small_order_public_key_rejected"]!))
        #expect(throws: CryptoError.weakPublicKey) { try alice.sharedSecret(with: weak) }
    }

    @Test("Wycheproof X25519: every case gives its expected result")
    func wycheproofX25519() throws {
        let root = try #require(try TestVectors.json("wycheproof-x25519_test.json") as? [String: Any])
        let groups = try #require(root["testGroups"] as? [[String: Any]])
        var checked = 0
        var rejected = 0
        for group in groups {
            let tests = try #require(group["tests"] as? [[String: Any]])
            for test in tests {
                let id = test["tcId"] as! Int
                let result = test["result"] as! String
                let flags = Set(test["flags"] as! [String])
                let peer = try PublicKey(TestVectors.hex(test["public"] as! String))
                let expected = TestVectors.hex(test["shared"] as! String)
                let manager = KeyManager()
                _ = manager.importSecretKey(TestVectors.hex(test["private"] as! String).withUnsafeBytes {
                    SecureBytes(copying: $0)
                })
                let outcome = Result { try manager.sharedSecret(with: peer) }
                checked += 1
                // Our policy is stricter than "acceptable": a low-order peer key (all-zero shared
                // secret) must be refused, because it would let a relay force a known key.
                if flags.contains("LowOrderPublic") || flags.contains("ZeroSharedSecret") {
                    #expect(throws: CryptoError.weakPublicKey, "tcId \(id)") { try outcome.get() }
                    rejected += 1
                } else if result == "valid" || result == "acceptable" {
                    let shared = try #require(try? outcome.get(), "tcId \(id) (\(result), \(flags.sorted()))")
                    #expect(shared.testCopy == expected, "tcId \(id)")
                } else {
                    #expect(throws: (any Error).self, "tcId \(id) must be rejected") { try outcome.get() }
                    rejected += 1
                }
            }
        }
        #expect(checked == root["numberOfTests"] as? Int)
        #expect(rejected >= 30)  // 31 low-order cases in this file
    }

    @Test("A reflected public key (our own) is refused")
    func reflectedKey() throws {
        let manager = KeyManager()
        let own = manager.generateKeyPair(entropy: SystemEntropy())
        #expect(throws: CryptoError.reflectedPublicKey) { try manager.sharedSecret(with: own) }
    }

    @Test("wipeKeys forgets the key pair and later use fails with noKeys")
    func wipe() throws {
        let manager = KeyManager()
        let own = manager.generateKeyPair(entropy: SystemEntropy())
        let other = KeyManager().generateKeyPair(entropy: SystemEntropy())
        #expect(own != other)
        manager.wipeKeys()
        #expect(!manager.hasKeyPair)
        #expect(manager.publicKey == nil)
        #expect(throws: CryptoError.noKeys) { try manager.sharedSecret(with: other) }
    }

    @Test("Fresh key pairs differ every time")
    func freshKeys() {
        let manager = KeyManager()
        let keys = (0..<32).map { _ in manager.generateKeyPair(entropy: SystemEntropy()) }
        #expect(Set(keys).count == keys.count)
    }
}
