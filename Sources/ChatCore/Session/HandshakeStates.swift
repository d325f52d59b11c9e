/// The data each handshake state carries (see `HandshakeMachine.State`), and the key derivation
/// and proof checks of a pairing.
extension HandshakeMachine {
    /// A handshake under way: our opening, alone or paired with the peer's.
    enum Attempt {
        /// Our opening is out (retransmitted until answered); no peer opening is paired with it.
        case opened(Opening, Waiting)
        /// Our opening is paired with the peer's and our confirmation is out; the peer's is due.
        case paired(Opening, Pairing)

        var opening: Opening {
            switch self {
            case let .opened(opening, _), let .paired(opening, _): opening
            }
        }

        mutating func fireRetransmission(now: Instant, cap: Duration) {
            switch self {
            case .opened(var opening, let waiting):
                _ = opening.retransmission.fire(now: now, cap: cap)
                self = .opened(opening, waiting)
            case .paired(var opening, let pairing):
                _ = opening.retransmission.fire(now: now, cap: cap)
                self = .paired(opening, pairing)
            }
        }

        /// Wipe the opening's secret and the pairing's keys (a retained secret stays: it belongs
        /// to the session's `KeyContinuity`).
        func wipe() {
            switch self {
            case let .opened(opening, _):
                opening.secret.wipe()
            case let .paired(opening, pairing):
                opening.secret.wipe()
                pairing.proof.wipe()
            }
        }
    }

    /// A pairing replaced by a restart after our confirmation of it went out (its opening's
    /// secret is wiped: its key answered the peer's; the pairing's keys wait for the peer's
    /// confirmation).
    struct Superseded {
        let opening: Opening
        let pairing: Pairing

        func wipe() {
            opening.secret.wipe()
            pairing.proof.wipe()
        }

        /// The secret this pairing would leave, while the peer may still confirm it.
        var tentative: RetainedSecret? {
            if case let .sealed(_, _, next) = pairing.proof { next } else { nil }
        }
    }

    /// Our side of a handshake: one hello, one key or share, answering one peer opening at most.
    struct Opening {
        let hello: HandshakeHello
        /// The hello's frame, for retransmission.
        let helloFrame: [UInt8]
        let secret: LocalSecret
        var retransmission: Retransmission
    }

    /// What an unpaired opening keeps while it waits.
    struct Waiting {
        /// A confirmation that names this opening and a peer opening we have not seen (it overtook
        /// it): the newest, judged when we pair with that opening.
        var earlyConfirmation: KeyConfirmation?
        /// Peer openings set aside (newest last, bounded): the one that made us open afresh (the
        /// restart rule, `answer`), and ones an earlier opening of ours answered (the peer may have
        /// used its key on that one). We pair with one only when the peer's confirmation shows that
        /// it answered this opening with it (`receiveConfirmation`).
        var setAside: [HandshakeHello] = []
        static let setAsideMax = 4

        mutating func setAside(_ hello: HandshakeHello) {
            guard !setAside.contains(hello) else { return }
            if setAside.count == Self.setAsideMax { setAside.removeFirst() }
            setAside.append(hello)
        }
    }

    /// The secret behind our opening, until the handshake is confirmed or dropped.
    enum LocalSecret {
        /// Without a password: the ephemeral X25519 key pair.
        case x25519(KeyManager)
        /// With a password: the CPace run (its scalar).
        case cpace(CPaceParty)

        /// Whether the secret still exists (it answers one peer opening, then is used up).
        var canAnswer: Bool {
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
        /// Leads our KEY_CONFIRM and must lead the peer's for this pairing.
        let runID: [UInt8]
        let confirmFrame: [UInt8]
        /// The number both sides show: this handshake's, or (continued) the chain's.
        let safetyNumber: SafetyNumber
        var proof: PeerProof
        /// Keyed with a secret retained from an earlier handshake with this peer instance.
        let continued: Bool
    }

    /// What the peer's confirmation must prove, and the keys it unlocks.
    enum PeerProof {
        /// A first handshake with a password: ISK, held back until the peer's tag verifies; the
        /// keys and the retained secret come then.
        case tag(CPaceConfirmation)
        /// Keys derived at pairing (without a password, or continued): the transcript id the
        /// peer must seal under them, the keys, and the secret this pairing leaves for the next.
        case sealed(transcriptID: [UInt8], MessageRatchet, RetainedSecret)
        /// It verified, but the conversation refused the pairing (`inconsistentResume`): a repeat
        /// of the confirmation goes to it again.
        case verified(MessageRatchet, RetainedSecret)

        var ratchet: MessageRatchet? {
            switch self {
            case .tag: nil
            case let .sealed(_, ratchet, _), let .verified(ratchet, _): ratchet
            }
        }

        func wipe() {
            switch self {
            case let .tag(pending): pending.wipe()
            case let .sealed(_, ratchet, _), let .verified(ratchet, _): ratchet.wipe()
            }
        }
    }

    /// The handshake whose keys are in use.
    struct Confirmed {
        let peer: HandshakeHello
        /// The epoch of our opening in it (a repeat of the peer's confirmation names it).
        let localEpoch: UInt64
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

    /// What a pairing derived: the run id and proof of our confirmation, and what the peer must prove.
    struct Derivation {
        let runID: [UInt8]
        let proof: [UInt8]
        let peerProof: PeerProof
    }

    /// What `deriveKeys` made of a pairing.
    enum DerivedKeys {
        case derived(Derivation)
        /// The peer's key or share was refused (the frame is dropped).
        case refused(FrameRejection)
    }

    /// The keys at pairing, for every handshake but a first one with a password: the handshake
    /// secret (the X25519 shared secret, or CPace's ISK) and transcript id (the transcript hash,
    /// or sid_output) make the master key, mixed with the retained secret when the handshake
    /// continues an earlier one; the master key leaves the next retained secret and becomes the
    /// ratchet; our proof is the transcript id sealed under our control key.
    static func deriveKeys(
        _ secret: LocalSecret, local: HandshakeHello, peer: HandshakeHello, retained: RetainedSecret?,
        safetyNumber: SafetyNumber, room: RoomCode
    ) -> DerivedKeys {
        let handshakeSecret: SecureBytes
        let transcriptID: [UInt8]
        let localSide: MessageRatchet.Side
        switch secret {
        case let .x25519(keys):
            do {
                handshakeSecret = try keys.sharedSecret(with: try PublicKey(peer.key))
            } catch {
                return .refused(.crypto(error))
            }
            localSide = local.key.lexicographicallyPrecedes(peer.key) ? .low : .high
            let (low, high) = localSide == .low ? (local, peer) : (peer, local)
            transcriptID = Transcript.hash(room: room, low: low, high: high)
        case let .cpace(party):
            // Continued with a password: CPace's exchange, confirmed under keys that also need the
            // retained secret, so the run's tags are never sent and it tests no password.
            guard let pending = try? party.receive(peerShare: peer.key, peerAssociatedData: peer.payload),
                  let isk = pending.releaseWithoutTag()
            else { return .refused(.handshake(.invalidShare)) }
            handshakeSecret = isk
            transcriptID = pending.sidOutput
            localSide = pending.localSide
        }
        var master = SessionKeyDerivation.masterKey(handshakeSecret: handshakeSecret, transcriptHash: transcriptID)
        handshakeSecret.wipe()
        if let retained { master = SessionKeyDerivation.continued(master: master, retained: retained.secret) }
        let next = RetainedSecret(master: master, peer: peer.instance, safetyNumber: safetyNumber, confirmed: false)
        let ratchet = MessageRatchet(masterKey: master, localSide: localSide)
        let proof: [UInt8]
        do {
            proof = try transcriptID.withBytes { buffer throws(CryptoError) in try ratchet.sealConfirmation(buffer) }
        } catch {
            preconditionFailure("sealing a confirmation under fresh keys cannot fail: \(error)")
        }
        return .derived(Derivation(
            runID: Array(transcriptID.prefix(KeyConfirmation.runIDByteCount)), proof: proof,
            peerProof: .sealed(transcriptID: transcriptID, ratchet, next)))
    }
}

extension HandshakeMachine.PeerProof {
    enum Verdict {
        /// The proof holds: the pairing's proof from now on, the keys it unlocked, and the
        /// secret the handshake leaves.
        case verified(HandshakeMachine.PeerProof, MessageRatchet, RetainedSecret)
        /// It does not open, or seals another transcript id.
        case rejected
        /// With a password: the wrong tag.
        case passwordMismatch
    }

    /// Check the proof part of the peer's KEY_CONFIRM.
    func check(_ proof: [UInt8], peer: InstanceID, safetyNumber: SafetyNumber) -> Verdict {
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
            let retained = RetainedSecret(master: master, peer: peer, safetyNumber: safetyNumber, confirmed: true)
            let ratchet = MessageRatchet(masterKey: master, localSide: pending.localSide)
            return .verified(.verified(ratchet, retained), ratchet, retained)
        case let .sealed(transcriptID, ratchet, retained):
            let body: SecureBytes
            do {
                body = try proof.withBytes { buffer throws(CryptoError) in try ratchet.openConfirmation(buffer) }
            } catch {
                return .rejected
            }
            let matches = body.constantTimeEquals(transcriptID)
            body.wipe()
            return matches ? .verified(self, ratchet, retained) : .rejected
        case let .verified(ratchet, retained):
            // It verified before; the conversation judges the pairing again.
            return .verified(self, ratchet, retained)
        }
    }
}
