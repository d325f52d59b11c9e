@_spi(Testing) import ChatCore
import Testing

/// Key wiping checked in memory: every guarded buffer two sessions allocate is watched
/// (`SecureBytesObserver`), and after `quit` each is either released (its memory zeroed when it
/// went back) or still allocated holding only zeros. A key, a password copy or a message left
/// behind is a non-zero buffer.
@Suite("Session: quit leaves no secret in memory")
struct SessionWipeTests {
    static func nonZero(_ buffers: [SecureBytes]) -> Int {
        buffers.filter { $0.testCopy.contains { $0 != 0 } }.count
    }

    @Test("After quit, every guarded buffer the sessions allocated is zero, in both modes", arguments: [nil, "apple-banana"])
    func quitLeavesOnlyZeros(password: String?) throws {
        let observer = SecureBytesObserver()
        let chat = InMemoryChat()
        var secretsBeforeQuit = 0
        SecureBytes.observingAllocations(observer) {
            chat.addSession(password: password)
            chat.addSession(password: password)
            chat.send(0, "a secret from 0")
            chat.send(1, "a secret from 1")
            // One message still queued at quit: the relay drops it, so it is never acknowledged.
            // Both sessions stay CONNECTED, their keys live, until quit.
            chat.tap = { to, frame in to == 1 ? [] : [frame] }
            chat.send(0, "never delivered")
            secretsBeforeQuit = Self.nonZero(observer.liveBuffers())
            for session in chat.sessions { session.handle(.quit, now: chat.now) }
        }
        #expect(chat.received(1) == ["a secret from 0"])
        #expect(chat.sessions.allSatisfy { $0.state == .destroyed })
        // The observer saw the secrets while the sessions ran (each ratchet's four keys, the
        // password copies, the queued text), so a zero count below is a finding, not a blind spot.
        #expect(secretsBeforeQuit >= 9, "only \(secretsBeforeQuit) non-zero buffers before quit")
        #expect(observer.releasesNotZeroed == 0, "memory handed back with secret bytes in it")
        let live = observer.liveBuffers()
        #expect(Self.nonZero(live) == 0,
                "\(Self.nonZero(live)) of \(live.count) live buffers still hold secrets after quit")
        withExtendedLifetime(chat) {}
    }
}
