import ChatCore
import RelayCore
import Foundation
import FuzzHarness
import Testing

/// One named test per bug the fuzzers found: the minimised input from FuzzTesting/Regressions
/// through its harness, plus the same scenario written out readably with its specific checks.
@Suite("Fuzz regressions")
struct RegressionTests {
    static func input(_ target: String, _ name: String) throws -> Data {
        try Data(contentsOf: CorpusReplayTests.fuzzTesting.appendingPathComponent("Regressions")
            .appendingPathComponent(target).appendingPathComponent(name))
    }

    /// FuzzRelayFrame: a key of one letter and many combining accents (one Character) made the
    /// relay answer with an ERROR whose message exceeded the 256 bytes a client accepts, because
    /// error descriptions cut untrusted text at 32 Characters instead of 32 bytes.
    @Test("Regression: the relay's ERROR for a key of combining marks is readable by a client")
    func errorReplyOverLimit() throws {
        let data = try Self.input("FuzzRelayFrame", "error-reply-over-256-bytes-combining-key.json")
        data.withUnsafeBytes { fuzzRelayFrame($0) }
        var rooms = RelayRooms<Int>()
        let actions = rooms.receive(frame: [UInt8](data), from: 7)
        guard case let .send(to: 7, reply)? = actions.first, case let .error(code, message) = reply else {
            Issue.record("expected an ERROR reply, got \(actions)")
            return
        }
        #expect(code == .unknownField)
        #expect(message.utf8.count <= WireLimits.default.errorMessageMaxBytes)
        #expect(try WireCodec.decodeRelayMessage(WireCodec.encode(reply)) == reply)
    }

    /// FuzzSessionWorld (then called FuzzSession): a connection blip during the handshake (both JOINs reach the relay, then one
    /// side's connection drops before anything else is delivered, then it reconnects) made each
    /// side see the other's fresh KEY_EXCHANGE as a restart and answer with a fresh one of its own,
    /// forever: the network never settled and the handshake never completed.
    @Test("Regression: a reconnect during the handshake does not make the two sides re-key forever")
    func handshakePingPong() throws {
        let data = try Self.input("FuzzSessionWorld", "handshake-ping-pong-after-reconnect.bin")
        data.withUnsafeBytes { fuzzSessionWorld($0) }

        // Without a password (X25519) and with one (CPace, whose share is answered again the same way).
        for configuration in [ChatWorld.Configuration.small, .smallWithPassword] {
            let world = ChatWorld(configuration: configuration)
            for step: WorldStep in [.transportUp(side: 0), .transportUp(side: 1), .deliverUp(side: 0),
                                    .deliverUp(side: 1), .transportDown(side: 0), .transportUp(side: 0), .settle] {
                world.apply(step)
            }
            // Side 0's first JOIN seated it, and the JOINED with its seat's token was lost with the
            // connection: the relay keeps that seat reserved (30 s) while side 0 asks again.
            world.heal()
            #expect(world.violations.isEmpty, "\(world.violations)")
            let connectsAndChats = {
                #expect(world.processes.map(\.session.state) == [.connected, .connected])
                #expect(world.processes[0].session.safetyNumber == world.processes[1].session.safetyNumber)
                // And a message crosses in each direction.
                world.send(0, Array("ping".utf8))
                world.send(1, Array("pong".utf8))
                world.settle()
                #expect(world.processes[0].shown.count == 1 && world.processes[1].shown.count == 1)
            }
            connectsAndChats()
            #expect(world.violations.isEmpty, "\(world.violations)")
        }
    }

    /// FuzzSession, issue 12 item 5a: a peer holding the password opens claiming to remember the
    /// victim's conversation (knownPeer = the victim) and to expect message 2^64 - 1 next, in a
    /// handshake that does not resume (the victim never met this instance), and confirms with the
    /// right run id and tag. The victim renumbered its sending from 2^64 - 1 and the next message
    /// overflowed the counter (a trap). Now the resume point is bounded by what the victim
    /// numbered: the confirmation is refused (inconsistentResume) and nothing is numbered.
    @Test("Regression 5a: a peer's nextExpected of UInt64.max in a non-resumed handshake is refused, no overflow")
    func extremeNextExpected() throws {
        let data = try Self.input("FuzzSession", "next-expected-max-non-resumed.bin")
        data.withUnsafeBytes { fuzzSession($0) }
        let (password, ops) = decodeSessionProgram([UInt8](data))
        #expect(password)
        let run = SessionRun(password: password)
        for op in ops { run.apply(op) }
        #expect(run.violations.isEmpty, "\(run.violations)")
        #expect(run.rejections.contains(.handshake(.inconsistentResume)), "\(run.rejections)")
        #expect(run.victim.state == .keySetup)
        #expect(run.victim.pendingCount == 1, "the message waits for keys; it was never numbered 2^64 - 1")
    }

    /// FuzzSession, issue 12 item 5b: the same kind of confirmation (a verified CPace tag for a
    /// pairing the conversation refuses as an inconsistent resume) delivered twice. The repeat
    /// reached a `preconditionFailure` ("a pairing without a password has its ratchet and
    /// transcript"). Now a verified pairing keeps its keys, and the repeat is judged (and refused)
    /// again.
    @Test("Regression 5b: a KEY_CONFIRM repeated after an inconsistentResume rejection is refused again, no trap")
    func repeatedConfirmationAfterInconsistentResume() throws {
        let data = try Self.input("FuzzSession", "confirmation-repeated-after-inconsistent-resume.bin")
        data.withUnsafeBytes { fuzzSession($0) }
        let (password, ops) = decodeSessionProgram([UInt8](data))
        let run = SessionRun(password: password)
        for op in ops { run.apply(op) }
        #expect(run.violations.isEmpty, "\(run.violations)")
        #expect(run.rejections.filter { $0 == .handshake(.inconsistentResume) }.count >= 2, "\(run.rejections)")
        #expect(run.victim.state == .keySetup)
        #expect(run.victim.statistics.handshakesCompleted == 0)
    }

    /// Seat reservation: a process that restarts (new keys, no token) finds its old seat reserved
    /// for the token it lost with its previous process. The relay says SEAT_RESERVED, and the new
    /// process keeps asking until the reservation ends instead of giving up on the first refusal
    /// as it did on ROOM_FULL (it exited 2 at once after a crash).
    @Test("A restarted process waits out its old seat's reservation and rejoins", arguments: [false, true])
    func restartedProcessRejoins(password: Bool) {
        let world = ChatWorld(configuration: password ? .smallWithPassword : .small)
        world.settle()
        #expect(world.processes.map(\.session.state) == [.connected, .connected])
        world.restart(0)
        world.settle()
        #expect(world.processes[0].session.state == .searching, "the old seat is still reserved")
        world.heal()
        #expect(world.violations.isEmpty, "\(world.violations)")
        #expect(world.processes.map(\.session.state) == [.connected, .connected])
        world.send(0, Array("back".utf8))
        world.settle()
        #expect(world.processes[1].shown.count == 1)
    }
}
