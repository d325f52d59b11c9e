import ChatCore
import Testing

@testable import ClientCore

/// Issue 12's findings, one test each, as an attacker in control of the relay would try them.
/// Each failed on the protocol before v3 (main at a7e2e29; the report of branch session-v3 quotes
/// what each printed there). They use only what a relay sees and can send, plus real sessions as
/// the attacker's endpoints; frames they forge follow the victim's own hello version.
@Suite("Attacks from the relay: loud failure, one guess per run, key continuity, no crash")
struct SessionAttackTests {
    static let room = InMemoryChat.room
    static let password = "oyster-lemon"

    static func session(_ password: String?, entropy: any EntropySource = SystemEntropy()) -> SessionManager {
        let secret = password.map { try! Password($0) }
        defer { secret?.wipe() }
        return SessionManager(configuration: SessionConfiguration(room: room), password: secret, entropy: entropy)
    }

    // MARK: 1. Key substitution

    @Test("1. Keys swapped in flight: both sides fail authentication within 2 s, in both modes; nothing is sealed")
    func keySubstitutionFailsLoudly() throws {
        for password in [Self.password, nil] as [String?] {
            let impostor = try Forge.impostorKey(password: password != nil)
            let link = DirectLink(Self.session(password), Self.session(password)) { _, signal in
                guard signal.kind == .pake || signal.kind == .keyExchange else { return [signal] }
                return [Signal(kind: signal.kind, payload: signal.payload, key: impostor)]
            }
            // Every confirmation arrived at time 0; two seconds later both must have said so.
            link.advance(by: .seconds(2))
            for index in 0..<2 {
                let ended = link.log[index].compactMap { if case let .notice(.ended(reason)) = $0 { reason } else { nil } }
                let failed = ended.contains { if case .authenticationFailed = $0 { true } else { false } }
                #expect(failed, "\(password == nil ? "x25519" : "cpace") side \(index): \(link.sides[index].state)")
                #expect(link.sides[index].state != .connected)
            }
            #expect(!Forge.signals(link.log.joined()).contains { $0.kind == .message || $0.kind == .ack })
        }
    }

    @Test("1. Our own confirmation reflected back is dropped, not taken for a wrong password")
    func reflectedConfirmationIsDropped() throws {
        let alice = Self.session(Self.password)
        let bob = Self.session(Self.password)
        let pump = Pump([alice, bob])
        pump.join()
        // Alice's first KEY_CONFIRM goes back to Alice; Bob's is held until it has.
        var reflected = false
        var held: [Signal] = []
        pump.tap = { from, to, signal in
            guard signal.kind == .keyConfirm, !reflected else { return [(to, signal)] }
            if from == 1 {
                held.append(signal)
                return []
            }
            reflected = true
            return [(0, signal), (1, signal)] + held.map { (0, $0) }
        }
        pump.run()
        #expect(reflected)
        #expect(alice.state == .connected && bob.state == .connected)
        #expect(pump.ended(0).isEmpty)
    }

    // MARK: 2. One guess per run

    @Test("2. A relay answering with share after share from new instances gets at most 2 tags, then the run ends")
    func guessBudgetPerRun() throws {
        let victim = Self.session(Self.password)
        let pump = Pump([victim])
        pump.join()
        let opening = try #require(pump.sent(0).last { $0.kind == .pake })
        let version = try #require(opening.payload?.first)
        var tags = 0
        for attempt in 0..<12 where victim.state != .destroyed {
            let hello = Forge.hello(version: version, instance: [UInt8](repeating: UInt8(attempt + 1), count: 16), epoch: 1)
            let guess = try CPaceParty(
                password: try Password("guess-\(attempt)"), channelIdentifier: CPaceParty.channelIdentifier(room: Self.room),
                associatedData: hello, setting: .symmetric, entropy: SystemEntropy())
            let before = pump.sent(0).count
            pump.deliver(Signal(kind: .pake, payload: hello, key: guess.share), to: 0)
            tags += pump.sent(0)[before...].filter { $0.kind == .keyConfirm }.count
        }
        #expect(tags <= 2, "each tag tests one password guess")
        #expect(pump.ended(0).contains { if case .authenticationFailed = $0 { true } else { false } })
    }

    @Test("2. A run that ends with an unconfirmed password tag says the code is spent (here: a relay ERROR)")
    func spentCodeIsSaid() throws {
        let configuration = DriverConfiguration(session: SessionConfiguration(room: Self.room), interactive: false)
        let driver = ClientDriver(configuration: configuration, password: try Password(Self.password),
                                  entropy: SystemEntropy())
        var shown: [ClientNotice] = []
        var sent: [Signal] = []
        func drain() {
            for action in driver.drainActions() {
                if case let .display(.notice(notice)) = action { shown.append(notice) }
                if case let .send(_, frame) = action, case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) {
                    sent.append(signal)
                }
            }
        }
        driver.handle(.start, now: .zero)
        let id = ConnectionID(1)
        driver.handle(.transportUp(id), now: .zero)
        driver.handle(.transportFrame(id, WireCodec.encode(RelayMessage.joined(room: Self.room, peers: 2))), now: .zero)
        drain()
        let version = try #require(sent.last { $0.kind == .pake }?.payload?.first)
        let hello = Forge.hello(version: version, instance: [UInt8](repeating: 3, count: 16), epoch: 1)
        let guess = try CPaceParty(
            password: try Password("guess-one"), channelIdentifier: CPaceParty.channelIdentifier(room: Self.room),
            associatedData: hello, setting: .symmetric, entropy: SystemEntropy())
        let opening = RelayMessage.signal(Signal(kind: .pake, payload: hello, key: guess.share))
        driver.handle(.transportFrame(id, WireCodec.encode(opening)), now: .zero)
        drain()
        #expect(sent.contains { $0.kind == .keyConfirm }, "the relay took a tag")
        driver.handle(.transportFrame(id, WireCodec.encodeError(.invalidRoom)), now: .zero)
        drain()
        #expect(driver.hasExited)
        #expect(shown.contains { $0.level != .info && $0.text.contains("spent") }, "\(shown.map(\.text))")
    }

    // MARK: 3. Key continuity without a password

    @Test("3. A forged restart (the peer's instance, a higher epoch) is refused; the conversation stays with the peer")
    func forgedRestartWithoutPassword() throws {
        let alice = Self.session(nil)
        let bob = Self.session(nil)
        let link = DirectLink(alice, bob)
        let number = try #require(alice.safetyNumber)
        // The relay's endpoint: a real session that took Bob's public instance ID, opened twice
        // (so its epoch is above the one Alice confirmed), and now answers Alice in Bob's place.
        let forger = Self.session(nil, entropy: ScriptedEntropy(prefix: bob.localInstance.bytes))
        #expect(forger.localInstance == bob.localInstance)
        let pump = Pump([alice, forger])
        pump.join(only: 1)
        forger.handle(.transportDown, now: .zero)
        pump.join(only: 1)
        let forged = try #require(pump.sent(1).last { $0.kind == .keyExchange })
        pump.deliver(forged, to: 0)
        _ = alice.send("for bob only", now: .zero)
        pump.run()
        #expect(pump.received(1).isEmpty, "the forger decrypted: \(pump.received(1))")
        #expect(forger.state != .connected)
        #expect(alice.safetyNumber == number, "the verified number still counts")
        _ = link
    }

    @Test("3. With a password, a forged restart costs no password guess: refused before any tag is given")
    func forgedRestartWithPassword() throws {
        let alice = Self.session(Self.password)
        let bob = Self.session(Self.password)
        let link = DirectLink(alice, bob)
        let forger = Self.session("guessed-wrong", entropy: ScriptedEntropy(prefix: bob.localInstance.bytes))
        let pump = Pump([alice, forger])
        pump.join(only: 1)
        forger.handle(.transportDown, now: .zero)
        pump.join(only: 1)
        let forged = try #require(pump.sent(1).last { $0.kind == .pake })
        pump.deliver(forged, to: 0)
        #expect(!pump.sent(0).contains { $0.kind == .keyConfirm }, "no tag for a relay to test a guess on")
        #expect(alice.passwordRunsUnconfirmed == 0 && alice.state == .connected)
        #expect(pump.log[0].contains(.notice(.handshakeRefused(.continuityNotProven))))
        _ = link
    }

    // MARK: 4. Only authenticated state changes

    @Test("4. One opening from a fresh instance neither ends nor wedges a connected pair (both modes)")
    func freshInstanceIntoConnectedPair() throws {
        for password in [Self.password, nil] as [String?] {
            let chat = InMemoryChat()
            chat.addSession(password: password)
            chat.addSession(password: password)
            let stranger = Self.session(password == nil ? nil : "guessed-wrong")
            let pump = Pump([stranger])
            pump.join()
            let opening = try #require(pump.sent(0).last { $0.kind == .pake || $0.kind == .keyExchange })
            chat.inject(WireCodec.encode(RelayMessage.signal(opening)), to: 0)
            chat.advance(by: .seconds(5))
            chat.send(0, "still here")
            chat.send(1, "still listening")
            #expect(chat.received(1).last == "still here", "\(password == nil ? "x25519" : "cpace")")
            #expect(chat.received(0).last == "still listening")
            #expect(chat.sessions.allSatisfy { $0.state == .connected })
            #expect(chat.ended(0).isEmpty)
        }
    }

    @Test("4. A forged hello with a huge epoch does not make the real peer's next hellos stale")
    func hugeEpochDoesNotWedge() throws {
        let chat = InMemoryChat()
        var bobHello: Signal?
        chat.tap = { to, frame in
            if to == 0, bobHello == nil, case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame),
               signal.kind == .keyExchange {
                bobHello = signal
            }
            return [frame]
        }
        chat.addSession()
        chat.addSession()
        var payload = try #require(bobHello?.payload)
        for index in 17..<25 { payload[index] = 0xFF }
        payload[24] = 0xFE
        let forged = Signal(kind: .keyExchange, payload: payload, key: try Forge.impostorKey(password: false))
        chat.inject(WireCodec.encode(RelayMessage.signal(forged)), to: 0)
        // Bob re-keys while the relay keeps Alice from hearing that he left.
        chat.tap = { _, frame in (try? WireCodec.decodeRelayMessage(frame)) == .peerLeft ? [] : [frame] }
        chat.disconnect(1)
        chat.connect(1)
        chat.advance(by: .seconds(20))
        #expect(chat.sessions.allSatisfy { $0.state == .connected }, "\(chat.sessions.map(\.state))")
        chat.send(1, "after the re-key")
        #expect(chat.received(0).last == "after the re-key")
    }

    @Test("4. A forged restart between the peer's confirmation and ours leaves both on the same keys (both modes)")
    func forgedRestartMidRekeyKeepsKeysInStep() throws {
        // Found by the simulator's forged-restart attacker: Bob had paired a re-key and sent his
        // confirmation; Alice took it and switched keys; then a forged hello (Alice's public
        // instance, a higher epoch) made Bob start again and wipe that pairing, so Alice's
        // confirmation found nothing and the two sides sealed under different keys for good.
        for (password, forgesHello) in [(Self.password, true), (nil, true), (Self.password, false), (nil, false)]
            as [(String?, Bool)]
        {
            let alice = Self.session(password)
            let bob = Self.session(password)
            let pump = Pump([alice, bob])
            pump.join()
            pump.run()
            #expect(alice.state == .connected && bob.state == .connected)
            // Alice reconnects without Bob hearing of it; the relay holds her confirmations back.
            var held: [Signal] = []
            var dropBobsOpenings = false
            pump.tap = { from, to, signal in
                if from == 0, signal.kind == .keyConfirm {
                    held.append(signal)
                    return []
                }
                if from == 1, dropBobsOpenings, signal.kind == .pake || signal.kind == .keyExchange { return [] }
                return [(to, signal)]
            }
            alice.handle(.transportDown, now: .zero)
            pump.join(only: 0)
            pump.run()
            #expect(alice.state == .connected, "Alice took Bob's confirmation of the re-key")
            let opening = try #require(pump.sent(0).last { $0.kind == .pake || $0.kind == .keyExchange })
            // The relay's forgery, one of two: a hello with Alice's instance, a higher epoch and a key
            // of its own; or a confirmation naming an opening of Bob's he never made (refused: it
            // must not undo his pairing either; found on the next seed, through dropAttempt). Bob's
            // next openings never reach Alice (the relay drops them).
            dropBobsOpenings = true
            let aliceEpoch = Forge.epoch(of: opening.payload!)
            if forgesHello {
                let forged = Forge.hello(
                    version: 3, instance: alice.localInstance.bytes, epoch: aliceEpoch + 5,
                    knownPeer: bob.localInstance.bytes)
                pump.deliver(
                    Signal(kind: opening.kind, payload: forged, key: try Forge.impostorKey(password: password != nil)),
                    to: 1)
            } else {
                let bobOpening = try #require(pump.sent(1).last { $0.kind == opening.kind })
                let fake = Forge.confirmation(
                    version: 3, runID: [UInt8](repeating: 7, count: 16), proof: [UInt8](repeating: 9, count: 64),
                    receiver: (bob.localInstance.bytes, Forge.epoch(of: bobOpening.payload!) + 7),
                    sender: (alice.localInstance.bytes, aliceEpoch))
                pump.deliver(Signal(kind: .keyConfirm, payload: fake), to: 1)
            }
            // Now Alice's confirmation arrives.
            for signal in held { pump.deliver(signal, to: 1) }
            _ = alice.send("after the re-key", now: .zero)
            pump.run()
            #expect(pump.received(1).last == "after the re-key",
                    "\(password == nil ? "x25519" : "cpace"), forged \(forgesHello ? "hello" : "confirmation")")
            #expect(alice.state == .connected && bob.state == .connected && pump.ended(1).isEmpty)
        }
    }

    @Test("4. A stranger that completes a handshake with the wrong password is refused; the pair stays connected")
    func wrongPasswordRekeyIsRefused() throws {
        let alice = Self.session(Self.password)
        let bob = Self.session(Self.password)
        let link = DirectLink(alice, bob)
        let number = try #require(alice.safetyNumber)
        let stranger = Self.session("guessed-wrong")
        let pump = Pump([alice, stranger])
        pump.join(only: 1)
        pump.run()  // The stranger's opening to Alice, her answer, both tags.
        #expect(pump.log[0].contains(.notice(.handshakeRefused(.passwordMismatch))))
        #expect(pump.log[0].contains(.notice(.reauthenticating(attempt: 1, of: 2))))
        #expect(alice.state == .connected && alice.safetyNumber == number)
        #expect(alice.passwordRunsUnconfirmed == 1, "the stranger's guess counts")
        link.send(0, "still with bob")
        #expect(link.received(1) == ["still with bob"])
    }

    @Test("4. A blocked handshake (every confirmation dropped) fails loudly after handshakeTimeout, not before")
    func blockedHandshakeTimesOut() {
        let link = DirectLink(Self.session(nil), Self.session(nil)) { _, signal in
            signal.kind == .keyConfirm ? [] : [signal]
        }
        link.advance(by: .seconds(85))
        #expect(link.sides.allSatisfy { $0.state == .keySetup })
        link.advance(by: .seconds(10))
        for index in 0..<2 {
            #expect(link.log[index].contains(.notice(.ended(.authenticationFailed(.handshakeTimedOut)))))
        }
    }

    @Test("A peer speaking protocol version 2 is refused at once with a typed reason, not left to stall")
    func version2Peer() throws {
        let victim = Self.session(nil)
        let pump = Pump([victim])
        pump.join()
        let hello = Forge.hello(version: 2, instance: [UInt8](repeating: 4, count: 16), epoch: 1)  // 49 bytes, as v2.
        pump.deliver(Signal(kind: .keyExchange, payload: hello, key: try Forge.impostorKey(password: false)), to: 0)
        #expect(pump.ended(0) == [.incompatiblePeer(version: 2)])
        #expect(victim.state == .destroyed)
    }

    // MARK: 5. No crash from the wire

    @Test("5a. A peer's nextExpected of UInt64.max in a handshake that does not resume cannot overflow the numbering")
    func extremeNextExpected() throws {
        let victim = Self.session(Self.password)
        let pump = Pump([victim])
        pump.join()
        let opening = try #require(pump.sent(0).last { $0.kind == .pake })
        let victimHello = try #require(opening.payload)
        let version = victimHello[0]
        let peerInstance = [UInt8](repeating: 0xEE, count: 16)
        let hello = Forge.hello(version: version, instance: peerInstance, epoch: 1,
                                knownPeer: victim.localInstance.bytes, nextExpected: .max)
        let party = try CPaceParty(
            password: try Password(Self.password), channelIdentifier: CPaceParty.channelIdentifier(room: Self.room),
            associatedData: hello, setting: .symmetric, entropy: SystemEntropy())
        pump.deliver(Signal(kind: .pake, payload: hello, key: party.share), to: 0)
        let pending = try party.receive(peerShare: try #require(opening.key), peerAssociatedData: victimHello)
        let confirm = Forge.confirmation(
            version: version, runID: Array(pending.sidOutput.prefix(16)), proof: pending.localTag,
            receiver: (victim.localInstance.bytes, Forge.epoch(of: victimHello)), sender: (peerInstance, 1))
        pump.deliver(Signal(kind: .keyConfirm, payload: confirm), to: 0)
        // Before v3 the session was now CONNECTED with its next number at 2^64 - 1, and this trapped.
        _ = victim.send("one", now: .zero)
        _ = victim.send("two", now: .zero)
        pump.run()
        let sequences = pump.sent(0).filter { $0.kind == .message }.compactMap { $0.payload.map(leadingSequence) }
        #expect(sequences.allSatisfy { $0 < 1 << 32 }, "\(sequences)")
    }

    // MARK: 6. Fresh scalars

    @Test("6. No CPace share answers two peer shares: a peer restarting again and again gets a fresh share each time")
    func noScalarReuse() throws {
        for peerByte: UInt8 in [0x01, 0xFE] {  // The victim on either side of the instance order.
            let victim = Self.session(Self.password)
            let pump = Pump([victim])
            pump.join()
            let version = try #require(pump.sent(0).last { $0.kind == .pake }?.payload?.first)
            let instance = [UInt8](repeating: peerByte, count: 16)
            for epoch in UInt64(1)...6 where victim.state != .destroyed {
                let hello = Forge.hello(version: version, instance: instance, epoch: epoch)
                let party = try CPaceParty(
                    password: try Password(Self.password),
                    channelIdentifier: CPaceParty.channelIdentifier(room: Self.room), associatedData: hello,
                    setting: .symmetric, entropy: SystemEntropy())
                pump.deliver(Signal(kind: .pake, payload: hello, key: party.share), to: 0)
            }
            // Each KEY_CONFIRM the victim sent came from one pairing; each pairing used a share of
            // its own: no more distinct runs than distinct shares announced.
            let shares = Set(pump.sent(0).filter { $0.kind == .pake }.compactMap(\.key))
            let runs = Set(pump.sent(0).filter { $0.kind == .keyConfirm }.compactMap { $0.payload.map { Array($0.prefix(16)) } })
            #expect(runs.count <= shares.count, "\(runs.count) pairings on \(shares.count) shares")
        }
    }
}

// MARK: - Tools of the attacking relay

/// Sessions wired to each other directly, with the relay's hand on every SIGNAL: `tap` sees each
/// one (from, to) and says where copies go.
final class Pump {
    let sessions: [SessionManager]
    private(set) var log: [[SessionOutput]]
    var tap: ((_ from: Int, _ to: Int, _ signal: Signal) -> [(Int, Signal)])?

    init(_ sessions: [SessionManager]) {
        self.sessions = sessions
        log = sessions.map { _ in [] }
    }

    /// Every session (or only `only`) connects and hears that the room is full: it opens (its
    /// opening waits for `run`, or `sent` to look at it).
    func join(only: Int? = nil) {
        for index in sessions.indices where only == nil || only == index {
            sessions[index].handle(.transportUp, now: .zero)
            sessions[index].handle(.frame(WireCodec.encode(RelayMessage.joined(room: InMemoryChat.room, peers: 2))),
                                   now: .zero)
        }
    }

    func deliver(_ signal: Signal, to index: Int) {
        sessions[index].handle(.frame(WireCodec.encode(RelayMessage.signal(signal))), now: .zero)
        run()
    }

    /// Move SIGNALs between sessions 0 and 1 until nothing moves (bounded).
    func run() {
        for _ in 0..<1000 {
            var moved = false
            for from in sessions.indices {
                let fresh = collect(from)
                guard sessions.count == 2 else { continue }
                for signal in fresh {
                    for (to, copy) in tap?(from, 1 - from, signal) ?? [(1 - from, signal)] {
                        moved = true
                        sessions[to].handle(.frame(WireCodec.encode(RelayMessage.signal(copy))), now: .zero)
                    }
                }
            }
            if !moved { return }
        }
    }

    @discardableResult
    private func collect(_ index: Int) -> [Signal] {
        let outputs = sessions[index].drainOutputs()
        log[index] += outputs
        return Forge.signals(outputs)
    }

    func sent(_ index: Int) -> [Signal] {
        collect(index)
        return Forge.signals(log[index])
    }

    func received(_ index: Int) -> [String] {
        log[index].compactMap { if case let .received(message) = $0 { message.text } else { nil } }
    }

    func ended(_ index: Int) -> [SessionEndReason] {
        collect(index)
        return log[index].compactMap { if case let .notice(.ended(reason)) = $0 { reason } else { nil } }
    }
}

/// Frames a relay can make: hellos in the victim's own version's layout, confirmations.
enum Forge {
    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
    }

    /// A hello payload (docs/PROTOCOL.md): version, instance, epoch, the conversation remembered,
    /// the next number expected from it; from version 3 on, the count of retained-secret ids (0).
    static func hello(
        version: UInt8, instance: [UInt8], epoch: UInt64, knownPeer: [UInt8] = [UInt8](repeating: 0, count: 16),
        nextExpected: UInt64 = 1
    ) -> [UInt8] {
        var bytes = [version] + instance + bigEndian(epoch) + knownPeer + bigEndian(nextExpected)
        if version >= 3 { bytes.append(0) }
        return bytes
    }

    static func epoch(of hello: [UInt8]) -> UInt64 {
        leadingSequence(Array(hello[17..<25]))
    }

    /// A KEY_CONFIRM payload: the run id, from version 3 on the two openings it pairs (the
    /// receiver's, then the sender's: instance and epoch each), then the proof.
    static func confirmation(
        version: UInt8, runID: [UInt8], proof: [UInt8], receiver: ([UInt8], UInt64), sender: ([UInt8], UInt64)
    ) -> [UInt8] {
        guard version >= 3 else { return runID + proof }
        return runID + receiver.0 + bigEndian(receiver.1) + sender.0 + bigEndian(sender.1) + proof
    }

    /// A valid X25519 key or ristretto255 share of the relay's own.
    static func impostorKey(password: Bool) throws -> [UInt8] {
        guard password else { return KeyManager().generateKeyPair(entropy: SystemEntropy()).bytes }
        return try CPaceParty(
            password: try Password("guessed-wrong"), channelIdentifier: CPaceParty.channelIdentifier(room: InMemoryChat.room),
            associatedData: [], setting: .symmetric, entropy: SystemEntropy()).share
    }

    static func signals(_ outputs: some Sequence<SessionOutput>) -> [Signal] {
        outputs.compactMap { output -> Signal? in
            guard case let .transmit(frame) = output, case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame)
            else { return nil }
            return signal
        }
    }
}

/// Entropy whose first bytes are chosen (an instance ID to impersonate), then the system's.
final class ScriptedEntropy: EntropySource {
    private var prefix: [UInt8]
    private let system = SystemEntropy()

    init(prefix: [UInt8]) {
        self.prefix = prefix
    }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard !prefix.isEmpty, buffer.count <= prefix.count else {
            system.fill(buffer)
            return
        }
        for index in 0..<buffer.count { buffer[index] = prefix[index] }
        prefix.removeFirst(buffer.count)
    }
}
