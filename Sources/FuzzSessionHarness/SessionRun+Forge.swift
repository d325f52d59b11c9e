import ChatCore

/// The forging peer: openings with extreme fields and confirmations with computed run ids.
extension SessionRun {
    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
    }

    static func uint64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        guard bytes.count >= offset + 8 else { return 0 }
        return bytes[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    func instanceBytes(_ instance: ForgedHello.Instance) -> [UInt8] {
        switch instance {
        case let .stranger(tag): [0xEE ^ tag] + [UInt8](repeating: 0xEE, count: InstanceID.byteCount - 1)
        case .recordedPeer: fixture.peerInstance.bytes
        case .victim: victim.localInstance.bytes
        case .zero: InstanceID.none.bytes
        case let .bytes(bytes): bytes
        }
    }

    /// The version byte of the victim's hellos (the one a forged hello copies).
    var victimVersion: UInt8 {
        latestOpening?.payload?.first ?? fixture.helloVersion
    }

    /// A hello payload (docs/PROTOCOL.md): version, instance, epoch, the conversation remembered,
    /// the next number expected from it, and (from version 3) the count of retained ids, 0.
    func helloBytes(_ hello: ForgedHello) -> [UInt8] {
        let version = hello.version ?? victimVersion
        var bytes = [version] + instanceBytes(hello.instance) + Self.bigEndian(hello.epoch)
        bytes += instanceBytes(hello.knownPeer) + Self.bigEndian(hello.nextExpected)
        if version >= 3 { bytes.append(0) }
        return bytes
    }

    func forgeHello(_ hello: ForgedHello) {
        let bytes = helloBytes(hello)
        let key: [UInt8]
        switch hello.key {
        case .fresh: key = SessionForge.shared.key(hello: bytes, password: fixture.password ? SessionFixture.passwordText : nil)
        case .wrongPassword: key = SessionForge.shared.key(hello: bytes, password: fixture.password ? "wrong-guess" : nil)
        case .recordedPeer: key = fixture.peerKey
        case .victim: key = latestOpening?.key ?? fixture.peerKey
        }
        if forged.count == Self.remembered { forged.removeFirst() }
        forged.append((bytes, instanceBytes(hello.instance), hello.epoch))
        let kind: SignalKind = fixture.password ? .pake : .keyExchange
        deliver(WireCodec.encode(RelayMessage.signal(Signal(kind: kind, payload: bytes, key: key))))
    }

    /// A KEY_CONFIRM payload: run id ‖ receiver (instance, epoch) ‖ sender (instance, epoch) ‖ proof.
    func forgeConfirm(opening: Int, variant: SessionOp.ConfirmVariant) {
        guard !forged.isEmpty, let victimOpening = latestOpening, let victimHello = victimOpening.payload,
              let victimKey = victimOpening.key, victimHello.count >= 25
        else { return }
        let peer = forged[opening % forged.count]
        var runID: [UInt8]
        var proof: [UInt8]
        if fixture.password,
           let computed = SessionForge.shared.confirmation(hello: peer.hello, victimHello: victimHello, victimShare: victimKey) {
            (runID, proof) = computed
        } else {
            // Without the password's transcript the run id is a guess: the public parts are right.
            runID = Array(SessionForge.seed(peer.hello + victimHello).bytes.prefix(16))
            proof = [UInt8](repeating: 0x5A, count: 48)
        }
        var receiverEpoch = Self.uint64(victimHello, at: 17)
        var senderEpoch = peer.epoch
        switch variant {
        case .valid: break
        case .badProof: proof[0] ^= 1
        case .badRunID: runID[0] ^= 1
        case .laterReceiver: receiverEpoch &+= 1
        case .earlierReceiver: receiverEpoch &-= 1
        case .hugeSenderEpoch: senderEpoch = .max
        }
        var payload = runID
        payload += victimHello[1..<17]
        payload += Self.bigEndian(receiverEpoch)
        payload += peer.instance
        payload += Self.bigEndian(senderEpoch)
        payload += proof
        deliver(WireCodec.encode(RelayMessage.signal(Signal(kind: .keyConfirm, payload: payload))))
    }
}

extension UInt64 {
    /// Eight bytes, then the same mixed again: enough bytes for a made-up run id.
    var bytes: [UInt8] {
        let second = self &* 0x9E37_79B9_7F4A_7C15
        return (0..<8).map { UInt8(truncatingIfNeeded: self >> (8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: second >> (8 * $0)) }
    }
}
