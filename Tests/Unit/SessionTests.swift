@_spi(Testing) import ChatCore
import Testing

@Suite("Two ChatCore sessions through the room logic, in memory")
struct SessionTests {
    /// Two connected sessions.
    func connectedPair() -> InMemoryChat {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        return chat
    }

    @Test("Both reach CONNECTED through the original lifecycle and exchange messages both ways")
    func connectAndChat() {
        let chat = connectedPair()
        for index in 0..<2 {
            #expect(chat.sessions[index].state == .connected)
            #expect(chat.states(index).starts(with: [.searching, .userFound, .keySetup, .connected]))
        }
        chat.send(0, "hello from A")
        chat.send(1, "hello from B")
        chat.send(0, "second from A")
        #expect(chat.received(1) == ["hello from A", "second from A"])
        #expect(chat.received(0) == ["hello from B"])
        #expect(chat.delivered(0) == [MessageID(1), MessageID(2)])
        #expect(chat.delivered(1) == [MessageID(1)])
        #expect(chat.sessions[0].pendingCount == 0)
        #expect(chat.rejections(0).isEmpty && chat.rejections(1).isEmpty)
        // Both computed the same safety number from the same handshake.
        #expect(chat.sessions[0].safetyNumber != nil)
        #expect(chat.sessions[0].safetyNumber == chat.sessions[1].safetyNumber)
        #expect(chat.sessions[0].authentication == .safetyNumber)
    }

    @Test("A flipped bit is rejected as an authentication failure and never shown")
    func flippedBit() {
        let chat = connectedPair()
        var tampered = 0
        chat.tap = { to, frame in
            guard to == 1, tampered == 0, InMemoryChat.isSignal(frame, .message),
                  case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame) else { return [frame] }
            tampered += 1
            var payload = signal.payload!
            payload[payload.count - 1] ^= 0x01
            return [WireCodec.encode(RelayMessage.signal(Signal(kind: .message, payload: payload)))]
        }
        chat.send(0, "secret")
        #expect(tampered == 1)
        #expect(chat.received(1).isEmpty)
        #expect(chat.rejections(1).contains(.crypto(.authenticationFailed)))
        #expect(chat.rejections(1).allSatisfy { $0.isSuspicious })
        // The sender retransmits the genuine message; it arrives once.
        chat.advance(by: .seconds(2))
        #expect(chat.received(1) == ["secret"])
        #expect(chat.delivered(0) == [MessageID(1)])
    }

    @Test("A flipped bit in the sequence header is rejected too")
    func flippedSequence() {
        let chat = connectedPair()
        chat.send(0, "one")
        var captured: [UInt8]?
        chat.tap = { to, frame in
            if to == 1, InMemoryChat.isSignal(frame, .message) { captured = frame; return [] }
            return [frame]
        }
        chat.send(0, "two")
        chat.tap = nil
        guard case let .signal(signal)? = try? WireCodec.decodeRelayMessage(captured!) else {
            Issue.record("no MSG captured")
            return
        }
        var payload = signal.payload!
        payload[7] ^= 0x01  // Sequence 2 becomes 3: the box no longer matches its nonce.
        payload[7] ^= 0x03  // ... and 3 becomes 0b00: sequence 0 counts as a replay.
        chat.inject(WireCodec.encode(RelayMessage.signal(Signal(kind: .message, payload: payload))), to: 1)
        #expect(chat.received(1) == ["one"])
        payload[7] = 2
        payload[8] ^= 0x80  // Right sequence, altered tag.
        chat.inject(WireCodec.encode(RelayMessage.signal(Signal(kind: .message, payload: payload))), to: 1)
        #expect(chat.received(1) == ["one"])
        #expect(chat.rejections(1).contains(.crypto(.authenticationFailed)))
        chat.advance(by: .seconds(2))
        #expect(chat.received(1) == ["one", "two"])
    }

    @Test("A replayed message is rejected and shown only once")
    func replay() {
        let chat = connectedPair()
        var copy: [UInt8]?
        chat.tap = { to, frame in
            if to == 1, copy == nil, InMemoryChat.isSignal(frame, .message) { copy = frame }
            return [frame]
        }
        chat.send(0, "only once")
        chat.tap = nil
        #expect(chat.received(1) == ["only once"])
        chat.inject(copy!, to: 1)
        chat.inject(copy!, to: 1)
        #expect(chat.received(1) == ["only once"])
        #expect(chat.rejections(1).filter { if case .crypto(.replayed) = $0 { true } else { false } }.count == 2)
        #expect(chat.sessions[1].statistics.duplicatesDropped == 2)
    }

    @Test("A reordered message is rejected until the gap fills, then both are shown in order")
    func reorder() {
        let chat = connectedPair()
        var held: [UInt8]?
        chat.tap = { to, frame in
            if to == 1, held == nil, InMemoryChat.isSignal(frame, .message) { held = frame; return [] }
            return [frame]
        }
        chat.send(0, "first")
        chat.send(0, "second")
        chat.tap = nil
        #expect(chat.received(1).isEmpty, "the second may not overtake the first")
        #expect(chat.rejections(1).contains(.crypto(.outOfOrder(sequence: 2, expected: 1))))
        chat.inject(held!, to: 1)
        #expect(chat.received(1) == ["first", "second"])
        #expect(chat.delivered(0) == [MessageID(1), MessageID(2)])
    }

    @Test("A bad copy held ahead of a gap does not take the slot of the genuine copy that follows it")
    func badCopyAheadOfGap() {
        let chat = connectedPair()
        var firstFrame: [UInt8]?
        chat.tap = { to, frame in
            if to == 1, firstFrame == nil, InMemoryChat.isSignal(frame, .message) { firstFrame = frame; return [] }
            return [frame]
        }
        chat.send(0, "first")
        var secondFrame: [UInt8]?
        chat.tap = { to, frame in
            if to == 1, InMemoryChat.isSignal(frame, .message) { secondFrame = frame; return [] }
            return [frame]
        }
        chat.send(0, "second")
        // From now on only what the test injects reaches session 1 (no retransmission fills the gap).
        chat.tap = { to, frame in to == 1 && InMemoryChat.isSignal(frame, .message) ? [] : [frame] }
        guard case let .signal(signal)? = try? WireCodec.decodeRelayMessage(secondFrame!) else {
            Issue.record("no second MSG captured")
            return
        }
        // Record 2 with its sequence intact and its box altered (as a copy sealed under old keys
        // looks), held first; then the genuine record 2; then the gap fills.
        var payload = signal.payload!
        payload[payload.count - 1] ^= 0x01
        chat.inject(WireCodec.encode(RelayMessage.signal(Signal(kind: .message, payload: payload))), to: 1)
        chat.inject(secondFrame!, to: 1)
        #expect(chat.received(1).isEmpty)
        chat.inject(firstFrame!, to: 1)
        #expect(chat.received(1) == ["first", "second"], "both shown as soon as the gap fills")
        #expect(!chat.rejections(1).contains(.crypto(.authenticationFailed)))
    }

    @Test("A copy of the peer's confirmed opening that arrives after the peer left is dropped, not a failure")
    func confirmedOpeningAfterPeerLeft() {
        let chat = InMemoryChat()
        chat.addSession()
        var openings: [[UInt8]] = []
        chat.tap = { to, frame in
            if to == 0, InMemoryChat.isSignal(frame, .keyExchange) { openings.append(frame) }
            return [frame]
        }
        chat.addSession()
        chat.tap = nil
        #expect(chat.sessions[0].state == .connected)
        chat.disconnect(1)
        #expect(chat.sessions[0].state != .connected, "the relay's PEER_LEFT reached session 0")
        for opening in openings { chat.inject(opening, to: 0) }
        #expect(!openings.isEmpty)
        #expect(chat.ended(0).isEmpty, "a network duplicate must not end the session")
        #expect(chat.rejections(0).contains(.handshake(.staleHello)))
        chat.connect(1)
        chat.advance(by: .seconds(2))
        #expect(chat.sessions[0].state == .connected && chat.sessions[1].state == .connected)
    }

    @Test("A lost confirmation is sent again by its sender, not only in answer to the peer's opening")
    func lostConfirmationIsResent() {
        let chat = InMemoryChat()
        chat.addSession()
        var confirmationsToOne = 0
        chat.tap = { to, frame in
            // Session 0's first confirmation is lost, and so is every opening session 1 repeats.
            if to == 1, InMemoryChat.isSignal(frame, .keyConfirm) {
                confirmationsToOne += 1
                if confirmationsToOne == 1 { return [] }
            }
            if to == 0, InMemoryChat.isSignal(frame, .keyExchange), chat.sessions[0].state == .connected { return [] }
            return [frame]
        }
        chat.addSession()
        #expect(chat.sessions[0].state == .connected)
        #expect(chat.sessions[1].state == .keySetup, "the lost confirmation leaves session 1 waiting")
        chat.advance(by: .seconds(2))
        #expect(chat.sessions[1].state == .connected)
        #expect(confirmationsToOne >= 2)
        // Session 1's ACK of the repeat shows session 0 that it has the keys: no more repeats.
        let before = confirmationsToOne
        chat.advance(by: .seconds(30))
        #expect(confirmationsToOne == before)
    }

    @Test("A record lost ahead of others is sent again at the second duplicate ACK, not after its timeout")
    func fastRetransmit() {
        let chat = connectedPair()
        var lost = 0
        chat.tap = { to, frame in
            if to == 1, lost == 0, InMemoryChat.isSignal(frame, .message) {
                lost += 1
                return []
            }
            return [frame]
        }
        for index in 1...4 { chat.send(0, "message \(index)") }
        // No clock moved: only the duplicate ACKs of messages 2-4 can have brought message 1 again.
        #expect(chat.received(1) == (1...4).map { "message \($0)" })
        #expect(chat.sessions[0].pendingCount == 0)
        #expect(chat.sessions[0].statistics.retransmissions == 1)
    }

    @Test("Messages typed before CONNECTED are queued, never transmitted early, and sent after the handshake")
    func queuedBeforeConnected() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.send(0, "early")
        #expect(chat.sessions[0].state == .searching)
        let transmittedEarly = chat.log[0].contains {
            if case let .transmit(frame) = $0 { (try? WireCodec.decodeClientMessage(frame))?.isMessage ?? false } else { false }
        }
        #expect(!transmittedEarly)
        chat.addSession()
        #expect(chat.received(1) == ["early"])
    }

    @Test("A reconnect re-keys with fresh keys and resumes: nothing typed meanwhile is lost")
    func reconnect() {
        let chat = connectedPair()
        chat.send(0, "before")
        let firstNumber = chat.sessions[1].safetyNumber
        let firstKeys = chat.sessions[1].heldRecordKeysForTesting()
        chat.disconnect(0)
        #expect(chat.sessions[0].state == .disconnected)
        #expect(chat.sessions[1].state == .disconnected)
        chat.send(0, "while away")
        chat.send(1, "also while away")
        chat.connect(0)
        #expect(chat.sessions[0].state == .connected && chat.sessions[1].state == .connected)
        #expect(Set(chat.sessions[1].heldRecordKeysForTesting()).isDisjoint(with: firstKeys), "fresh keys")
        // The re-key proved the keys before it (the retained secret), so the number stays.
        #expect(chat.sessions[1].safetyNumber == firstNumber)
        #expect(chat.received(1) == ["before", "while away"])
        #expect(chat.received(0) == ["also while away"])
        #expect(chat.log[0].contains(.notice(.secured(
            resumed: true, authentication: .safetyNumber, safetyNumber: chat.sessions[0].safetyNumber!))))
    }

    @Test("A peer that restarts as a new process: messages meant for the old one are reported undeliverable")
    func peerRestart() {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        // B cannot hear A's next message.
        chat.tap = { to, frame in to == 1 && InMemoryChat.isSignal(frame, .message) ? [] : [frame] }
        chat.send(0, "lost with the old peer")
        chat.tap = nil
        chat.disconnect(1)
        chat.addSession()  // A new process joins the same room.
        #expect(chat.sessions[0].state == .connected && chat.sessions[2].state == .connected)
        #expect(chat.undeliverable(0) == [MessageID(1)])
        #expect(chat.received(2).isEmpty)
        chat.send(0, "to the new peer")
        #expect(chat.received(2) == ["to the new peer"])
    }

    @Test("Quitting reports unconfirmed messages, wipes keys and asks to close the connection")
    func quit() {
        let chat = connectedPair()
        chat.tap = { _, frame in InMemoryChat.isSignal(frame, .message) ? [] : [frame] }
        chat.send(0, "never confirmed")
        chat.sessions[0].handle(.quit, now: chat.now)
        chat.run()
        #expect(chat.sessions[0].state == .destroyed)
        #expect(chat.undeliverable(0) == [MessageID(1)])
        #expect(chat.log[0].last == .closeTransport)
        #expect(chat.sessions[0].safetyNumber == nil)
        #expect(chat.send(0, "after the end") == .failure(.sessionEnded))
    }

    @Test("A third session in the room is refused and ends with a typed reason")
    func roomFull() {
        let chat = connectedPair()
        let third = chat.addSession()
        #expect(chat.sessions[third].state == .destroyed)
        #expect(chat.log[third].contains(.notice(.ended(.relayRefused(.roomFull)))))
        #expect(chat.sessions[0].state == .connected)
    }

    @Test("Bad user input is refused with a reason and nothing is queued")
    func refusals() {
        let chat = connectedPair()
        #expect(chat.send(0, "") == .failure(.empty))
        #expect(chat.send(0, String(repeating: "x", count: 4097)) == .failure(.tooLong(maxBytes: 4096)))
        #expect(chat.sessions[0].pendingCount == 0)
    }

    @Test("Garbage from the relay is a typed rejection; the session carries on")
    func garbage() {
        let chat = connectedPair()
        chat.inject(Array("not json".utf8), to: 0)
        chat.inject(Array(#"{"type":"SIGNAL","kind":"MSG","payload":"AAAA"}"#.utf8), to: 0)
        chat.inject(Array(#"{"type":"SIGNAL","kind":"KEY_EXCHANGE","key":"AAAA"}"#.utf8), to: 0)
        #expect(chat.rejections(0).count == 3)
        chat.send(1, "still fine")
        #expect(chat.received(0) == ["still fine"])
    }
}

extension ClientMessage {
    var isMessage: Bool {
        if case let .signal(signal) = self { signal.kind == .message } else { false }
    }
}
