@testable import ChatClient
import ChatCore
import ClientCore
import Synchronization
import Testing

/// The client's mailbox: what the relay sends is bounded in bytes, with backpressure (the
/// connection stops reading until the shell has processed the queue).
@Suite("Client: the mailbox's byte bound")
struct MailboxTests {
    static let id = ConnectionID(1)

    @Test("Past the byte bound the connection is told to stop reading, once; it resumes when the shell has processed the queue")
    func byteBoundAndResume() {
        let mailbox = Mailbox(relayBytesMax: 1 << 20)
        let resumed = Mutex(0)
        let frame = [UInt8](repeating: 0x41, count: 64 << 10)
        var posted = 0
        // Bounded by the mailbox's answer (16 frames of 64 KiB reach 1 MiB).
        while mailbox.postFromRelay(.transportFrame(Self.id, frame), resume: { resumed.withLock { $0 += 1 } }) {
            posted += 1
            if posted > 100 { break }
        }
        #expect(posted == 15, "the 16th frame reaches 1 MiB with the per-event overhead")
        #expect(mailbox.queuedRelayBytes >= 1 << 20)
        // The rest of a read batch still gets in (it is already read), without a second resume.
        #expect(!mailbox.postFromRelay(.transportPing(Self.id, []), resume: nil))
        // The connection's own events are never counted or refused.
        mailbox.post(.transportClosed(Self.id, reason: "test"))
        let taken = mailbox.take()
        #expect(taken.count == 18)
        #expect(resumed.withLock { $0 } == 0, "still charged while the shell handles the batch")
        mailbox.processed()
        #expect(resumed.withLock { $0 } == 1)
        #expect(mailbox.queuedRelayBytes == 0)
    }

    @Test("Empty frames are bounded too: half the event capacity stops reading; past the capacity they are dropped")
    func emptyFramesBounded() {
        let mailbox = Mailbox()
        var keepReading = true
        for _ in 0..<(Mailbox.capacity / 2) {
            keepReading = mailbox.postFromRelay(.transportPong(Self.id), resume: nil)
        }
        #expect(!keepReading)
        for _ in 0..<Mailbox.capacity { _ = mailbox.postFromRelay(.transportPing(Self.id, []), resume: nil) }
        #expect(mailbox.droppedFrames == Mailbox.capacity / 2)
        #expect(mailbox.take().count == Mailbox.capacity)
        mailbox.processed()
    }
}
