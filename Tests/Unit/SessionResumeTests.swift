import ChatCore
import Testing

/// A peer that holds the password but lies about where the conversation stands.
@Suite("A resumed handshake that claims more than was sent")
struct SessionResumeTests {
    static let password = "oyster-lemon"
    static let peerInstance = [UInt8](repeating: 5, count: InstanceID.byteCount)

    /// The scripted peer's hello payload (docs/PROTOCOL.md): version, instance, epoch, the
    /// conversation it remembers, the next sequence number it expects.
    static func hello(epoch: UInt64, knownPeer: [UInt8], nextExpected: UInt64) -> [UInt8] {
        Forge.hello(version: SessionProtocol.version, instance: peerInstance, epoch: epoch, knownPeer: knownPeer,
                    nextExpected: nextExpected)
    }

    /// Feed `frame` to the session and return what it said.
    static func feed(_ session: SessionManager, _ message: RelayMessage) -> [SessionOutput] {
        session.handle(.frame(WireCodec.encode(message)), now: .zero)
        return session.drainOutputs()
    }

    static func lastOpening(in outputs: [SessionOutput]) -> Signal? {
        outputs.compactMap { output -> Signal? in
            guard case let .transmit(frame) = output, case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame),
                  signal.kind == .pake else { return nil }
            return signal
        }.last
    }

    static func rejections(in outputs: [SessionOutput]) -> [FrameRejection] {
        outputs.compactMap { if case let .notice(.frameRejected(rejection)) = $0 { rejection } else { nil } }
    }

    /// The scripted peer opens with `payload` and returns its KEY_CONFIRM for the pairing with
    /// the victim's current opening (the last one it sent, `victimOpening` until it sends another).
    static func open(
        _ payload: [UInt8], to victim: SessionManager, victimOpening: inout Signal
    ) throws -> RelayMessage {
        let party = try CPaceParty(
            password: try Password(password), channelIdentifier: CPaceParty.channelIdentifier(room: InMemoryChat.room),
            associatedData: payload, setting: .symmetric, entropy: SystemEntropy())
        let answer = feed(victim, .signal(Signal(kind: .pake, payload: payload, key: party.share)))
        victimOpening = lastOpening(in: answer) ?? victimOpening
        let victimHello = try #require(victimOpening.payload)
        let pending = try party.receive(peerShare: try #require(victimOpening.key), peerAssociatedData: victimHello)
        let confirmation = Forge.confirmation(
            version: SessionProtocol.version, runID: Array(pending.sidOutput.prefix(16)), proof: pending.localTag,
            receiver: (victim.localInstance.bytes, Forge.epoch(of: victimHello)),
            sender: (peerInstance, Forge.epoch(of: payload)))
        return .signal(Signal(kind: .keyConfirm, payload: confirmation))
    }

    @Test("Refused as an inconsistent resume, and again when the confirmation is repeated (it used to trap)")
    func repeatedConfirmationAfterInconsistentResume() throws {
        let victim = SessionManager(
            configuration: SessionConfiguration(room: InMemoryChat.room), password: try Password(Self.password),
            entropy: SystemEntropy())
        victim.handle(.transportUp, now: .zero)
        var victimOpening = try #require(Self.lastOpening(in: Self.feed(victim, .joined(room: InMemoryChat.room, peers: 2))))
        // A first handshake whose peer claims to remember the victim and to expect message 5 from
        // it, which never sent one: the tag verifies, the conversation refuses the pairing. (A
        // re-key cannot claim it in v3: only the first handshake with an instance uses the
        // password, and a later one needs the retained secret, which this peer does not have.)
        let claim = try Self.open(
            Self.hello(epoch: 1, knownPeer: victim.localInstance.bytes, nextExpected: 5),
            to: victim, victimOpening: &victimOpening)
        for _ in 0..<2 {
            let outputs = Self.feed(victim, claim)
            #expect(Self.rejections(in: outputs) == [.handshake(.inconsistentResume)])
            #expect(victim.state == .keySetup)
        }
        #expect(victim.statistics.handshakesCompleted == 0)
    }
}
