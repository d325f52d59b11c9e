import CSodium

/// A secret kept from a handshake with one peer instance, with which the next handshakes with
/// that instance are keyed (ZRTP's retained secret, TLS 1.3's resumption secret): they need no
/// password, cost no guess, and nobody without the secret can complete them.
///
/// Derived from the handshake's master key before the ratchet wipes it: secret =
/// BLAKE2b-256(key: master, "securechat/v3/retained-secret"); its public id =
/// BLAKE2b-128(key: secret, "securechat/v3/retained-id"), which hellos list so that the two
/// sides can find a secret both hold without revealing it.
struct RetainedSecret {
    static let secretByteCount = 32
    static let idByteCount = 16
    /// Ids a hello may list; also the most a side keeps.
    static let idsMax = 4
    static let secretLabel = Array("securechat/v3/retained-secret".utf8)
    static let idLabel = Array("securechat/v3/retained-id".utf8)

    /// The peer instance it was agreed with.
    let peer: InstanceID
    let id: [UInt8]
    let secret: SecureBytes
    /// The safety number of the handshake that began the chain (the last one keyed without a
    /// retained secret): a continued handshake proves the same peer, so its number stays.
    let safetyNumber: SafetyNumber
    /// The handshake it came from was confirmed by the peer (else: we derived it, the peer may
    /// have confirmed it without our knowing).
    var confirmed: Bool

    init(master: SecureBytes, peer: InstanceID, safetyNumber: SafetyNumber, confirmed: Bool) {
        secret = Self.keyedHash(key: master, message: Self.secretLabel, outputByteCount: Self.secretByteCount)
        let id = Self.keyedHash(key: secret, message: Self.idLabel, outputByteCount: Self.idByteCount)
        self.id = id.withUnsafeBytes { Array($0) }
        id.wipe()
        self.peer = peer
        self.safetyNumber = safetyNumber
        self.confirmed = confirmed
    }

    /// BLAKE2b(key, message) into guarded memory.
    static func keyedHash(key: SecureBytes, message: [UInt8], outputByteCount: Int) -> SecureBytes {
        precondition((16...64).contains(key.count) && (16...64).contains(outputByteCount))
        Sodium.ensureInitialized()
        return SecureBytes(count: outputByteCount) { out in
            key.withUnsafeBytes { keyBytes in
                message.withUnsafeBytes { input in
                    _ = crypto_generichash(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                        input.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(input.count),
                        keyBytes.baseAddress!.assumingMemoryBound(to: UInt8.self), keyBytes.count)
                }
            }
        }
    }
}

/// The secrets a session keeps for key continuity, newest first: at most one confirmed (from the
/// last confirmed handshake) and a few it derived in handshakes the peer may have confirmed
/// without our knowing (our confirmation reached it, its did not reach us). Bounded by
/// `RetainedSecret.idsMax`; a confirmation keeps only its own secret (the older ones are wiped,
/// so a seized session cannot take part in handshakes it has moved on from).
struct KeyContinuity {
    private(set) var secrets: [RetainedSecret] = []

    /// The ids our hellos list.
    var ids: [[UInt8]] { secrets.map(\.id) }

    /// The secret that keys the handshake between `local` and `peer`, if they share one: the
    /// first id in the list of the hello with the lower instance ID that both lists hold and we
    /// hold for that peer. Both sides compute the same choice from the same two hellos.
    func common(local: HandshakeHello, peer: HandshakeHello) -> RetainedSecret? {
        let first = local.instance < peer.instance ? local.retainedIDs : peer.retainedIDs
        let other = local.instance < peer.instance ? peer.retainedIDs : local.retainedIDs
        for id in first where other.contains(id) {
            if let held = secrets.first(where: { $0.id == id && $0.peer == peer.instance }) { return held }
        }
        return nil
    }

    /// Keep the secret of a pairing the peer may confirm (keys derived, ours sent). One dropped
    /// from the list is wiped unless its id is in `sparing` (a superseded pairing still holds it:
    /// it is wiped with that pairing).
    mutating func keepTentative(_ secret: RetainedSecret, sparing: [[UInt8]] = []) {
        guard !secrets.contains(where: { $0.id == secret.id }) else { return }
        secrets.insert(secret, at: 0)
        // Drop the oldest unconfirmed ones first: the confirmed one anchors the chain.
        while secrets.count > RetainedSecret.idsMax {
            let index = secrets.lastIndex(where: { !$0.confirmed }) ?? secrets.count - 1
            let dropped = secrets.remove(at: index)
            if !sparing.contains(dropped.id) { dropped.secret.wipe() }
        }
    }

    /// The handshake of `secret` is confirmed: it is the only one kept, with `keeping` (the
    /// tentative secret of a handshake still under way beside it, `HandshakeMachine.judgeSuperseded`).
    mutating func confirm(_ secret: RetainedSecret, keeping: RetainedSecret? = nil) {
        for held in secrets where held.id != secret.id && held.id != keeping?.id { held.secret.wipe() }
        var kept = secret
        kept.confirmed = true
        secrets = [kept]
        if let keeping, keeping.id != secret.id { secrets.append(keeping) }
    }

    func wipe() {
        for held in secrets { held.secret.wipe() }
    }
}
