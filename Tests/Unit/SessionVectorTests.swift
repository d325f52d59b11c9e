@_spi(Testing) import ChatCore
import Testing

/// The session layer against answers computed outside the project: scripts/session-vectors.py
/// implements docs/PROTOCOL.md with hashlib and PyNaCl and wrote
/// Vectors/securechat-session-vectors.json. A difference means the code and the document disagree.
@Suite("Session known answers from docs/PROTOCOL.md (scripts/session-vectors.py)")
struct SessionVectorTests {
    static func vectors() throws -> [String: Any] {
        try #require(try TestVectors.json("securechat-session-vectors.json") as? [String: Any])
    }

    static func hex(_ object: [String: Any], _ key: String) throws -> [UInt8] {
        TestVectors.hex(try #require(object[key] as? String, "vector field \(key)"))
    }

    @Test("SessionKeyDerivation.masterKey and the four keys made from it, in both modes")
    func masterKeys() throws {
        let cases = try #require(try Self.vectors()["master_keys"] as? [[String: Any]])
        #expect(cases.count == 2)
        for vector in cases {
            let secret = try Self.hex(vector, "handshake_secret").withUnsafeBytes { SecureBytes(copying: $0) }
            let master = SessionKeyDerivation.masterKey(
                handshakeSecret: secret, transcriptHash: try Self.hex(vector, "transcript_id"))
            #expect(master.testCopy == (try Self.hex(vector, "master")), "\(vector["mode"] ?? "")")
            // The low side sends on low->high; the ratchet's held secrets are its send chain, receive
            // chain, send control and receive control keys, in that order.
            let ratchet = MessageRatchet(masterKey: master, localSide: .low)
            let expected = try ["chain_low_to_high", "chain_high_to_low", "control_low_to_high", "control_high_to_low"]
                .map { try Self.hex(vector, $0) }
            #expect(ratchet.heldSecretsForTesting() == expected, "\(vector["mode"] ?? "")")
            #expect(master.isWiped, "the ratchet wipes the master key once the four keys exist")
        }
    }

    @Test("SafetyNumber: the outside computation's digits")
    func safetyNumber() throws {
        let cases = try #require(try Self.vectors()["safety_numbers"] as? [[String: Any]])
        #expect(!cases.isEmpty)
        for vector in cases {
            let room = try RoomCode(try #require(vector["room"] as? String))
            let local = SafetyNumber.Party(
                key: try Self.hex(vector, "local_key"), hello: try Self.hex(vector, "local_hello"))
            let peer = SafetyNumber.Party(
                key: try Self.hex(vector, "peer_key"), hello: try Self.hex(vector, "peer_hello"))
            let number = try #require(vector["number"] as? String)
            #expect(SafetyNumber(room: room, local: local, peer: peer).description == number)
            #expect(SafetyNumber(room: room, local: peer, peer: local).description == number)
        }
    }

    /// The frames one session transmitted, as (kind, key, payload), in order.
    static func signals(_ chat: InMemoryChat, _ index: Int) -> [Signal] {
        chat.log[index].compactMap { output -> Signal? in
            guard case let .transmit(frame) = output,
                  case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) else { return nil }
            return signal
        }
    }

    @Test("A whole conversation without a password, byte for byte: openings, confirmations, records, acks, safety number")
    func x25519Conversation() throws {
        let vector = try #require(try Self.vectors()["x25519_session"] as? [String: Any])
        let alice = try #require(vector["alice"] as? [String: Any])
        let bob = try #require(vector["bob"] as? [String: Any])
        let room = try RoomCode(try #require(vector["room"] as? String))
        let chat = InMemoryChat()
        chat.addSession(room: room, entropy: RepeatedByteEntropy(UInt8(try #require(alice["entropy_byte"] as? Int))))
        chat.addSession(room: room, entropy: RepeatedByteEntropy(UInt8(try #require(bob["entropy_byte"] as? Int))))
        #expect(chat.sessions.allSatisfy { $0.state == .connected })
        let texts = try #require(vector["alice_texts"] as? [String])
        for text in texts { chat.send(0, text) }
        #expect(chat.received(1) == texts)

        for (index, party) in [(0, alice), (1, bob)] {
            let sent = Self.signals(chat, index)
            let openings = sent.filter { $0.kind == .keyExchange }
            #expect(openings.count == 1, "\(index): \(openings.count) KEY_EXCHANGEs")
            #expect(openings.first?.key == (try Self.hex(party, "key")), "\(index): the public key")
            #expect(openings.first?.payload == (try Self.hex(party, "hello")), "\(index): the hello")
            let confirmations = sent.filter { $0.kind == .keyConfirm }
            #expect(confirmations.count == 1)
            #expect(confirmations.first?.payload == (try Self.hex(party, "key_confirm_payload")),
                    "\(index): KEY_CONFIRM")
        }
        let records = Self.signals(chat, 0).filter { $0.kind == .message }.map(\.payload)
        let expectedRecords = try #require(vector["alice_msg_payloads"] as? [String]).map(TestVectors.hex)
        #expect(records == expectedRecords)
        let acks = Self.signals(chat, 1).filter { $0.kind == .ack }.map(\.payload)
        let expectedAcks = try #require(vector["bob_ack_payloads"] as? [String]).map(TestVectors.hex)
        #expect(acks == expectedAcks)
        let number = try #require(vector["safety_number"] as? String)
        #expect(chat.sessions[0].safetyNumber?.description == number)
        #expect(chat.sessions[1].safetyNumber?.description == number)
    }

    @Test("Key continuity and the goodbye, byte for byte: the continued handshake after a reconnect, a record, BYEs")
    func x25519ContinuedAndGoodbye() throws {
        let first = try #require(try Self.vectors()["x25519_session"] as? [String: Any])
        let vector = try #require(try Self.vectors()["x25519_continued"] as? [String: Any])
        let alice = try #require(first["alice"] as? [String: Any])
        let bob = try #require(first["bob"] as? [String: Any])
        let room = try RoomCode(try #require(first["room"] as? String))
        let chat = InMemoryChat()
        chat.addSession(room: room, entropy: RepeatedByteEntropy(UInt8(try #require(alice["entropy_byte"] as? Int))))
        chat.addSession(room: room, entropy: RepeatedByteEntropy(UInt8(try #require(bob["entropy_byte"] as? Int))))
        for text in try #require(first["alice_texts"] as? [String]) { chat.send(0, text) }
        let before = [Self.signals(chat, 0).count, Self.signals(chat, 1).count]
        chat.disconnect(1)
        chat.connect(1)
        #expect(chat.sessions.allSatisfy { $0.state == .connected })
        chat.send(0, try #require(vector["alice_text"] as? String))
        chat.sessions[0].handle(.leave, now: chat.now)
        chat.run()
        #expect(chat.sessions[0].state == .destroyed && chat.ended(0) == [.userQuit])

        for (index, name) in [(0, "alice"), (1, "bob")] {
            let sent = Array(Self.signals(chat, index).dropFirst(before[index]))
            let openings = sent.filter { $0.kind == .keyExchange }
            let hello = try Self.hex(vector, "\(name)_hello")
            #expect(openings.count == 1 && openings.first?.payload == hello, "\(name): the continued hello, with the id")
            let confirmations = sent.filter { $0.kind == .keyConfirm }.map(\.payload)
            #expect(confirmations == [try Self.hex(vector, "\(name)_key_confirm_payload")], "\(name): KEY_CONFIRM")
            let goodbyes = sent.filter { $0.kind == .goodbye }.map(\.payload)
            let expected = try #require(vector["\(name)_bye_payloads"] as? [String]).map(TestVectors.hex)
            #expect(goodbyes == expected, "\(name): BYE")
        }
        let record = Self.signals(chat, 0).dropFirst(before[0]).filter { $0.kind == .message }.map(\.payload)
        #expect(record == [try Self.hex(vector, "alice_msg_payload")])
        let ack = Self.signals(chat, 1).dropFirst(before[1]).filter { $0.kind == .ack }.map(\.payload)
        #expect(ack == [try Self.hex(vector, "bob_ack_payload")])
        #expect(chat.sessions[1].safetyNumber?.description == (try #require(vector["safety_number"] as? String)))
    }
}
