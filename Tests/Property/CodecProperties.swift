import ChatCore
import PropertyBased
import Testing

@Suite("Codec properties", .shrinking)
struct CodecProperties {
    @Test("Generated client messages round-trip, canonically, and the relay accepts them")
    func clientRoundTrip() async {
        await propertyCheck(count: 300, input: Generators.clientMessage) { message in
            let encoded = WireCodec.encode(message)
            let decoded = try? WireCodec.decodeClientMessage(encoded)
            #expect(decoded == message)
            #expect(decoded.map(WireCodec.encode) == encoded)
            let inspected = encoded.withUnsafeBytes { try? WireCodec.inspectClientFrame($0) }
            switch message {
            case let .join(room): #expect(inspected == .join(room, token: nil))
            case .signal: #expect(inspected == .signal)
            }
        }
    }

    @Test("Generated relay messages round-trip canonically")
    func relayRoundTrip() async {
        await propertyCheck(count: 300, input: Generators.relayMessage) { message in
            let encoded = WireCodec.encode(message)
            let decoded = try? WireCodec.decodeRelayMessage(encoded)
            #expect(decoded == message)
            #expect(decoded.map(WireCodec.encode) == encoded)
        }
    }

    @Test("Arbitrary bytes never crash either decoder; every failure is a typed error the relay can report")
    func arbitraryBytes() async {
        await propertyCheck(count: 500, input: Gen<UInt8>.value(in: 0...255).array(of: 0...200)) { bytes in
            checkDecoders(bytes)
        }
    }

    @Test("Valid frames with random edits decode to a value that round-trips, or to a typed error")
    func mutatedFrames() async {
        await propertyCheck(count: 500, input: Generators.clientMessage, Generators.relayMessage, Generators.edits) {
            client, relay, edits in
            checkDecoders(mutate(WireCodec.encode(client), edits))
            checkDecoders(mutate(WireCodec.encode(relay), edits))
        }
    }

    @Test("JSON texts built from protocol tokens decode or fail with a typed error")
    func tokenSoup() async {
        let tokens: [String] = ["{", "}", ":", ",", "\"", #""type""#, #""JOIN""#, #""SIGNAL""#, #""room""#, #""ROOM1""#,
                                #""kind""#, #""MSG""#, #""payload""#, #""QQ==""#, #""key""#, #""peers""#, "2", "-1",
                                #""\u0041""#, #""\ud800""#, "\\", " ", "[", "]", "null", #""ERROR""#, #""code""#,
                                #""NO_PEER""#, #""message""#, #""JOINED""#, #""PEER_FOUND""#, "\u{0}", "é"]
        await propertyCheck(count: 500, input: Gen<Int>.int(in: 0...(tokens.count - 1)).array(of: 0...24)) { picks in
            checkDecoders(Array(picks.map { tokens[$0] }.joined().utf8))
        }
    }

    @Test("ERROR texts at and past the 256-byte cap: they round-trip up to it and are a typed error past it")
    func errorTextCap() async {
        let cap = WireLimits.default.errorMessageMaxBytes
        // The edges themselves, then the generator's spread around them.
        var texts = [String(repeating: "a", count: cap - 1), String(repeating: "a", count: cap),
                     String(repeating: "a", count: cap + 1), String(repeating: "\u{1F600}", count: cap / 4),
                     String(repeating: "\u{1F600}", count: cap / 4 + 1), "e" + String(repeating: "\u{301}", count: 300)]
        texts += (0..<4).map { Generators.text(bytes: cap + $0 - 2, picks: [4, 5, 8, 9]) }
        for text in texts { Self.checkErrorText(text, cap: cap) }
        #expect(texts.contains { $0.utf8.count == cap } && texts.contains { $0.utf8.count > cap })
        await propertyCheck(count: 300, input: Generators.errorText,
                            Gen<Int>.int(in: 0...(RelayErrorCode.allCases.count - 1))) { text, code in
            Self.checkErrorText(text, cap: cap, code: RelayErrorCode.allCases[code])
        }
    }

    static func checkErrorText(_ text: String, cap: Int, code: RelayErrorCode = .malformedJSON) {
        let message = RelayMessage.error(code: code, message: text)
        let decoded = Result { () throws(WireError) in try WireCodec.decodeRelayMessage(WireCodec.encode(message)) }
        if text.utf8.count <= cap {
            #expect((try? decoded.get()) == message, "\(text.utf8.count) bytes")
        } else {
            #expect(throws: WireError.fieldTooLong("message", max: cap)) { try decoded.get() }
        }
    }

    @Test("Long untrusted keys, types and codes (combining marks, 4-byte scalars): every relay reply stays readable")
    func longTokens() async {
        await propertyCheck(count: 200, input: Generators.longToken, Gen<Int>.int(in: 0...4)) { token, place in
            let frames = [
                #"{"type":"JOIN","room":"R",""# + token + #"":1}"#,
                #"{"type":""# + token + #""}"#,
                #"{"type":"JOIN",""# + token + #"":"A",""# + token + #"":"B"}"#,
                #"{"type":"ERROR","code":""# + token + #""}"#,
                #"{""# + token + #"":[1]}"#,
            ]
            checkDecoders(Array(frames[place].utf8))
        }
    }

    @Test("SIGNAL frames at and past the 128 KiB frame cap: accepted up to it, frameTooLarge past it, by every decoder")
    func frameCap() async {
        let cap = WireLimits.default.frameSizeMaxBytes
        await propertyCheck(count: 30, input: Generators.signalNearFrameCap) { signal in
            let frame = WireCodec.encode(ClientMessage.signal(signal))
            let inspected = frame.withUnsafeBytes { buffer in
                Result { () throws(WireError) in try WireCodec.inspectClientFrame(buffer) }
            }
            let decoded = Result { () throws(WireError) in try WireCodec.decodeClientMessage(frame) }
            let fromRelay = Result { () throws(WireError) in try WireCodec.decodeRelayMessage(frame) }
            if frame.count <= cap {
                #expect((try? inspected.get()) == .signal, "\(frame.count) bytes")
                #expect((try? decoded.get()) == .signal(signal))
                #expect((try? fromRelay.get()) == .signal(signal))
            } else {
                let tooLarge = WireError.frameTooLarge(size: frame.count, max: cap)
                #expect(throws: tooLarge) { try inspected.get() }
                #expect(throws: tooLarge) { try decoded.get() }
                #expect(throws: tooLarge) { try fromRelay.get() }
            }
        }
        // The generator reaches the cap exactly (a 4-letter kind makes the frame a multiple of 4 long).
        let exact = (cap - 44) / 4 * 3
        let atCap = WireCodec.encode(
            ClientMessage.signal(Signal(kind: .pake, payload: [UInt8](repeating: 7, count: exact))))
        #expect(atCap.count == cap)
        #expect((try? WireCodec.decodeClientMessage(atCap)) != nil)
    }

    /// Both decoders on `bytes`: a success round-trips; a failure is a `WireError` (the type
    /// system guarantees it) whose relay reply a client can decode.
    func checkDecoders(_ bytes: [UInt8]) {
        do throws(WireError) {
            let message = try WireCodec.decodeClientMessage(bytes)
            #expect((try? WireCodec.decodeClientMessage(WireCodec.encode(message))) == message)
        } catch {
            let reply = RelayMessage.error(code: error.relayErrorCode, message: error.description)
            let decodedReply = try? WireCodec.decodeRelayMessage(WireCodec.encode(reply))
            #expect(decodedReply == reply, "a client cannot read the relay's reply to \(error)")
        }
        do throws(WireError) {
            let message = try WireCodec.decodeRelayMessage(bytes)
            #expect((try? WireCodec.decodeRelayMessage(WireCodec.encode(message))) == message)
        } catch {
            #expect(!error.description.isEmpty)
        }
        let inspected = bytes.withUnsafeBytes { buffer in Result { try WireCodec.inspectClientFrame(buffer) } }
        let decoded = Result { try WireCodec.decodeClientMessage(bytes) }
        #expect((try? inspected.get()) == nil && (try? decoded.get()) == nil
            || (try? inspected.get()) != nil && (try? decoded.get()) != nil,
                "the relay's validator and the decoder disagree")
    }
}
