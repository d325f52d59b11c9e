import CSodium
@_spi(Testing) import ChatCore
import Testing

/// Two sessions joined directly (no room logic): each one's SIGNALs reach the other, and each is
/// told its peer is here. The building block of the man-in-the-middle tests below, where the
/// "relay" runs one such link toward each victim with an endpoint of its own.
final class DirectLink {
    let sides: [SessionManager]
    private(set) var now = Instant.zero
    private(set) var log: [[SessionOutput]] = [[], []]
    /// Sees every SIGNAL on its way to side `to` and returns what is delivered instead.
    var tap: ((_ to: Int, _ signal: Signal) -> [Signal])?

    init(_ first: SessionManager, _ second: SessionManager, tap: ((_ to: Int, _ signal: Signal) -> [Signal])? = nil) {
        sides = [first, second]
        self.tap = tap
        for side in sides { side.handle(.transportUp, now: now) }
        let joined = WireCodec.encode(RelayMessage.joined(room: first.configuration.room, peers: 2))
        for side in sides { side.handle(.frame(joined), now: now) }
        run()
    }

    /// Move SIGNALs until nothing moves (bounded).
    func run() {
        for _ in 0..<10_000 {
            var moved = false
            for index in 0..<2 {
                for output in sides[index].drainOutputs() {
                    log[index].append(output)
                    guard case let .transmit(frame) = output,
                          case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) else { continue }
                    moved = true
                    for delivered in tap?(1 - index, signal) ?? [signal] {
                        sides[1 - index].handle(.frame(WireCodec.encode(RelayMessage.signal(delivered))), now: now)
                    }
                }
            }
            if !moved { return }
        }
        Issue.record("the link did not settle")
    }

    func send(_ index: Int, _ text: String) {
        _ = sides[index].send(text, now: now)
        run()
    }

    func advance(by duration: Duration) {
        let end = now.advanced(by: duration)
        while now < end {
            now = min(end, now.advanced(by: .milliseconds(100)))
            for side in sides {
                if let due = side.pollTimeout(), due <= now { side.handleTimeout(now: now) }
            }
            run()
        }
    }

    func received(_ index: Int) -> [String] {
        log[index].compactMap { if case let .received(message) = $0 { message.text } else { nil } }
    }
}

@Suite("Session authentication: CPace with a password, X25519 and safety numbers without")
struct SessionAuthenticationTests {
    static func session(password: String?, room: RoomCode = InMemoryChat.room) -> SessionManager {
        let secret = password.map { try! Password($0) }
        defer { secret?.wipe() }
        return SessionManager(
            configuration: SessionConfiguration(room: room), password: secret, entropy: SystemEntropy())
    }

    /// Whether any record or ack left `index` before it was CONNECTED.
    static func sealedBeforeConfirmation(_ chat: InMemoryChat, _ index: Int) -> Bool {
        chat.transmittedKinds(index).contains { [.message, .ack].contains($0.kind) && $0.state != .connected }
    }

    @Test("Same password: PAKE, both confirm, same safety number; messages flow; nothing sealed before CONNECTED")
    func passwordMatch() throws {
        let chat = InMemoryChat()
        chat.addSession(password: "oyster-lemon")
        chat.send(0, "typed before the peer came")
        chat.addSession(password: "oyster-lemon")
        for index in 0..<2 {
            #expect(chat.sessions[index].state == .connected)
            #expect(chat.sessions[index].authentication == .password)
            #expect(chat.sessions[index].passwordRunsUnconfirmed == 0)
            // The handshake was PAKE + KEY_CONFIRM only (no X25519 KEY_EXCHANGE).
            let kinds = chat.transmittedKinds(index).map(\.kind)
            #expect(kinds.prefix(2) == [.pake, .keyConfirm])
            #expect(!kinds.contains(.keyExchange))
            #expect(!Self.sealedBeforeConfirmation(chat, index))
        }
        let number = try #require(chat.sessions[0].safetyNumber)
        #expect(chat.sessions[1].safetyNumber == number)
        let secured = SessionNotice.secured(resumed: false, authentication: .password, safetyNumber: number)
        #expect(chat.log[0].contains(.notice(secured)))
        chat.send(1, "and back")
        #expect(chat.received(1) == ["typed before the peer came"])
        #expect(chat.received(0) == ["and back"])
    }

    @Test("Wrong password: both sides end with \"authentication failed\"; nothing was ever sealed or shown")
    func passwordMismatch() {
        let chat = InMemoryChat()
        chat.addSession(password: "oyster-lemon")
        chat.send(0, "must never be encrypted")
        chat.addSession(password: "oyster-melon")
        for index in 0..<2 {
            #expect(chat.sessions[index].state == .destroyed)
            #expect(chat.ended(index) == [.authenticationFailed(.passwordMismatch)])
            #expect(chat.ended(index).first?.description.hasPrefix("authentication failed") == true)
            #expect(!chat.transmittedKinds(index).contains { $0.kind == .message || $0.kind == .ack })
            #expect(chat.received(index).isEmpty)
            #expect(!chat.states(index).contains(.connected))
            #expect(chat.log[index].last == .closeTransport)
        }
        // The message typed early is reported, not silently dropped.
        #expect(chat.undeliverable(0) == [MessageID(1)])
    }

    @Test("One side with a password, one without: both end with a typed authentication failure")
    func modeMismatch() {
        let chat = InMemoryChat()
        chat.addSession(password: "oyster-lemon")
        chat.addSession()
        #expect(chat.ended(0) == [.authenticationFailed(.peerHasNoPassword)])
        #expect(chat.ended(1) == [.authenticationFailed(.peerHasPassword)])
        #expect(chat.sessions.allSatisfy { $0.state == .destroyed })
    }

    @Test("A relay in the middle with a guessed password: both victims fail, its endpoints decrypt nothing")
    func manInTheMiddleWithPassword() {
        let alice = Self.session(password: "oyster-lemon")
        let relayToAlice = Self.session(password: "guessed-wrong")
        let bob = Self.session(password: "oyster-lemon")
        let relayToBob = Self.session(password: "guessed-wrong")
        _ = alice.send("for bob's eyes only", now: .zero)
        let left = DirectLink(alice, relayToAlice)
        let right = DirectLink(relayToBob, bob)
        for (link, victim) in [(left, 0), (right, 1)] {
            #expect(link.sides[victim].state == .destroyed)
            #expect(link.log[victim].contains(.notice(.ended(.authenticationFailed(.passwordMismatch)))))
            #expect(link.received(1 - victim).isEmpty, "the relay's endpoint decrypted nothing")
            #expect(!link.sides[1 - victim].state.isConnected)
        }
    }

    @Test("A relay in the middle without a password: both sides connect, but their safety numbers differ")
    func manInTheMiddleWithoutPassword() throws {
        let alice = Self.session(password: nil)
        let relayToAlice = Self.session(password: nil)
        let bob = Self.session(password: nil)
        let relayToBob = Self.session(password: nil)
        let left = DirectLink(alice, relayToAlice)
        let right = DirectLink(relayToBob, bob)
        #expect(alice.state == .connected && bob.state == .connected)
        let aliceNumber = try #require(alice.safetyNumber)
        let bobNumber = try #require(bob.safetyNumber)
        #expect(aliceNumber != bobNumber, "comparing safety numbers reveals the relay")
        #expect(!aliceNumber.matches(bobNumber.description))
        // Each victim's number is the one its attacker's endpoint shows (that is all it can match).
        #expect(relayToAlice.safetyNumber == aliceNumber && relayToBob.safetyNumber == bobNumber)
        left.send(0, "read by the relay")
        #expect(left.received(1) == ["read by the relay"])
        _ = right
        // Without the relay the same kind of sessions agree.
        let direct = DirectLink(Self.session(password: nil), Self.session(password: nil))
        #expect(direct.sides[0].safetyNumber == direct.sides[1].safetyNumber)
    }

    @Test("A key or share swapped in flight (no endpoint of the relay's own): nobody connects, both fail loudly")
    func keySubstitution() throws {
        // A relay that only swaps Alice's key for one of its own on the way to Bob. Bob pairs with
        // the impostor key, Alice with Bob's real one: each one's confirmation names the same two
        // openings as the other's pairing but carries another run id, which is tampering: both end
        // with "authentication failed" (before protocol v3 each dropped the other's as stale and
        // the two stalled in KEY_SETUP without a word). A relay that completes the handshake
        // itself is the man in the middle of the tests above.
        let impostor = KeyManager().generateKeyPair(entropy: SystemEntropy()).bytes
        let impostorShare = try CPaceParty(
            password: try Password("guessed-wrong"),
            channelIdentifier: CPaceParty.channelIdentifier(room: InMemoryChat.room), associatedData: [],
            setting: .symmetric, entropy: SystemEntropy()).share
        for password in ["oyster-lemon", nil] as [String?] {
            let link = DirectLink(Self.session(password: password), Self.session(password: password)) { to, signal in
                guard to == 1, signal.kind == .pake || signal.kind == .keyExchange else { return [signal] }
                let swapped = password == nil ? impostor : impostorShare
                return [Signal(kind: signal.kind, payload: signal.payload, key: swapped)]
            }
            for index in 0..<2 {
                #expect(link.log[index].contains(.notice(.ended(.authenticationFailed(.confirmationMismatch)))))
            }
            _ = link.sides[0].send("never sealed", now: link.now)
            link.advance(by: .seconds(30))
            let connected = link.sides.map { $0.state == .connected }
            #expect(connected == [false, false], "\(password == nil ? "x25519" : "cpace"): \(connected)")
            let recordsSent = link.log.joined().contains { output in
                guard case let .transmit(frame) = output,
                      case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame)
                else { return false }
                return signal.kind == .message || signal.kind == .ack
            }
            #expect(!recordsSent)
            if password != nil {
                // Bob gave one tag for the impostor pairing (the relay's one guess), and no more:
                // retransmissions repeat the same pairing.
                #expect(link.sides[1].passwordRunsUnconfirmed == 1)
                #expect(link.sides[0].passwordRunsUnconfirmed == 1)
            }
        }
    }

    @Test("Re-key with a password: a reconnect re-keys without a password tag; the conversation resumes; the number stays")
    func passwordRekey() throws {
        let chat = InMemoryChat()
        chat.addSession(password: "oyster-lemon")
        chat.addSession(password: "oyster-lemon")
        chat.send(0, "before")
        let firstNumber = try #require(chat.sessions[0].safetyNumber)
        chat.disconnect(1)
        chat.send(0, "while away")
        chat.connect(1)
        #expect(chat.sessions[0].state == .connected && chat.sessions[1].state == .connected)
        #expect(chat.sessions[0].statistics.handshakesCompleted == 2)
        let secondNumber = try #require(chat.sessions[0].safetyNumber)
        #expect(secondNumber == firstNumber && chat.sessions[1].safetyNumber == secondNumber)
        // The re-key was keyed with the retained secret: the KEY_CONFIRMs after the first carry a
        // sealed transcript (80 bytes), never a password tag (64) a relay could test a guess on.
        let proofSizes = chat.log[1].compactMap { output -> Int? in
            guard case let .transmit(frame) = output, case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame),
                  signal.kind == .keyConfirm else { return nil }
            return (signal.payload?.count ?? 0) - 64  // Less the run id and the two openings it names.
        }
        #expect(proofSizes.first == 64 && proofSizes.count >= 2 && proofSizes.dropFirst().allSatisfy { $0 == 80 },
                "\(proofSizes)")
        #expect(chat.received(1) == ["before", "while away"])
        let secured = SessionNotice.secured(resumed: true, authentication: .password, safetyNumber: secondNumber)
        #expect(chat.log[1].contains(.notice(secured)))
        #expect(chat.transmittedKinds(1).filter { $0.kind == .pake }.count >= 2)
        #expect(chat.sessions.allSatisfy { $0.passwordRunsUnconfirmed == 0 })
    }

    @Test("The guess budget: each unconfirmed tag counts, and one past the budget ends the session")
    func guessBudget() throws {
        let budget = 3
        let configuration = SessionConfiguration(room: InMemoryChat.room, passwordRunsUnconfirmedMax: budget)
        let password = try Password("oyster-lemon")
        let victim = SessionManager(configuration: configuration, password: password, entropy: SystemEntropy())
        var now = Instant.zero
        victim.handle(.transportUp, now: now)
        victim.handle(.frame(WireCodec.encode(RelayMessage.joined(room: InMemoryChat.room, peers: 2))), now: now)
        _ = victim.drainOutputs()
        // A relay answers with share after share (each a guess, each from a "new peer"), takes the
        // victim's tag and never confirms.
        var tags = 0
        var ended: SessionEndReason?
        for attempt in 0..<12 where ended == nil {
            let instance = [UInt8](repeating: UInt8(attempt + 1), count: 16)
            let hello = Forge.hello(version: SessionProtocol.version, instance: instance, epoch: 1)
            let guess = try CPaceParty(
                password: try Password("guess-\(attempt)"),
                channelIdentifier: CPaceParty.channelIdentifier(room: InMemoryChat.room),
                associatedData: hello, setting: .symmetric, entropy: SystemEntropy())
            now = now.advanced(by: .milliseconds(100))
            let opening = Signal(kind: .pake, payload: hello, key: guess.share)
            victim.handle(.frame(WireCodec.encode(RelayMessage.signal(opening))), now: now)
            for output in victim.drainOutputs() {
                if case let .transmit(frame) = output,
                   case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame), signal.kind == .keyConfirm {
                    tags += 1
                }
                if case let .notice(.ended(reason)) = output { ended = reason }
            }
        }
        #expect(tags == budget, "one tag per guess, up to the budget")
        #expect(ended == .authenticationFailed(.tooManyAttempts(budget)))
        #expect(victim.state == .destroyed)
    }

    @Test("A confirmation for another pairing is stale, not fatal; an invalid share is refused before CPace")
    func staleConfirmationAndInvalidShares() throws {
        let chat = InMemoryChat()
        chat.addSession(password: "oyster-lemon")
        // Before the peer exists: shares that are not group elements never reach the CPace run.
        let hello = Forge.hello(version: SessionProtocol.version, instance: [UInt8](repeating: 9, count: 16), epoch: 1)
        for share in [[UInt8](repeating: 0, count: 32), [UInt8](repeating: 0xFF, count: 32)] {
            chat.inject(WireCodec.encode(RelayMessage.signal(Signal(kind: .pake, payload: hello, key: share))), to: 0)
            #expect(chat.rejections(0).last == .handshake(.invalidShare))
        }
        #expect(!chat.transmittedKinds(0).contains { $0.kind == .keyConfirm })
        chat.addSession(password: "oyster-lemon")
        #expect(chat.sessions[0].state == .connected)
        // A re-key; then an 80-byte confirmation whose run id is not this pairing's.
        chat.disconnect(1)
        chat.connect(1)
        let stray = Signal(kind: .keyConfirm, payload: [UInt8](repeating: 7, count: 80))
        chat.inject(WireCodec.encode(RelayMessage.signal(stray)), to: 0)
        #expect(chat.sessions[0].state == .connected, "a stray confirmation in CONNECTED is a duplicate")
        chat.send(0, "still fine")
        #expect(chat.received(1) == ["still fine"])
    }

    @Test("Forward secrecy in a session: records sent earlier do not open with anything the session now holds")
    func earlierRecordsStaySealed() throws {
        for password in ["oyster-lemon", nil] as [String?] {
            let link = DirectLink(Self.session(password: password), Self.session(password: password))
            var boxes: [(sequence: UInt64, box: [UInt8])] = []
            link.tap = { _, signal in
                if signal.kind == .message, let payload = signal.payload {
                    boxes.append((leadingSequence(payload), Array(payload[8...])))
                }
                return [signal]
            }
            for index in 1...5 { link.send(0, "record \(index)") }
            #expect(link.received(1).count == 5 && boxes.count >= 5)
            let seized = link.sides[0].heldRecordKeysForTesting() + link.sides[1].heldRecordKeysForTesting()
            #expect(seized.count == 8, "two chains and two control keys per side, nothing else")
            // Everything an attacker can compute forward from the seized keys (each key, and message
            // keys up to 8 ratchet steps ahead of each) fails on every earlier record...
            var candidates: [[UInt8]] = []
            for key in seized {
                var chain = key
                candidates.append(chain)
                for _ in 0..<8 {
                    candidates.append(Self.kdf(chain, id: 1))
                    chain = Self.kdf(chain, id: 2)
                }
            }
            for (sequence, box) in boxes {
                for side: UInt8 in [0, 1] {
                    for key in candidates {
                        #expect(!Self.opens(box, key: key, side: side, sequence: sequence))
                    }
                }
            }
            // ... while the next record does open with one of them: the candidates are real.
            var next: (sequence: UInt64, box: [UInt8])?
            link.tap = { _, signal in
                if signal.kind == .message, let payload = signal.payload {
                    next = (leadingSequence(payload), Array(payload[8...]))
                }
                return [signal]
            }
            link.send(0, "record 6")
            let later = try #require(next)
            #expect(candidates.contains { key in
                [0, 1].contains { Self.opens(later.box, key: key, side: $0, sequence: later.sequence) }
            })
        }
    }

    @Test("The password never reaches the wire, in any frame of a whole chat")
    func passwordNeverOnTheWire() {
        let chat = InMemoryChat()
        chat.addSession(password: "oyster-lemon")
        chat.addSession(password: "oyster-lemon")
        chat.send(0, "hello")
        chat.disconnect(0)
        chat.connect(0)
        let needles = [Array("oyster".utf8), Array("lemon".utf8), Base64.encode(Array("oyster-lemon".utf8))]
        for index in 0..<2 {
            for output in chat.log[index] {
                guard case let .transmit(frame) = output else { continue }
                for needle in needles { #expect(!frame.contains(subsequence: needle)) }
            }
        }
    }

    // MARK: Helpers

    static func kdf(_ key: [UInt8], id: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let context = Array("SC_RATCH".utf8).map { CChar(bitPattern: $0) }
        _ = crypto_kdf_derive_from_key(&out, 32, id, context, key)
        return out
    }

    static func opens(_ box: [UInt8], key: [UInt8], side: UInt8, sequence: UInt64) -> Bool {
        guard box.count >= 16 else { return false }
        var nonce = [UInt8](repeating: 0, count: 24)
        nonce[0] = 1  // Purpose: record.
        nonce[1] = side
        for index in 0..<8 { nonce[16 + index] = UInt8(truncatingIfNeeded: sequence >> (56 - 8 * UInt64(index))) }
        var plain = [UInt8](repeating: 0, count: box.count - 16)
        return crypto_secretbox_open_easy(&plain, box, UInt64(box.count), nonce, key) == 0
    }
}

extension SessionState {
    var isConnected: Bool { self == .connected }
}

/// The big-endian sequence number that leads a MSG payload.
func leadingSequence(_ bytes: [UInt8]) -> UInt64 {
    bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
}

extension Array where Element == UInt8 {
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { self[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}
