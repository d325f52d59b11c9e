import ChatCore
import ChatTesting

/// The handshakes `fuzzSession` reuses: computed once per process, per mode.
///
/// Two real sessions with fixed seeded entropy (so the victim of every input is the same
/// process: same instance, same openings for the same inputs) meet once, exchange messages both
/// ways, and the frames the peer sent the victim are kept in order, with the script of victim
/// inputs that produced them (`honestScript`). A fresh victim given that script replays the
/// handshake exactly, so the peer's recorded KEY_CONFIRM, MSGs and ACKs are valid for it: per
/// input only the victim's side of the crypto runs.
public final class SessionFixture: @unchecked Sendable {
    public let password: Bool
    /// The peer's frames to the victim, as the relay delivers them (SIGNALs), in recorded order.
    public let peerFrames: [[UInt8]]
    /// The same frames decoded (for tampering), each once.
    let peerSignals: [Signal?]
    /// The version byte of the hellos in the recording.
    let helloVersion: UInt8
    /// The texts of the peer's messages, in the order it sent them.
    public let peerTexts: [String]
    /// The victim operations of the recorded run: replayed, the victim ends CONNECTED, having
    /// shown every peer message and had every one of its own delivered.
    public let honestScript: [SessionOp]
    public let peerInstance: InstanceID
    /// The peer's opening key (share or X25519 public key).
    public let peerKey: [UInt8]

    static let victimSeed: UInt64 = 0xA11CE
    static let peerSeed: UInt64 = 0xB0B
    /// Messages each side sends in the recording.
    static let messagesPerSide = 3
    public static let passwordText = "oyster-lemon"

    public static let withPassword = SessionFixture(password: true)
    public static let noPassword = SessionFixture(password: false)

    public static func fixture(password: Bool) -> SessionFixture { password ? withPassword : noPassword }

    /// The small configuration the world fuzzer uses: queues and windows reach their bounds fast.
    public static let configuration = SessionConfiguration(
        room: RoomCode.simulated(0), sendQueueMax: 16, inFlightMax: 4, reorderBufferMax: 4, messageTextMaxBytes: 128)

    /// A fresh victim: the same process for every input of a mode.
    func makeVictim() -> SessionManager {
        Self.makeSession(password: password, seed: Self.victimSeed)
    }

    static func makeSession(password: Bool, seed: UInt64) -> SessionManager {
        let secret = password ? try! Password(passwordText) : nil  // A valid test password.
        defer { secret?.wipe() }
        return SessionManager(configuration: configuration, password: secret, entropy: SeededEntropy(seed: seed))
    }

    static func peerText(_ number: Int) -> String {
        Canary.text(client: 1, incarnation: 0, number: number, fillerLength: 0, fillerSeed: 0)
    }

    /// A relay frame carrying the SIGNAL of client frame `frame`, or nil when it is something else.
    static func relayed(_ frame: [UInt8]) -> [UInt8]? {
        guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) else { return nil }
        return WireCodec.encode(RelayMessage.signal(signal))
    }

    static func joined(peers: Int) -> [UInt8] {
        WireCodec.encode(RelayMessage.joined(room: configuration.room, peers: peers))
    }

    private init(password: Bool) {
        self.password = password
        let victim = Self.makeSession(password: password, seed: Self.victimSeed)
        let peer = Self.makeSession(password: password, seed: Self.peerSeed)
        var script: [SessionOp] = [.relay(.transportUp), .relay(.joinedWithPeer)]
        var frames: [[UInt8]] = []
        var texts: [String] = []
        victim.handle(.transportUp, now: .zero)
        victim.handle(.frame(Self.joined(peers: 2)), now: .zero)
        peer.handle(.transportUp, now: .zero)
        peer.handle(.frame(Self.joined(peers: 2)), now: .zero)
        var peerOpening: Signal?
        // Frames from the peer go to the victim one at a time, each a `deliverNext` of the script.
        func pump() {
            for _ in 0..<64 {
                let toPeer = victim.drainOutputs().compactMap { output -> [UInt8]? in
                    if case let .transmit(frame) = output { Self.relayed(frame) } else { nil }
                }
                for frame in toPeer { peer.handle(.frame(frame), now: .zero) }
                let toVictim = peer.drainOutputs().compactMap { output -> [UInt8]? in
                    if case let .transmit(frame) = output { Self.relayed(frame) } else { nil }
                }
                for frame in toVictim {
                    if peerOpening == nil, case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame),
                       signal.kind == .pake || signal.kind == .keyExchange {
                        peerOpening = signal
                    }
                    frames.append(frame)
                    script.append(.deliverNext)
                    victim.handle(.frame(frame), now: .zero)
                }
                if toPeer.isEmpty && toVictim.isEmpty { return }
            }
        }
        pump()
        precondition(victim.state == .connected && peer.state == .connected, "the recorded handshake completes")
        for number in 0..<Self.messagesPerSide {
            let text = Self.peerText(number)
            texts.append(text)
            _ = peer.send(text, now: .zero)
            script.append(.send(body: []))
            _ = victim.send(SessionRun.victimText(number, body: []), now: .zero)
            pump()
        }
        precondition(victim.pendingCount == 0 && peer.pendingCount == 0, "the recorded messages are delivered")
        peerFrames = frames
        peerSignals = frames.map { frame in
            if case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame) { signal } else { nil }
        }
        helloVersion = peerSignals.lazy.compactMap { signal -> UInt8? in
            guard let signal, signal.kind == .pake || signal.kind == .keyExchange else { return nil }
            return signal.payload?.first
        }.first ?? 3
        peerTexts = texts
        honestScript = script
        guard let peerOpening, let payload = peerOpening.payload, let key = peerOpening.key,
              let instance = InstanceID(payload[1..<(1 + InstanceID.byteCount)])
        else { preconditionFailure("the recording has the peer's opening") }
        peerInstance = instance
        peerKey = key
    }
}

/// What a peer holding the password (or, without one, anybody) computes for forged openings:
/// shares, keys and confirmations, cached (`SlotCache`, bounded) so that most inputs reuse them.
final class SessionForge: Sendable {
    private struct Confirmation: Sendable {
        let runID: [UInt8]
        let proof: [UInt8]
    }

    private let confirmations = SlotCache<Confirmation>(slots: 4096)
    private let shares = SlotCache<[UInt8]>(slots: 4096)
    static let shared = SessionForge()

    static func seed(_ bytes: [UInt8]) -> UInt64 {
        bytes.reduce(0xCBF2_9CE4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }

    private func party(hello: [UInt8], password: String) -> CPaceParty {
        let secret = try! Password(password)  // Test passwords are valid.
        defer { secret.wipe() }
        return try! CPaceParty(  // A hello is within CPace's AD bound.
            password: secret, channelIdentifier: CPaceParty.channelIdentifier(room: SessionFixture.configuration.room),
            associatedData: hello, setting: .symmetric, entropy: SeededEntropy(seed: Self.seed(hello + Array(password.utf8))))
    }

    /// The key a forged opening carries.
    func key(hello: [UInt8], password: String?) -> [UInt8] {
        let cacheKey = hello + Array((password ?? "").utf8) + [0xFF]
        if let cached = shares[cacheKey] { return cached }
        let key: [UInt8]
        if let password {
            key = party(hello: hello, password: password).share
        } else {
            key = KeyManager().generateKeyPair(entropy: SeededEntropy(seed: Self.seed(hello))).bytes
        }
        shares[cacheKey] = key
        return key
    }

    /// The run id and tag a peer that opened with `hello` (and the right password) sends on
    /// receiving the victim's opening; nil if CPace refuses the victim's share.
    func confirmation(hello: [UInt8], victimHello: [UInt8], victimShare: [UInt8]) -> (runID: [UInt8], proof: [UInt8])? {
        let cacheKey = hello + [0xFE] + victimHello + victimShare
        if let cached = confirmations[cacheKey] { return (cached.runID, cached.proof) }
        guard let pending = try? party(hello: hello, password: SessionFixture.passwordText)
            .receive(peerShare: victimShare, peerAssociatedData: victimHello)
        else { return nil }
        let result = Confirmation(runID: Array(pending.sidOutput.prefix(16)), proof: pending.localTag)
        pending.wipe()
        confirmations[cacheKey] = result
        return (result.runID, result.proof)
    }
}
