/// The data each handshake state carries (see `HandshakeMachine.State`), and the key derivation
/// and proof checks of a pairing.
extension HandshakeMachine {
    /// Our side of a handshake.
    struct Opening {
        let hello: HandshakeHello
        /// The hello's frame, for retransmission.
        let helloFrame: [UInt8]
        let secret: LocalSecret
        var retransmission: Retransmission
        /// Peer keys (or shares) already paired with this opening; never pair one twice (the same
        /// keys would seal a second confirmation under the same nonce). Bounded.
        var peerKeysUsed: [[UInt8]] = []
        static let peerKeysUsedMax = 8
    }

    /// The secret behind our opening, until the handshake is confirmed or dropped.
    enum LocalSecret {
        /// Without a password: the ephemeral X25519 key pair.
        case x25519(KeyManager)
        /// With a password: the CPace run (its scalar).
        case cpace(CPaceParty)

        /// Whether one more peer opening can be answered with the key (or share) already announced.
        var canAnswerAgain: Bool {
            switch self {
            case let .x25519(keys): keys.hasKeyPair
            case let .cpace(party): !party.isFinished
            }
        }

        func wipe() {
            switch self {
            case let .x25519(keys): keys.wipeKeys()
            case let .cpace(party): party.wipe()
            }
        }
    }

    /// When our opening is sent again, and how often it went out.
    struct Retransmission {
        var at: Instant
        var interval: Duration
        var attempts = 1

        /// True when due at `now`: one more attempt, and the interval doubles up to `cap`.
        mutating func fire(now: Instant, cap: Duration) -> Bool {
            guard at <= now else { return false }
            attempts += 1
            interval = min(interval * 2, cap)
            at = now.advanced(by: interval)
            return true
        }
    }

    /// Our opening with the peer's `peer`.
    struct Pairing {
        let peer: HandshakeHello
        /// Leads our KEY_CONFIRM and must lead the peer's: which pairing a confirmation is for.
        let runID: [UInt8]
        let confirmFrame: [UInt8]
        let safetyNumber: SafetyNumber
        var proof: PeerProof
    }

    /// What the peer's confirmation must prove, and the keys it unlocks.
    enum PeerProof {
        /// With a password: ISK, held back until the peer's tag verifies.
        case tag(CPaceConfirmation)
        /// Without a password: the transcript hash the peer must seal, and the keys (they exist
        /// from the pairing on: they sealed our confirmation; no record before CONNECTED).
        case transcript([UInt8], MessageRatchet)
        /// The peer's tag verified and the keys are derived, but the conversation refused the
        /// pairing (`inconsistentResume`): a repeat of the confirmation goes to it again.
        case verified(MessageRatchet)

        var ratchet: MessageRatchet? {
            switch self {
            case .tag: nil
            case let .transcript(_, ratchet), let .verified(ratchet): ratchet
            }
        }

        func wipe() {
            switch self {
            case let .tag(pending): pending.wipe()
            case let .transcript(_, ratchet), let .verified(ratchet): ratchet.wipe()
            }
        }
    }

    /// A handshake the peer confirmed; its keys belong to the channel now.
    struct Confirmed {
        let peer: HandshakeHello
        /// Answers a repeat of the peer's opening (it has not seen our confirmation).
        let confirmFrame: [UInt8]
        let safetyNumber: SafetyNumber
    }

    /// The peer instance of the last confirmed handshake (the conversation's) and its epoch:
    /// hellos from that instance with a lower epoch are delayed copies.
    struct ConfirmedPeer {
        let instance: InstanceID
        let epoch: UInt64
    }

    /// X25519: the keys from the shared secret and the transcript, and our confirmation (the
    /// transcript hash sealed under a control key).
    static func deriveWithoutPassword(
        keys: KeyManager, local: HandshakeHello, peer: HandshakeHello, room: RoomCode
    ) -> Result<(runID: [UInt8], proof: [UInt8], peerProof: PeerProof), CryptoError> {
        let shared: SecureBytes
        do {
            shared = try keys.sharedSecret(with: try PublicKey(peer.key))
        } catch {
            return .failure(error)
        }
        // The secret half stays until the handshake is confirmed (then it is wiped, for forward
        // secrecy): a peer that restarts its handshake meanwhile is answered with it.
        let localSide: MessageRatchet.Side = local.key.lexicographicallyPrecedes(peer.key) ? .low : .high
        let (low, high) = localSide == .low ? (local, peer) : (peer, local)
        let transcript = Transcript.hash(room: room, low: low, high: high)
        let master = SessionKeyDerivation.masterKey(handshakeSecret: shared, transcriptHash: transcript)
        shared.wipe()
        let ratchet = MessageRatchet(masterKey: master, localSide: localSide)
        let proof: [UInt8]
        do {
            proof = try transcript.withBytes { buffer throws(CryptoError) in try ratchet.sealConfirmation(buffer) }
        } catch {
            preconditionFailure("sealing a confirmation under fresh keys cannot fail: \(error)")
        }
        return .success((Array(transcript.prefix(runIDByteCount)), proof, .transcript(transcript, ratchet)))
    }
}

extension HandshakeMachine.PeerProof {
    enum Verdict {
        /// The proof holds: the pairing's proof from now on, and the keys it unlocked.
        case verified(HandshakeMachine.PeerProof, MessageRatchet)
        /// Dropped: it does not open, or confirms a different transcript.
        case rejected(HandshakeError)
        /// With a password: the wrong tag.
        case passwordMismatch
    }

    /// Check the proof part of the peer's KEY_CONFIRM (after its run id).
    func check(_ proof: [UInt8]) -> Verdict {
        switch self {
        case let .tag(pending):
            let isk: SecureBytes
            do {
                isk = try pending.confirm(peerTag: proof)
            } catch {
                return .passwordMismatch
            }
            let master = SessionKeyDerivation.masterKey(handshakeSecret: isk, transcriptHash: pending.sidOutput)
            isk.wipe()
            let ratchet = MessageRatchet(masterKey: master, localSide: pending.localSide)
            return .verified(.verified(ratchet), ratchet)
        case let .transcript(transcript, ratchet):
            let body: SecureBytes
            do {
                body = try proof.withBytes { buffer throws(CryptoError) in try ratchet.openConfirmation(buffer) }
            } catch {
                return .rejected(.confirmationFailed)
            }
            let matches = body.constantTimeEquals(transcript)
            body.wipe()
            return matches ? .verified(self, ratchet) : .rejected(.confirmationFailed)
        case let .verified(ratchet):
            // The tag verified before; the conversation judges the pairing again.
            return .verified(self, ratchet)
        }
    }
}
