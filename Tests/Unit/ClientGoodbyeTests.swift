import ChatCore
import Testing

@testable import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// The driver's side of protocol v3: the goodbye in pipe and interactive mode, and what the user
/// is told about restarted peers, refused re-keys and spent codes.
@Suite("ClientDriver with protocol v3: goodbye, restarted peers, notices")
struct ClientGoodbyeTests {
    /// A deterministic stream of draws in 0..<100 (a linear congruential generator).
    final class Draws {
        private var state: UInt64

        init(seed: UInt64) {
            state = seed
        }

        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (state >> 33) % 100
        }
    }

    @Test("Two pipe-mode clients, 12 lines each, through a relay dropping 25% of SIGNALs: all delivered once, in order, both exit 0")
    func pipeModeThroughLossyRelay() {
        for seed: UInt64 in 1...6 {
            let harness = DriverHarness()
            let draws = Draws(seed: seed)
            harness.tap = { _, _, frame in
                // A SIGNAL has the same bytes both ways (the relay forwards it unchanged).
                guard case .signal? = try? WireCodec.decodeClientMessage(frame) else { return [frame] }
                return draws.next() < 25 ? [] : [frame]
            }
            let alice = harness.add(password: "oyster-lemon")
            let bob = harness.add(password: "oyster-lemon")
            harness.advance(by: .seconds(10))
            for index in 1...12 {
                harness.line(alice, "alice \(index)")
                harness.line(bob, "bob \(index)")
            }
            harness.handle(alice, .endOfInput)
            harness.handle(bob, .endOfInput)
            harness.advance(by: .seconds(40))
            #expect(harness.messages(bob) == (1...12).map { "alice \($0)" }, "seed \(seed)")
            #expect(harness.messages(alice) == (1...12).map { "bob \($0)" }, "seed \(seed)")
            #expect(harness.exits == [.success, .success], "seed \(seed)")
        }
    }

    @Test("/quit says goodbye: the peer's record that was held behind a lost one still arrives before the exit")
    func quitWaitsForTheGoodbye() {
        let harness = DriverHarness()
        let alice = harness.add(interactive: true)
        let bob = harness.add()
        var dropped = false
        harness.tap = { toRelay, driver, frame in
            if !toRelay, driver == alice, !dropped, case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame),
               signal.kind == .message {
                dropped = true
                return []
            }
            return [frame]
        }
        harness.line(bob, "first, lost once")
        harness.line(bob, "second, held behind it")
        harness.line(alice, "/quit")
        #expect(harness.exits[alice] == nil, "waiting for what Bob sent")
        harness.advance(by: .seconds(3))
        #expect(harness.messages(alice) == ["first, lost once", "second, held behind it"])
        #expect(harness.exits[alice] == .success)
        #expect(harness.notices(bob).contains(.peerLeaving))
        harness.line(bob, "after the goodbye")
        #expect(harness.shown[bob].contains {
            if case let .undeliverable(messages, .peerLeft) = $0 { messages.map(\.text) == ["after the goodbye"] } else { false }
        })
        #expect(harness.noticeTexts(bob, .peerLeft) == ["the peer left the chat"])
        #expect(UndeliverableReason.peerLeft.eventName == "peer_left")
    }

    @Test("A restarted peer without a password: a warning that it is a new, unverified peer; /verify starts over")
    func restartedPeerWithoutPassword() throws {
        let harness = DriverHarness()
        let alice = harness.add(interactive: true)
        let bob = harness.add()
        let number = try #require(harness.drivers[alice].session.safetyNumber)
        harness.line(alice, "/verify \(number.digits)")
        #expect(harness.drivers[alice].status.verified)
        // An honest re-key (the relay crashed) keeps the number, and so "verified".
        harness.crashRelay()
        harness.relayUp = true
        harness.advance(by: .seconds(40))
        #expect(harness.state(alice) == .connected && harness.drivers[alice].status.verified)
        // Bob's process ends; a new one joins with the same room code.
        harness.handle(bob, .signal(SIGTERM))
        let newBob = harness.add()
        harness.advance(by: .seconds(5))
        #expect(harness.state(alice) == .connected && harness.state(newBob) == .connected)
        let warnings = harness.shown[alice].compactMap { event -> ClientNotice? in
            if case let .notice(notice) = event, notice.kind == .peerRestarted { notice } else { nil }
        }
        #expect(warnings.count == 1 && warnings.first?.level == .warning)
        #expect(warnings.first?.text.contains("NEW, UNVERIFIED") == true)
        #expect(!harness.drivers[alice].status.verified)
    }

    @Test("A restarted peer with a password: re-authentication is announced as attempt 1 of 2, then a new conversation")
    func restartedPeerWithPassword() {
        let harness = DriverHarness()
        let alice = harness.add(password: "oyster-lemon")
        let bob = harness.add(password: "oyster-lemon")
        harness.handle(bob, .signal(SIGTERM))
        _ = harness.add(password: "oyster-lemon")
        harness.advance(by: .seconds(5))
        #expect(harness.state(alice) == .connected)
        #expect(harness.noticeTexts(alice, .reauthenticating)
            == ["the peer restarted: re-authenticating with the password, attempt 1 of 2"])
        #expect(harness.shown[alice].contains {
            if case let .notice(notice) = $0 { notice.kind == .peerRestarted && notice.level == .warning } else { false }
        })
        harness.handle(alice, .signal(SIGTERM))
        #expect(!harness.notices(alice).contains(.codeSpent), "every tag was confirmed")
    }

    @Test("Exit statuses of v3: 6 for every authentication failure, 7 for a peer of another protocol version")
    func exitStatuses() {
        #expect(ClientExitStatus.incompatiblePeer.code == 7)
        #expect(ClientExitStatus.helpText.contains("7    the peer runs a securechat"))
        let texts = [AuthenticationFailure.confirmationMismatch, .continuityNotProven, .handshakeTimedOut,
                     .passwordMismatch].map { ClientNotice.authenticationFailed($0).text }
        for text in texts {
            #expect(text.hasPrefix("AUTHENTICATION FAILED:"))
        }
        #expect(texts[0].contains("mistyped") && texts[0].contains("someone in the middle"))
    }
}
