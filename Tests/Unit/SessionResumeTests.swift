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
        [2] + peerInstance + bigEndian(epoch) + knownPeer + bigEndian(nextExpected)
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
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
        let pending = try party.receive(
            peerShare: try #require(victimOpening.key), peerAssociatedData: try #require(victimOpening.payload))
        return .signal(Signal(kind: .keyConfirm, payload: Array(pending.sidOutput.prefix(16)) + pending.localTag))
    }

    @Test("Refused as an inconsistent resume, and again when the confirmation is repeated (it used to trap)")
    func repeatedConfirmationAfterInconsistentResume() throws {
        let victim = SessionManager(
            configuration: SessionConfiguration(room: InMemoryChat.room), password: try Password(Self.password),
            entropy: SystemEntropy())
        victim.handle(.transportUp, now: .zero)
        var victimOpening = try #require(Self.lastOpening(in: Self.feed(victim, .joined(room: InMemoryChat.room, peers: 2))))
        // An honest first handshake: the conversation with the scripted peer exists.
        let first = try Self.open(
            Self.hello(epoch: 1, knownPeer: [UInt8](repeating: 0, count: 16), nextExpected: 1),
            to: victim, victimOpening: &victimOpening)
        _ = Self.feed(victim, first)
        try #require(victim.state == .connected)
        // A re-key that resumes it but expects message 5 from a victim that sent none.
        let second = try Self.open(
            Self.hello(epoch: 2, knownPeer: victim.localInstance.bytes, nextExpected: 5),
            to: victim, victimOpening: &victimOpening)
        for _ in 0..<2 {
            let outputs = Self.feed(victim, second)
            #expect(Self.rejections(in: outputs) == [.handshake(.inconsistentResume)])
            #expect(victim.state == .keySetup)
        }
        #expect(victim.statistics.handshakesCompleted == 1)
    }
}
