import CSodium
@_spi(CPaceInternals) @_spi(Testing) import ChatCore
import Foundation
import Testing

/// CPace over ristretto255 with SHA-512 against draft-irtf-cfrg-cpace's vectors (Appendix B.3,
/// copied in `Vectors/`), its Appendix A encoding vectors, and the protocol's abort rules.
@Suite("CPace: draft-irtf-cfrg-cpace ristretto255/SHA-512 vectors and protocol")
struct CPaceTests {
    let vectors: CPaceVectors

    init() throws {
        vectors = try CPaceVectors.load()
    }

    private func secure(_ bytes: [UInt8]) -> SecureBytes {
        bytes.withUnsafeBytes { SecureBytes(copying: $0) }
    }

    // MARK: Appendix A: string utilities

    @Test("prepend_len, lv_cat, lexicographic order, o_cat and the transcripts match Appendix A")
    func appendixA() {
        // A.1.2 prepend_len test vectors.
        #expect(CPace.prependLen([]) == [0x00])
        #expect(CPace.prependLen("1234".bytes) == TestVectors.hex("0431323334"))
        #expect(CPace.prependLen(Array(0..<127)) == [0x7F] + Array(0..<127))
        #expect(CPace.prependLen(Array(0..<128)) == [0x80, 0x01] + Array(0..<128))
        #expect(CPace.leb128(300) == [0xAC, 0x02])  // LEB128 itself: 300 = 0b10_0101100.
        // A.1.4 lv_cat.
        #expect(CPace.lvCat("1234".bytes, "5".bytes, [], "678".bytes) == TestVectors.hex("043132333401350003363738"))
        // A.3.3 lexicographic order and o_cat.
        #expect(CPace.isLexicographicallyLarger([0], [0, 0]) == false)
        #expect(CPace.isLexicographicallyLarger([1], [0, 0]) == true)
        #expect(CPace.isLexicographicallyLarger([0, 0], [0]) == true)
        #expect(CPace.isLexicographicallyLarger([0, 0], [1]) == false)
        #expect(CPace.isLexicographicallyLarger([0, 1], [1]) == false)
        #expect(CPace.isLexicographicallyLarger("ABCD".bytes, "BCD".bytes) == false)
        #expect(CPace.oCat("ABCD".bytes, "BCD".bytes) == TestVectors.hex("6f6342434441424344"))
        #expect(CPace.oCat("BCD".bytes, "ABCDE".bytes) == TestVectors.hex("6f634243444142434445"))
        // A.3.5 transcript_ir and A.3.7 transcript_oc.
        #expect(CPace.transcriptIR(ya: "123".bytes, ada: "PartyA".bytes, yb: "234".bytes, adb: "PartyB".bytes)
            == TestVectors.hex("03313233065061727479410332333406506172747942"))
        #expect(CPace.transcriptIR(ya: "3456".bytes, ada: "PartyA".bytes, yb: "2345".bytes, adb: "PartyB".bytes)
            == TestVectors.hex("043334353606506172747941043233343506506172747942"))
        #expect(CPace.transcriptOC(ya: "123".bytes, ada: "PartyA".bytes, yb: "234".bytes, adb: "PartyB".bytes)
            == TestVectors.hex("6f6303323334065061727479420331323306506172747941"))
        #expect(CPace.transcriptOC(ya: "3456".bytes, ada: "PartyA".bytes, yb: "2345".bytes, adb: "PartyB".bytes)
            == TestVectors.hex("6f63043334353606506172747941043233343506506172747942"))
    }

    // MARK: B.3: the two copies of the vector agree

    @Test("The Markdown's C initializers equal the JSON vector, value by value")
    func copiesAgree() throws {
        let names: [(c: String, json: String)] = [
            ("PRS", "PRS"), ("CI", "CI"), ("sid", "sid"), ("g", "g"), ("ya", "ya"), ("ADa", "ADa"), ("Ya", "Ya"),
            ("yb", "yb"), ("ADb", "ADb"), ("Yb", "Yb"), ("K", "K"), ("ISK_IR", "ISK_IR"), ("ISK_SY", "ISK_SY"),
            ("sid_out_ir", "sid_output_ir"), ("sid_out_oc", "sid_output_oc"),
        ]
        for (cName, jsonKey) in names {
            let start = try #require(vectors.markdown.range(of: "const unsigned char tc_\(cName)[] = {"))
            let rest = start.upperBound..<vectors.markdown.endIndex
            let end = try #require(vectors.markdown.range(of: "};", range: rest))
            let body = vectors.markdown[start.upperBound..<end.lowerBound]
            let bytes = body.split(separator: ",").compactMap { item -> UInt8? in
                let token = item.trimmingCharacters(in: .whitespacesAndNewlines)
                return token.hasPrefix("0x") ? UInt8(token.dropFirst(2), radix: 16) : nil
            }
            #expect(bytes == (try vectors.value(jsonKey)), "tc_\(cName) vs JSON \(jsonKey)")
        }
        // The inputs the Markdown spells out in text.
        #expect(try vectors.value("PRS") == "Password".bytes)
        #expect(try vectors.value("ADa") == "ADa".bytes)
        #expect(try vectors.value("ADb") == "ADb".bytes)
        #expect(try vectors.value("CI") == CPace.lvCat("A_initiator".bytes, "B_responder".bytes))
    }

    // MARK: B.3.1: calculate_generator

    @Test("Generator string (170 bytes, ZPAD 100), its SHA-512 and g reproduce B.3.1")
    func generator() throws {
        let section = "with group ristretto255"
        let prs = try vectors.value("PRS")
        let ci = try vectors.value("CI")
        let sid = try vectors.value("sid")
        #expect(vectors.markdown.contains("DSI = b'CPaceRistretto255'"))
        #expect(CPace.dsi == "CPaceRistretto255".bytes)
        #expect(vectors.markdown.contains("ZPAD length: \(CPace.zeroPaddingLength(prsByteCount: prs.count)) ;"))
        #expect(CPace.zeroPaddingLength(prsByteCount: prs.count) == 100)

        let generatorString = prs.withUnsafeBytes { CPace.generatorString(prs: $0, ci: ci, sid: sid) }
        let expectedString = try vectors.markdownValue(
            section: section, label: "generator_string(G.DSI,PRS,CI,sid,H.s_in_bytes):")
        #expect(generatorString.testCopy == expectedString)
        #expect(expectedString.count == 170)

        let hash = prs.withUnsafeBytes { CPace.generatorHash(prs: $0, ci: ci, sid: sid) }
        #expect(hash.testCopy == (try vectors.markdownValue(section: section, label: "hash result:")))

        let g = prs.withUnsafeBytes { CPace.calculateGenerator(prs: $0, ci: ci, sid: sid) }
        #expect(g.testCopy == (try vectors.value("g")))
        #expect(g.testCopy == (try vectors.markdownValue(section: section, label: "encoded generator g:")))
    }

    @Test("Zero padding fills the first SHA-512 block for short passwords and vanishes for long ones")
    func zeroPadding() {
        // lv(DSI) is 18 bytes; with a 1-byte length prefix the padding makes 18 + 1 + n + 1 + z = 128.
        #expect(CPace.zeroPaddingLength(prsByteCount: 0) == 128 - 1 - 1 - 18)
        #expect(CPace.zeroPaddingLength(prsByteCount: 108) == 0)
        #expect(CPace.zeroPaddingLength(prsByteCount: 200) == 0)
        let prs = [UInt8](repeating: 0x61, count: 20)
        let string = prs.withUnsafeBytes { CPace.generatorString(prs: $0, ci: [], sid: []) }
        // DSI, PRS, padding and its own one-byte length fill exactly one 128-byte block; CI and sid follow.
        #expect(string.count == CPace.hashInputBlockBytes + 2)
    }

    // MARK: B.3.2-B.3.4: shares and K

    @Test("Ya and Yb reproduce B.3.2/B.3.3 through the real sampling path, and K reproduces B.3.4")
    func sharesAndK() throws {
        let prs = secure(try vectors.value("PRS"))
        let ci = try vectors.value("CI")
        let sid = try vectors.value("sid")
        let ya = try vectors.value("ya")
        let yb = try vectors.value("yb")
        // The vector scalars have their top 4 bits clear, so sample_scalar (draft §8.3) returns
        // them unchanged from 32 entropy bytes.
        let entropyA = FixedEntropy(ya)
        let partyA = try CPaceParty(
            prs: prs, channelIdentifier: ci, sessionIdentifier: sid, associatedData: try vectors.value("ADa"),
            setting: .initiator, entropy: entropyA)
        #expect(entropyA.isExhausted)
        #expect(partyA.share == (try vectors.value("Ya")))
        #expect(partyA.share == (try vectors.markdownValue(section: "message from A", label: "Ya:")))
        let partyB = try CPaceParty(
            prs: prs, channelIdentifier: ci, sessionIdentifier: sid, associatedData: try vectors.value("ADb"),
            setting: .responder, entropy: FixedEntropy(yb))
        #expect(partyB.share == (try vectors.value("Yb")))
        #expect(partyB.share == (try vectors.markdownValue(section: "message from B", label: "Yb:")))
        #expect(ya == (try vectors.markdownValue(section: "message from A", label: "ya (little endian):")))
        #expect(yb == (try vectors.markdownValue(section: "message from B", label: "yb (little endian):")))

        // K = scalar_mult_vfy(ya, Yb) = scalar_mult_vfy(yb, Ya).
        let kA = CPace.scalarMultVfy(secure(ya), try vectors.value("Yb"))
        let kB = CPace.scalarMultVfy(secure(yb), try vectors.value("Ya"))
        #expect(kA.testCopy == (try vectors.value("K")))
        #expect(kB.testCopy == (try vectors.value("K")))
        let section = "Test vector for secret points K"
        #expect(kA.testCopy == (try vectors.markdownValue(section: section, label: "scalar_mult_vfy(ya,Yb):")))
        #expect(kB.testCopy == (try vectors.markdownValue(section: section, label: "scalar_mult_vfy(yb,Ya):")))
    }

    @Test("sample_scalar clears the bits above 252 and redraws zero")
    func sampling() {
        let all = FixedEntropy([UInt8](repeating: 0xFF, count: 32))
        let scalar = CPace.sampleScalar(entropy: all)
        #expect(scalar.testCopy == [UInt8](repeating: 0xFF, count: 31) + [0x0F])
        // Zero is redrawn: the first draw is all zeros apart from bits that get cleared.
        let zeroThenOne = FixedEntropy(
            [UInt8](repeating: 0, count: 31) + [0xF0] + [1] + [UInt8](repeating: 0, count: 31))
        #expect(CPace.sampleScalar(entropy: zeroThenOne).testCopy == [1] + [UInt8](repeating: 0, count: 31))
        #expect(zeroThenOne.isExhausted)
    }

    // MARK: B.3.5-B.3.7: ISK and sid_output

    @Test("Initiator-responder: transcript_ir, DSI_ISK, the hash input and ISK_IR reproduce B.3.5")
    func iskInitiatorResponder() throws {
        let section = "Test vector for ISK calculation initiator/responder"
        let transcript = CPace.transcriptIR(
            ya: try vectors.value("Ya"), ada: try vectors.value("ADa"), yb: try vectors.value("Yb"),
            adb: try vectors.value("ADb"))
        #expect(transcript == (try vectors.markdownValue(section: section, label: "transcript_ir(Ya,ADa,Yb,ADb):")))
        #expect(CPace.dsiISK == (try vectors.markdownValue(
            section: section, label: "DSI = G.DSI_ISK, b'CPaceRistretto255_ISK':")))
        let hashInput = CPace.lvCat(CPace.dsiISK, try vectors.value("sid"), try vectors.value("K")) + transcript
        #expect(hashInput == (try vectors.markdownValue(
            section: section, label: "lv_cat(DSI,sid,K)||transcript_ir(Ya,ADa,Yb,ADb):")))
        let isk = CPace.intermediateSessionKey(sid: try vectors.value("sid"), k: secure(try vectors.value("K")),
                                               transcript: transcript)
        #expect(isk.testCopy == (try vectors.value("ISK_IR")))
        #expect(isk.testCopy == (try vectors.markdownValue(section: section, label: "ISK result:")))
    }

    @Test("Symmetric: transcript_oc, the hash input and ISK_SY reproduce B.3.6")
    func iskSymmetric() throws {
        let section = "Test vector for ISK calculation parallel execution"
        let transcript = CPace.transcriptOC(
            ya: try vectors.value("Ya"), ada: try vectors.value("ADa"), yb: try vectors.value("Yb"),
            adb: try vectors.value("ADb"))
        #expect(transcript == (try vectors.markdownValue(section: section, label: "transcript_oc(Ya,ADa,Yb,ADb):")))
        // Either order of the parties gives the same transcript.
        #expect(transcript == CPace.transcriptOC(
            ya: try vectors.value("Yb"), ada: try vectors.value("ADb"), yb: try vectors.value("Ya"),
            adb: try vectors.value("ADa")))
        #expect(CPace.dsiISK == (try vectors.markdownValue(
            section: section, label: "DSI = G.DSI_ISK, b'CPaceRistretto255_ISK':")))
        let hashInput = CPace.lvCat(CPace.dsiISK, try vectors.value("sid"), try vectors.value("K")) + transcript
        #expect(hashInput == (try vectors.markdownValue(
            section: section, label: "lv_cat(DSI,sid,K)||transcript_oc(Ya,ADa,Yb,ADb):")))
        let isk = CPace.intermediateSessionKey(sid: try vectors.value("sid"), k: secure(try vectors.value("K")),
                                               transcript: transcript)
        #expect(isk.testCopy == (try vectors.value("ISK_SY")))
        #expect(isk.testCopy == (try vectors.markdownValue(section: section, label: "ISK result:")))
    }

    @Test("sid_output for both transcripts reproduces B.3.7")
    func sidOutputs() throws {
        let section = "Test vector for optional output of session id"
        let ya = try vectors.value("Ya"), ada = try vectors.value("ADa")
        let yb = try vectors.value("Yb"), adb = try vectors.value("ADb")
        let outIR = CPace.sidOutput(transcript: CPace.transcriptIR(ya: ya, ada: ada, yb: yb, adb: adb))
        let outOC = CPace.sidOutput(transcript: CPace.transcriptOC(ya: ya, ada: ada, yb: yb, adb: adb))
        #expect(outIR == (try vectors.value("sid_output_ir")))
        #expect(outOC == (try vectors.value("sid_output_oc")))
        #expect(outIR == (try vectors.markdownValue(
            section: section, label: "H.hash(b\"CPaceSidOutput\" + transcript_ir(Ya,ADa, Yb,ADb)):")))
        #expect(outOC == (try vectors.markdownValue(
            section: section, label: "H.hash(b\"CPaceSidOutput\" + transcript_oc(Ya,ADa, Yb,ADb)):")))
    }

    // MARK: The whole run, both settings, through CPaceParty

    /// Both vector parties run to the end: ISK, sid_output and (for the symmetric setting) the
    /// confirmation tags, which must match an independent computation (scripts/derived-crypto-vectors.py,
    /// Python hashlib/hmac; the draft has no tag vectors).
    @Test("CPaceParty reproduces ISK_IR and ISK_SY end to end, and both sides confirm", arguments: [false, true])
    func fullRun(symmetric: Bool) throws {
        let prs = secure(try vectors.value("PRS"))
        let ci = try vectors.value("CI"), sid = try vectors.value("sid")
        let partyA = try CPaceParty(
            prs: prs, channelIdentifier: ci, sessionIdentifier: sid, associatedData: try vectors.value("ADa"),
            setting: symmetric ? .symmetric : .initiator, entropy: FixedEntropy(try vectors.value("ya")))
        let partyB = try CPaceParty(
            prs: prs, channelIdentifier: ci, sessionIdentifier: sid, associatedData: try vectors.value("ADb"),
            setting: symmetric ? .symmetric : .responder, entropy: FixedEntropy(try vectors.value("yb")))
        let pendingA = try partyA.receive(peerShare: partyB.share, peerAssociatedData: partyB.associatedData)
        let pendingB = try partyB.receive(peerShare: partyA.share, peerAssociatedData: partyA.associatedData)
        #expect(partyA.isFinished && partyB.isFinished)  // Scalars wiped once K exists.
        #expect(pendingA.sidOutput == (try vectors.value(symmetric ? "sid_output_oc" : "sid_output_ir")))
        #expect(pendingA.transcript == pendingB.transcript)
        #expect(pendingA.localSide != pendingB.localSide)
        if symmetric {
            // Ya's lv_cat sorts first in o_cat (0xd6 > 0x3e), so A is the high side.
            #expect(pendingA.localSide == .high)
            #expect(pendingA.localTag == TestVectors.hex(
                "3f497dce663a1d0fa2051dbbaaf683ef1732bdcae5b4a4c3f3f8c9f94bb87926"
                    + "e8c091646cd2745b1faf89fc88f7350f318b09fb8f073327c3205eb6adb28d3d"))
            #expect(pendingB.localTag == TestVectors.hex(
                "c28ed3f99dc8ecf00f1049a50f50a7ce78b8b2727bfbd6967f1da3969372e7fa"
                    + "06880c319a0c2b481810ece3e6be7191e7c749499ea5eec612eb21bf0f240c28"))
            let macKey = CPace.macKey(sid: sid, isk: secure(try vectors.value("ISK_SY")))
            #expect(macKey.testCopy == TestVectors.hex(
                "89a0198edee14c07a826b0a8a8828c49c7f389e59af769da15b2487cb0e1546f"
                    + "8729f8981876ff39c3f232796f13dd5d92b9859b6a0b8c1b467c378c8b510aa4"))
        }
        let iskA = try pendingA.confirm(peerTag: pendingB.localTag)
        let iskB = try pendingB.confirm(peerTag: pendingA.localTag)
        let expected = try vectors.value(symmetric ? "ISK_SY" : "ISK_IR")
        #expect(iskA.testCopy == expected)
        #expect(iskB.testCopy == expected)
        #expect(throws: CPaceError.alreadyFinished) { try pendingA.confirm(peerTag: pendingB.localTag) }
        #expect(throws: CPaceError.alreadyFinished) {
            try partyA.receive(peerShare: partyB.share, peerAssociatedData: partyB.associatedData)
        }
    }

    // MARK: B.3.10-B.3.11: scalar_mult and the invalid points

    @Test("scalar_mult and scalar_mult_vfy on the valid point reproduce B.3.10")
    func validScalarMult() throws {
        let s = secure(try vectors.point("Valid", "s"))
        let x = try vectors.point("Valid", "X")
        let expected = try vectors.point("Valid", "G.scalar_mult(s,decode(X))")
        #expect(expected == (try vectors.point("Valid", "G.scalar_mult_vfy(s,X)")))
        #expect(CPace.scalarMult(s, secure(x)) == expected)
        #expect(CPace.scalarMultVfy(s, x).testCopy == expected)
        let section = "with valid inputs"
        #expect(s.testCopy == (try vectors.markdownValue(section: section, label: "s:")))
        #expect(x == (try vectors.markdownValue(section: section, label: "X:")))
        #expect(expected == (try vectors.markdownValue(section: section, label: "G.scalar_mult(s,decode(X)):")))
        #expect(expected == (try vectors.markdownValue(section: section, label: "G.scalar_mult_vfy(s,X):")))
    }

    @Test("Invalid points: scalar_mult_vfy returns G.I and a party given one aborts (B.3.11)")
    func invalidPoints() throws {
        let section = "Invalid inputs for scalar"
        let s = secure(try vectors.point("Valid", "s"))
        let invalid1 = try vectors.point("Invalid Y1")  // Not a canonical ristretto255 encoding.
        let invalid2 = try vectors.point("Invalid Y2")  // G.I itself.
        #expect(invalid1 == (try vectors.markdownValue(section: section, label: "Y_i1:")))
        #expect(invalid2 == (try vectors.markdownValue(section: section, label: "Y_i2 == G.I:")))
        #expect(invalid2 == CPace.neutralElement)
        #expect(CPace.scalarMultVfy(s, invalid1).testCopy == CPace.neutralElement)
        #expect(CPace.scalarMultVfy(s, invalid2).testCopy == CPace.neutralElement)

        // "When points Y_i1 or Y_i2 are included in message of A or B the protocol MUST abort."
        for setting in [CPaceParty.Setting.initiator, .responder, .symmetric] {
            for point in [invalid1, invalid2] {
                let party = try CPaceParty(
                    prs: secure("Password".bytes), channelIdentifier: [], associatedData: [], setting: setting,
                    entropy: SystemEntropy())
                #expect(throws: CPaceError.invalidPeerShare) {
                    try party.receive(peerShare: point, peerAssociatedData: "ADb".bytes)
                }
                #expect(party.isFinished, "an aborted run keeps no scalar")
            }
        }
    }

    // MARK: Protocol rules beyond the vectors

    @Test("A wrong password: nothing aborts early, both confirmations fail, no ISK is released")
    func wrongPassword() throws {
        let ci = CPaceParty.channelIdentifier(room: try RoomCode("ROOM42"))
        let alice = try CPaceParty(
            password: try Password("correct-horse"), channelIdentifier: ci, associatedData: "alice".bytes,
            setting: .symmetric, entropy: SystemEntropy())
        let bob = try CPaceParty(
            password: try Password("correct-horsf"), channelIdentifier: ci, associatedData: "bob".bytes,
            setting: .symmetric, entropy: SystemEntropy())
        // The shares look like any other: the relay cannot tell a wrong password from a right one.
        let pendingAlice = try alice.receive(peerShare: bob.share, peerAssociatedData: bob.associatedData)
        let pendingBob = try bob.receive(peerShare: alice.share, peerAssociatedData: alice.associatedData)
        #expect(throws: CPaceError.confirmationFailed) { try pendingAlice.confirm(peerTag: pendingBob.localTag) }
        #expect(throws: CPaceError.confirmationFailed) { try pendingBob.confirm(peerTag: pendingAlice.localTag) }
        #expect(pendingAlice.isFinished && pendingBob.isFinished)
        // The room is spent: the run cannot be retried with another tag.
        #expect(throws: CPaceError.alreadyFinished) { try pendingAlice.confirm(peerTag: pendingAlice.localTag) }
    }

    @Test("A different room (CI) fails confirmation like a different password")
    func differentRoom() throws {
        let password = try Password("same password")
        let alice = try CPaceParty(
            password: password, channelIdentifier: CPaceParty.channelIdentifier(room: try RoomCode("ROOMA")),
            associatedData: [1], setting: .symmetric, entropy: SystemEntropy())
        let bob = try CPaceParty(
            password: password, channelIdentifier: CPaceParty.channelIdentifier(room: try RoomCode("ROOMB")),
            associatedData: [2], setting: .symmetric, entropy: SystemEntropy())
        let pendingAlice = try alice.receive(peerShare: bob.share, peerAssociatedData: bob.associatedData)
        let pendingBob = try bob.receive(peerShare: alice.share, peerAssociatedData: alice.associatedData)
        #expect(throws: CPaceError.confirmationFailed) { try pendingAlice.confirm(peerTag: pendingBob.localTag) }
    }

    @Test("Same password, fresh randomness: both confirm, same ISK, fresh shares every run")
    func samePassword() throws {
        let ci = CPaceParty.channelIdentifier(room: try RoomCode("ROOM42"))
        var shares: [[UInt8]] = []
        for _ in 0..<4 {
            let alice = try CPaceParty(
                password: try Password("oyster-lemon"), channelIdentifier: ci, associatedData: "a".bytes,
                setting: .symmetric, entropy: SystemEntropy())
            let bob = try CPaceParty(
                password: try Password("oyster-lemon"), channelIdentifier: ci, associatedData: "b".bytes,
                setting: .symmetric, entropy: SystemEntropy())
            shares += [alice.share, bob.share]
            #expect(alice.share.withUnsafeBytes {
                crypto_core_ristretto255_is_valid_point($0.baseAddress!.assumingMemoryBound(to: UInt8.self))
            } == 1)
            // The peer's message arrives first on one side, last on the other: order does not matter.
            let pendingBob = try bob.receive(peerShare: alice.share, peerAssociatedData: alice.associatedData)
            let pendingAlice = try alice.receive(peerShare: bob.share, peerAssociatedData: bob.associatedData)
            let iskBob = try pendingBob.confirm(peerTag: pendingAlice.localTag)
            let iskAlice = try pendingAlice.confirm(peerTag: pendingBob.localTag)
            #expect(iskAlice.constantTimeEquals(iskBob))
            #expect(iskAlice.count == 64)
        }
        #expect(Set(shares).count == shares.count)
    }

    @Test("A reflected share, a wrong length or an oversized AD aborts the run")
    func malformedShares() throws {
        func party() throws -> CPaceParty {
            try CPaceParty(prs: secure("pw".bytes), channelIdentifier: [], associatedData: "me".bytes,
                           setting: .symmetric, entropy: SystemEntropy())
        }
        let reflected = try party()
        #expect(throws: CPaceError.reflectedShare) {
            try reflected.receive(peerShare: reflected.share, peerAssociatedData: reflected.associatedData)
        }
        #expect(reflected.isFinished)
        #expect(throws: CPaceError.invalidShareLength(31)) {
            try party().receive(peerShare: [UInt8](repeating: 1, count: 31), peerAssociatedData: [])
        }
        let other = try party()
        #expect(throws: CPaceError.associatedDataTooLong(1025)) {
            try party().receive(peerShare: other.share, peerAssociatedData: [UInt8](repeating: 0, count: 1025))
        }
        #expect(throws: CPaceError.associatedDataTooLong(1025)) {
            try CPaceParty(prs: secure([1]), channelIdentifier: [], associatedData: [UInt8](repeating: 0, count: 1025),
                           setting: .symmetric, entropy: SystemEntropy())
        }
    }

    @Test("A tampered associated data or a tampered tag fails confirmation")
    func tamperedMessages() throws {
        let ci = CPaceParty.channelIdentifier(room: try RoomCode("R1"))
        let alice = try CPaceParty(password: try Password("pw"), channelIdentifier: ci, associatedData: "hello-a".bytes,
                                   setting: .symmetric, entropy: SystemEntropy())
        let bob = try CPaceParty(password: try Password("pw"), channelIdentifier: ci, associatedData: "hello-b".bytes,
                                 setting: .symmetric, entropy: SystemEntropy())
        // The relay changes Bob's AD on its way to Alice: the transcripts differ, so the keys do.
        let pendingAlice = try alice.receive(peerShare: bob.share, peerAssociatedData: "hello-x".bytes)
        let pendingBob = try bob.receive(peerShare: alice.share, peerAssociatedData: alice.associatedData)
        #expect(throws: CPaceError.confirmationFailed) { try pendingBob.confirm(peerTag: pendingAlice.localTag) }

        // An honest run where only the tag is altered on the wire.
        let carol = try CPaceParty(password: try Password("pw"), channelIdentifier: ci, associatedData: "c".bytes,
                                   setting: .symmetric, entropy: SystemEntropy())
        let dave = try CPaceParty(password: try Password("pw"), channelIdentifier: ci, associatedData: "d".bytes,
                                  setting: .symmetric, entropy: SystemEntropy())
        let pendingCarol = try carol.receive(peerShare: dave.share, peerAssociatedData: dave.associatedData)
        let pendingDave = try dave.receive(peerShare: carol.share, peerAssociatedData: carol.associatedData)
        var tag = pendingDave.localTag
        tag[tag.count - 1] ^= 1
        #expect(throws: CPaceError.confirmationFailed) { try pendingCarol.confirm(peerTag: tag) }
        #expect(throws: CPaceError.confirmationFailed) {
            try pendingDave.confirm(peerTag: Array(pendingCarol.localTag.prefix(32)))
        }
    }
}
