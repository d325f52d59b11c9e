// The CPace protocol run of one party (draft-irtf-cfrg-cpace-21, §7) over the suite in CPace.swift:
// `CPaceParty` makes the share and derives ISK, `CPaceConfirmation` holds ISK until the peer's tag verifies.

/// One party's single run of CPace (§7): it makes its share at creation, derives ISK from the
/// peer's share, and releases ISK only once the peer's key confirmation verifies.
///
/// Use in a symmetric session (both peers start at once, neither is "first"):
/// ```
/// let party = CPaceParty(password: code.password!, channelIdentifier: CPaceParty.channelIdentifier(room: room),
///                        associatedData: helloPayload, setting: .symmetric, entropy: entropy)
/// send PAKE(key: party.share, payload: party.associatedData)
/// // on the peer's PAKE:
/// let pending = try party.receive(peerShare: key, peerAssociatedData: payload)   // aborts on bad shares
/// send KEY_CONFIRM(payload: pending.localTag)
/// // on the peer's KEY_CONFIRM:
/// let isk = try pending.confirm(peerTag: payload)   // "authentication failed" on a wrong password
/// ```
/// The scalar is wiped as soon as K is computed, and K as soon as ISK is (§10.3: K is never
/// exposed). By default a party is single-use: a new handshake makes a new party (§10.9: scalars
/// are never reused across sessions). A session may allow a few answers (`answersMax`): a peer
/// that restarts while our share is still unconfirmed is answered with the share already
/// announced, because answering every restart with a fresh share made two peers chase each
/// other forever (docs/PROTOCOL.md, "Restarts during the handshake"). Each answer is a separate
/// pairing with its own K and ISK; the same peer share is never answered twice; the scalar is
/// wiped after the last allowed answer, on any abort, or by `wipe()`.
public final class CPaceParty {
    /// Which transcript the run uses (§6.3, §10.1).
    public enum Setting: Sendable, Hashable {
        /// Party A of the initiator-responder setting: transcript_ir with our share first.
        case initiator
        /// Party B of the initiator-responder setting: transcript_ir with the peer's share first.
        case responder
        /// Either may speak first: transcript_oc, the same whoever computes it.
        case symmetric
    }

    public let setting: Setting
    /// Our public share Y: goes on the wire (uniformly distributed, independent of the password).
    public let share: [UInt8]
    /// Our associated data AD: goes on the wire in clear and is authenticated by ISK.
    public let associatedData: [UInt8]
    /// How many distinct peer shares this party answers before it wipes its scalar.
    public let answersMax: Int
    private let sessionIdentifier: [UInt8]
    private var scalar: SecureBytes?
    /// The peer shares answered so far (at most `answersMax`).
    private var answeredShares: [[UInt8]] = []

    /// The recommended CI for securechat: the protocol label and the room, lv-encoded. CI binds
    /// the run to the room (a run in one room cannot be relayed into another) and never goes on
    /// the wire (§4.1).
    public static func channelIdentifier(room: RoomCode) -> [UInt8] {
        CPace.lvCat(Array("securechat/v3/cpace".utf8), Array(room.value.utf8))
    }

    /// Start a run with the password of a chat code (PRS = its bytes, §4.3).
    public convenience init(
        password: Password, channelIdentifier: [UInt8], sessionIdentifier: [UInt8] = [],
        associatedData: [UInt8], setting: Setting, answersMax: Int = 1, entropy: some EntropySource
    ) throws(CPaceError) {
        try self.init(
            prs: password.secret, channelIdentifier: channelIdentifier, sessionIdentifier: sessionIdentifier,
            associatedData: associatedData, setting: setting, answersMax: answersMax, entropy: entropy)
    }

    /// Start a run with raw PRS bytes (known-answer tests; sessions pass a `Password`).
    /// - Parameters:
    ///   - prs: the password-related string; read, not retained.
    ///   - channelIdentifier: CI, identical on both sides, never sent (§4.1).
    ///   - sessionIdentifier: sid, public and identical on both sides; empty if none (§4.1, §10.6).
    ///   - associatedData: our AD, sent in clear and authenticated (§4.1); at most 1024 bytes.
    ///   - answersMax: how many distinct peer shares may be answered with this share (1 to 16).
    public init(
        prs: SecureBytes, channelIdentifier: [UInt8], sessionIdentifier: [UInt8] = [],
        associatedData: [UInt8], setting: Setting, answersMax: Int = 1, entropy: some EntropySource
    ) throws(CPaceError) {
        guard associatedData.count <= CPace.associatedDataMaxBytes else {
            throw .associatedDataTooLong(associatedData.count)
        }
        precondition((1...16).contains(answersMax), "a share answers 1 to 16 peer shares")
        precondition(prs.count <= CPace.inputMaxBytes, "PRS longer than CPace.inputMaxBytes")
        precondition(channelIdentifier.count <= CPace.inputMaxBytes && sessionIdentifier.count <= CPace.inputMaxBytes)
        let generator = prs.withUnsafeBytes { prsBytes in
            CPace.calculateGenerator(prs: prsBytes, ci: channelIdentifier, sid: sessionIdentifier)
        }
        defer { generator.wipe() }
        // Bounded: y * g is the neutral element only for y = 0 (excluded) or g = I (never, see
        // `CPace.scalarMult`); a second failure means a broken entropy source or library.
        var made: (scalar: SecureBytes, share: [UInt8])?
        for _ in 0..<2 where made == nil {
            let candidate = CPace.sampleScalar(entropy: entropy)
            if let share = CPace.scalarMult(candidate, generator) {
                made = (candidate, share)
            } else {
                candidate.wipe()
            }
        }
        guard let made else { preconditionFailure("CPace: y * g is the neutral element twice") }
        self.setting = setting
        self.scalar = made.scalar
        self.share = made.share
        self.associatedData = associatedData
        self.answersMax = answersMax
        self.sessionIdentifier = sessionIdentifier
    }

    deinit {
        scalar?.wipe()
    }

    /// True once the run has used (and wiped) its scalar, or was abandoned with `wipe()`.
    public var isFinished: Bool { scalar == nil }

    /// Abandon the run: wipe the scalar now.
    public func wipe() {
        scalar?.wipe()
        scalar = nil
    }

    /// Derive ISK from the peer's share (§7.2). Aborts (and wipes the scalar) if the share is
    /// malformed, decodes to nothing, yields K = G.I, or is our own share reflected back. A share
    /// already answered is refused without aborting. After `answersMax` answers the scalar is wiped.
    public func receive(peerShare: [UInt8], peerAssociatedData: [UInt8]) throws(CPaceError) -> CPaceConfirmation {
        guard let scalar else { throw .alreadyFinished }
        guard !answeredShares.contains(peerShare) else { throw .shareAlreadyAnswered }
        // On an abort, and after the last allowed answer, this scalar is never used again (§10.9).
        var keepsScalar = false
        defer { if !keepsScalar { wipe() } }
        guard peerShare.count == CPace.elementBytes else { throw .invalidShareLength(peerShare.count) }
        guard peerAssociatedData.count <= CPace.associatedDataMaxBytes else {
            throw .associatedDataTooLong(peerAssociatedData.count)
        }
        // An honest peer's share equals ours with probability 2^-252: equality is a reflection.
        guard peerShare != share else { throw .reflectedShare }
        let k = CPace.scalarMultVfy(scalar, peerShare)
        defer { k.wipe() }
        guard !CPace.isNeutral(k) else { throw .invalidPeerShare }

        let transcript: [UInt8]
        switch setting {
        case .initiator:
            transcript = CPace.transcriptIR(ya: share, ada: associatedData, yb: peerShare, adb: peerAssociatedData)
        case .responder:
            transcript = CPace.transcriptIR(ya: peerShare, ada: peerAssociatedData, yb: share, adb: associatedData)
        case .symmetric:
            transcript = CPace.transcriptOC(ya: share, ada: associatedData, yb: peerShare, adb: peerAssociatedData)
        }
        let isk = CPace.intermediateSessionKey(sid: sessionIdentifier, k: k, transcript: transcript)
        let macKey = CPace.macKey(sid: sessionIdentifier, isk: isk)
        defer { macKey.wipe() }
        let localTag = CPace.confirmationTag(macKey: macKey, share: share, associatedData: associatedData)
        let peerTag = CPace.confirmationTag(macKey: macKey, share: peerShare, associatedData: peerAssociatedData)
        // Our message sorts first in o_cat when it is the larger: that side is `high`.
        let localIsLarger = CPace.isLexicographicallyLarger(
            CPace.lvCat(share, associatedData), CPace.lvCat(peerShare, peerAssociatedData))
        answeredShares.append(peerShare)
        keepsScalar = answeredShares.count < answersMax
        return CPaceConfirmation(
            isk: isk, expectedPeerTag: peerTag.withUnsafeBytes { SecureBytes(copying: $0) }, localTag: localTag,
            transcript: transcript, sidOutput: CPace.sidOutput(transcript: transcript),
            localSide: localIsLarger ? .high : .low)
    }
}

/// The state between deriving ISK and the peer's key confirmation.
///
/// ISK is held back until the peer proves it has the same key (`confirm(peerTag:)`), so nothing
/// can be encrypted under an unconfirmed key by mistake.
public final class CPaceConfirmation {
    private var isk: SecureBytes?
    /// The tag the peer must send: secret until it does (it would let anyone forge a confirmation).
    private let expectedPeerTag: SecureBytes
    /// Our key confirmation tag, to send to the peer (KEY_CONFIRM). Public once sent.
    public let localTag: [UInt8]
    /// The transcript ISK was derived over (public: shares and associated data).
    public let transcript: [UInt8]
    /// sid_output (§10.6): a public identifier of this run, the same on both sides.
    public let sidOutput: [UInt8]
    /// Our direction for session keys: `low` when our lv_cat(Y, AD) is the lexicographically
    /// smaller (o_cat puts it second), `high` otherwise; the two sides always differ.
    public let localSide: MessageRatchet.Side

    init(
        isk: SecureBytes, expectedPeerTag: SecureBytes, localTag: [UInt8], transcript: [UInt8], sidOutput: [UInt8],
        localSide: MessageRatchet.Side
    ) {
        self.isk = isk
        self.expectedPeerTag = expectedPeerTag
        self.localTag = localTag
        self.transcript = transcript
        self.sidOutput = sidOutput
        self.localSide = localSide
    }

    deinit {
        isk?.wipe()
        expectedPeerTag.wipe()
    }

    /// True once `confirm` succeeded or failed, or `wipe()` ran.
    public var isFinished: Bool { isk == nil }

    /// Check the peer's tag (in constant time) and, if it verifies, hand over ISK (64 bytes; the
    /// caller owns it). A wrong tag wipes ISK: a failed run is over, there is no second try.
    public func confirm(peerTag: [UInt8]) throws(CPaceError) -> SecureBytes {
        guard let isk else { throw .alreadyFinished }
        self.isk = nil
        guard expectedPeerTag.constantTimeEquals(peerTag) else {
            isk.wipe()
            throw .confirmationFailed
        }
        return isk
    }

    /// Lend ISK to `body` before the peer's tag has verified (nil once the run is over), for a
    /// value that is only ever used if the peer later proves that it derived the same: securechat
    /// keeps a secret hashed from it for key continuity, in case the peer confirmed this run and
    /// its tag to us was lost. `body` must not keep ISK or use it as a key.
    public func withUnconfirmedISK<R>(_ body: (SecureBytes) -> R) -> R? {
        guard let isk else { return nil }
        return body(isk)
    }

    /// Hand over ISK without checking a tag (the caller owns it), for a run that is authenticated
    /// otherwise: securechat's continued handshakes key the session with ISK and a secret retained
    /// from an earlier confirmed run, and confirm those keys instead, so that neither side's tag is
    /// ever sent and the run tests no password. A run is over after this (nil if it was already).
    public func releaseWithoutTag() -> SecureBytes? {
        defer { isk = nil }
        return isk
    }

    /// Abandon the run: wipe ISK now.
    public func wipe() {
        isk?.wipe()
        isk = nil
    }
}
