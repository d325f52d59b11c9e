import ChatCore
import RelayCore
import Testing

@testable import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// One driver fed by hand, for exact timings: the test plays the shell and the relay.
final class LoneDriver {
    let driver: ClientDriver
    private(set) var now = Instant.zero
    /// Every action since the last `take()`.
    private var taken: [ClientAction] = []

    init(keepalive: Duration = .seconds(15), giveUpAfter: Duration = .seconds(300), interactive: Bool = false) {
        driver = ClientDriver(
            configuration: DriverConfiguration(
                session: SessionConfiguration(room: try! RoomCode("LONE1")), interactive: interactive,
                giveUpAfter: giveUpAfter, keepalive: keepalive),
            entropy: SystemEntropy())
    }

    func handle(_ event: ClientEvent) {
        driver.handle(event, now: now)
        taken += driver.drainActions()
    }

    /// Move the clock to `seconds` after the origin, running every timer due on the way, in order.
    func run(until seconds: Double) {
        let end = Instant(nanoseconds: UInt64(seconds * 1e9))
        for _ in 0..<100_000 {
            guard let due = driver.pollTimeout(), due <= end else { break }
            now = max(now, due)
            driver.handleTimeout(now: now)
            taken += driver.drainActions()
        }
        now = max(now, end)
    }

    func take() -> [ClientAction] {
        defer { taken.removeAll() }
        return taken
    }

    /// Start and open connection 1; returns its id.
    func startAndOpen() -> ConnectionID {
        handle(.start)
        let id = ConnectionID(1)
        #expect(take().contains(.connect(id)))
        handle(.transportUp(id))
        _ = take()
        return id
    }
}

extension [ClientAction] {
    var pings: [ConnectionID] { compactMap { if case let .ping(id) = $0 { id } else { nil } } }
    var closes: [ConnectionID] { compactMap { if case let .close(id) = $0 { id } else { nil } } }
    var connects: [ConnectionID] { compactMap { if case let .connect(id) = $0 { id } else { nil } } }
    var notices: [ClientNotice] {
        compactMap { if case let .display(.notice(notice)) = $0 { notice } else { nil } }
    }
}

@Suite("ClientDriver: keepalive, connect timeout, give-up, exit")
struct ClientDriverLinkTests {
    @Test("Keepalive: a ping after the interval of silence, the link closed as dead after as long again, then a retry")
    func keepaliveDead() {
        let lone = LoneDriver(keepalive: .seconds(15))
        let id = lone.startAndOpen()
        lone.run(until: 14.9)
        #expect(lone.take().pings.isEmpty)
        #expect(lone.driver.pollTimeout()! <= Instant(nanoseconds: 15_000_000_000))
        lone.run(until: 15)
        #expect(lone.take().pings == [id])
        lone.run(until: 29.9)
        let quiet = lone.take()
        #expect(quiet.pings.isEmpty && quiet.closes.isEmpty)
        lone.run(until: 30)
        let dead = lone.take()
        #expect(dead.closes == [id])
        #expect(dead.notices.map(\.kind) == [.relayLost, .retrying])
        #expect(dead.notices.first?.text
            == "connection to the relay lost (the relay stopped answering: no reply to a ping within 15 s)")
        #expect(lone.driver.session.state == .disconnected)
        // The usual reconnect follows (the first delay is drawn from 0...500 ms, so it may already
        // have been made at 30 s).
        lone.run(until: 30.5)
        #expect((dead + lone.take()).connects == [ConnectionID(2)])
        // The dead connection's end, reported late, changes nothing.
        lone.handle(.transportClosed(id, reason: "closed by this client"))
        #expect(lone.take().isEmpty)
    }

    @Test("Keepalive: any frame on the link resets it (a pong, a ping, a text frame); stale frames do not")
    func keepaliveReset() {
        let lone = LoneDriver(keepalive: .seconds(10))
        let id = lone.startAndOpen()
        lone.run(until: 8)
        lone.handle(.transportPong(id))  // Unsolicited, still a sign of life.
        lone.run(until: 17.9)
        #expect(lone.take().pings.isEmpty)
        lone.run(until: 18)
        #expect(lone.take().pings == [id])
        // A text frame after the ping cancels the death sentence.
        lone.run(until: 25)
        lone.handle(.transportFrame(id, WireCodec.encode(RelayMessage.joined(room: try! RoomCode("LONE1"), peers: 1))))
        #expect(lone.take().notices.map(\.kind) == [.joined])
        lone.run(until: 34.9)
        #expect(lone.take().closes.isEmpty)
        lone.run(until: 35)
        #expect(lone.take().pings == [id])
        // Frames of another connection say nothing about this one.
        lone.run(until: 40)
        _ = lone.take()
        lone.handle(.transportPong(ConnectionID(99)))
        lone.handle(.transportPing(ConnectionID(99), [1]))
        #expect(lone.take().isEmpty)
        lone.run(until: 45)
        #expect(lone.take().closes == [id])
    }

    @Test("Keepalive: the relay's ping is answered with its payload, and counts as a frame")
    func pongAnswered() {
        let lone = LoneDriver(keepalive: .seconds(15))
        let id = lone.startAndOpen()
        lone.run(until: 10)
        _ = lone.take()
        lone.handle(.transportPing(id, [1, 2, 3]))
        #expect(lone.take() == [.pong(id, [1, 2, 3])])
        lone.run(until: 24.9)
        #expect(lone.take().pings.isEmpty)
        lone.run(until: 25)
        #expect(lone.take().pings == [id])
    }

    @Test("No keepalive timer without an open link; none after the link closed for good")
    func keepaliveOnlyWhenUp() {
        let lone = LoneDriver(keepalive: .seconds(1))
        lone.handle(.start)
        _ = lone.take()
        // Connecting: only the connect timeout (25 s) runs, no ping.
        lone.run(until: 24)
        #expect(lone.take().pings.isEmpty)
        lone.run(until: 25)
        let timedOut = lone.take()
        #expect(timedOut.closes == [ConnectionID(1)])
        let text = "cannot reach the relay: no answer within 25 s; check the address in --relay and any firewall "
            + "in between"
        #expect(timedOut.notices.map(\.text).first == text)
        lone.handle(.signal(SIGTERM))
        #expect(lone.take().last == .exit(.signal(SIGTERM)))
        #expect(lone.driver.pollTimeout() == nil)
    }

    @Test("A relay frozen mid-session (SIGSTOP): both drivers ping, drop the link, retry, and resume after it thaws")
    func frozenRelay() {
        let harness = DriverHarness()
        let alice = harness.add(keepalive: .seconds(2))
        let bob = harness.add(keepalive: .seconds(2))
        harness.line(alice, "before the freeze")
        harness.advance(by: .seconds(10))
        #expect(harness.pings[alice] >= 3, "a quiet relay is pinged every 2 s and answers")
        #expect(!harness.notices(alice).contains(.relayLost))
        harness.relayFrozen = true
        harness.advance(by: .seconds(6))
        for index in [alice, bob] {
            #expect(harness.noticeTexts(index, .relayLost)
                == ["connection to the relay lost (the relay stopped answering: no reply to a ping within 2 s)"])
        }
        harness.line(alice, "typed while the relay was frozen")
        harness.relayFrozen = false
        harness.advance(by: .seconds(60))
        for index in [alice, bob] {
            #expect(harness.notices(index).contains(.reconnected) && harness.state(index) == .connected)
        }
        #expect(harness.messages(bob) == ["before the freeze", "typed while the relay was frozen"])
    }

    @Test("Give-up counts from the loss of a link the relay had accepted, and a join restarts it")
    func giveUpAfterLoss() {
        let harness = DriverHarness()
        harness.relayUp = false
        let alice = harness.add(giveUpAfter: .seconds(10))
        harness.advance(by: .seconds(7))
        harness.relayUp = true
        harness.advance(by: .seconds(5))  // Joins: the give-up clock stops.
        #expect(harness.notices(alice).contains(.joined))
        harness.advance(by: .seconds(60))  // Long after the first 10 s: still in.
        harness.crashRelay()
        harness.advance(by: .seconds(9))
        #expect(harness.exits[alice] == nil, "7 s down before the join do not count")
        harness.advance(by: .seconds(3))
        #expect(harness.exits[alice] == .connectionFailed)
        #expect(harness.noticeTexts(alice, .gaveUp) == ["giving up: no relay for 10 s"])
        #expect(harness.drivers[alice].status.relay == .closed)
    }

    @Test("Pipe mode: draining survives a relay crash; the message goes after the reconnect, then exit 0")
    func drainAcrossReconnect() {
        let harness = DriverHarness()
        let alice = harness.add(drainTimeout: .seconds(60))
        harness.line(alice, "for whoever comes")
        harness.handle(alice, .endOfInput)
        harness.crashRelay()
        harness.advance(by: .seconds(3))
        #expect(harness.exits[alice] == nil)
        harness.relayUp = true
        harness.advance(by: .seconds(40))
        let bob = harness.add()
        harness.advance(by: .seconds(5))
        #expect(harness.messages(bob) == ["for whoever comes"])
        #expect(harness.exits[alice] == .success)
    }

    @Test("Exit statuses: SIGHUP and SIGQUIT give 128 + n and name the signal; SIGINT is a quit key")
    func exitStatuses() {
        for (signal, status, why) in [
            (SIGHUP, ClientExitStatus.signal(SIGHUP), "signal 1"), (SIGQUIT, .signal(SIGQUIT), "signal 3"),
            (SIGINT, .success, "you left"),
        ] {
            let lone = LoneDriver()
            _ = lone.startAndOpen()
            lone.handle(.signal(signal))
            let actions = lone.take()
            #expect(actions.last == .exit(status))
            #expect(actions.notices.last?.text == "session ended (\(why)); keys wiped")
            #expect(lone.driver.hasExited)
        }
        #expect(ClientEvent.interruptSignal == SIGINT)
        #expect([ClientExitStatus.success, .usage, .relayRefused, .connectionFailed, .undelivered,
                 .internalFailure, .authenticationFailed, .signal(SIGHUP), .signal(SIGTERM)].map(\.code)
            == [0, 1, 2, 3, 4, 5, 6, 129, 143])
    }

    @Test("After the exit action: no timer, and every input is ignored")
    func nothingAfterExit() {
        let lone = LoneDriver()
        let id = lone.startAndOpen()
        lone.handle(.endOfInput)
        #expect(lone.take().last == .exit(.success))
        for event: ClientEvent in [.line("late"), .transportPing(id, []), .transportClosed(id, reason: "x"),
                                   .signal(SIGTERM), .endOfInput, .start] {
            lone.handle(event)
        }
        lone.run(until: 1_000)
        #expect(lone.take().isEmpty)
        #expect(lone.driver.status.relay == .closed)
    }

    @Test("A permanent failure after a reconnect ends at once with exit 3 (no retry)")
    func permanentAfterLoss() {
        let lone = LoneDriver()
        let id = lone.startAndOpen()
        lone.handle(.transportClosed(id, reason: "reset"))
        lone.run(until: 1)
        #expect(lone.take().connects == [ConnectionID(2)])
        #expect(lone.driver.status.relay == .retrying)
        let untrusted = TransportFailure(reason: "TLS: bad certificate", permanent: true)
        lone.handle(.transportFailed(ConnectionID(2), untrusted))
        let actions = lone.take()
        #expect(actions.notices.map(\.text).first == "cannot use the relay: TLS: bad certificate")
        #expect(actions.last == .exit(.connectionFailed))
    }
}
