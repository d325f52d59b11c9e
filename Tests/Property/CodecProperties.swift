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
            case let .join(room): #expect(inspected == .join(room))
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
