import CClientSupport
import ClientCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Hands events from the network threads to the client's single UI thread.
///
/// Transport callbacks run on SwiftNIO's event loop; the session, the terminal and the timers
/// live on the thread that runs `ClientShell`. `post` appends under a lock and writes a byte to
/// a pipe that the shell polls, so the shell wakes at once and takes the events in order.
public final class Mailbox: Sendable {
    /// Most events waiting. Past it, frames, pings and pongs are dropped (and counted): the
    /// session's retransmission recovers frames, a ping unanswered or a pong missed costs at most
    /// a reconnection, and the relay's rate limits make it unreachable in practice; connection
    /// events are always kept.
    public static let capacity = 8192

    private struct State {
        var events: [ClientEvent] = []
        var dropped = 0
    }

    private let state = Mutex(State())
    /// The read end (polled by the shell) and the write end of the wake-up pipe.
    public let readFD: Int32
    private let writeFD: Int32

    public init() {
        var fds: [Int32] = [-1, -1]
        let result = scl_pipe_nonblocking(&fds)
        precondition(result == 0, "pipe2 failed: errno \(errno)")
        readFD = fds[0]
        writeFD = fds[1]
    }

    deinit {
        Glibc.close(readFD)
        Glibc.close(writeFD)
    }

    /// Queue an event for the shell (any thread).
    public func post(_ event: ClientEvent) {
        let accepted = state.withLock { state -> Bool in
            if event.isDroppable, state.events.count >= Self.capacity {
                state.dropped += 1
                return false
            }
            state.events.append(event)
            return true
        }
        guard accepted else { return }
        var byte: UInt8 = 1
        // A full pipe already means "wake up"; the event itself is in the list.
        _ = Glibc.write(writeFD, &byte, 1)
    }

    /// Take every queued event (the shell's thread, when `readFD` is readable).
    func take() -> [ClientEvent] {
        var sink = [UInt8](repeating: 0, count: 256)
        // Bounded: the pipe holds at most its buffer size; stop at the first short read.
        for _ in 0..<1024 {
            let count = Glibc.read(readFD, &sink, sink.count)
            if count < sink.count { break }
        }
        return state.withLock { state in
            defer { state.events.removeAll(keepingCapacity: true) }
            return state.events
        }
    }

    /// Frames (pings and pongs included) dropped because the mailbox was full.
    public var droppedFrames: Int { state.withLock { $0.dropped } }
}

extension ClientEvent {
    /// What a full mailbox may drop: what the relay sends (a relay could flood pings), never the
    /// connection's own events.
    fileprivate var isDroppable: Bool {
        switch self {
        case .transportFrame, .transportPing, .transportPong: true
        case .start, .transportUp, .transportClosed, .transportFailed, .line, .unreadableLine, .endOfInput, .signal:
            false
        }
    }
}
