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
///
/// Bounded in bytes, with backpressure: what the relay sends (frames, pings, pongs) is counted
/// (`relayEventCost`), and once `relayBytesMax` is queued `postFromRelay` tells the connection to
/// stop reading until the shell has taken the queue, so TCP slows the relay down instead of this
/// process holding what a relay pushes (a malicious one could push hundreds of MiB before).
public final class Mailbox: Sendable {
    /// Most events waiting. Past it, frames, pings and pongs are dropped (and counted): the
    /// session's retransmission recovers frames, a ping unanswered or a pong missed costs at most
    /// a reconnection. Backpressure stops reading long before (at half), so only the rest of the
    /// read batch in hand can get here; connection events are always kept.
    public static let capacity = 8192
    /// The default bound on what the relay's events may hold: 8 MiB.
    public static let relayBytesMaxDefault = 8 << 20
    /// What an event from the relay is charged beyond its payload: the event, the array header
    /// and the allocator's share (so that a flood of empty frames is bounded by bytes too).
    static let eventOverheadBytes = 64

    private struct State {
        var events: [ClientEvent] = []
        var dropped = 0
        /// What the relay's events are charged (`relayEventCost`), queued or taken by the shell
        /// and not yet processed, and how many they are.
        var relayBytes = 0
        var relayEvents = 0
        /// The part of those the shell has taken (lifted by `processed()`).
        var takenBytes = 0
        var takenEvents = 0
        /// Connections that stopped reading, to be told when the shell has taken the queue
        /// (bounded: one per connection, and the shell keeps at most a few).
        var paused: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())
    /// The bound on what the relay's queued events are charged; reading stops past it.
    public let relayBytesMax: Int
    /// The read end (polled by the shell) and the write end of the wake-up pipe.
    public let readFD: Int32
    private let writeFD: Int32

    public init(relayBytesMax: Int = Mailbox.relayBytesMaxDefault) {
        precondition(relayBytesMax >= 128 << 10, "the mailbox needs room for a whole frame")
        self.relayBytesMax = relayBytesMax
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
        _ = postFromRelay(event, resume: nil)
    }

    /// Queue an event from a connection (any thread). Returns false when the connection must
    /// stop reading: the queue holds `relayBytesMax` (or half of `capacity` events) of what the
    /// relay sent. `resume` is then called, once, when the shell has processed the queue.
    public func postFromRelay(_ event: ClientEvent, resume: (@Sendable () -> Void)?) -> Bool {
        let cost = event.relayEventCost
        let (accepted, keepReading) = state.withLock { state -> (Bool, Bool) in
            if cost != nil, state.events.count >= Self.capacity {
                state.dropped += 1
                return (false, false)
            }
            state.events.append(event)
            guard let cost else { return (true, true) }
            state.relayBytes += cost
            state.relayEvents += 1
            guard state.relayBytes >= relayBytesMax || state.relayEvents >= Self.capacity / 2 else {
                return (true, true)
            }
            if let resume { state.paused.append(resume) }
            return (true, false)
        }
        if accepted {
            var byte: UInt8 = 1
            // A full pipe already means "wake up"; the event itself is in the list.
            _ = Glibc.write(writeFD, &byte, 1)
        }
        return keepReading
    }

    /// Take every queued event (the shell's thread, when `readFD` is readable). They stay
    /// charged until `processed()`, so the shell's batch in hand counts toward the bound too.
    func take() -> [ClientEvent] {
        var sink = [UInt8](repeating: 0, count: 256)
        // Bounded: the pipe holds at most its buffer size; stop at the first short read.
        for _ in 0..<1024 {
            let count = Glibc.read(readFD, &sink, sink.count)
            if count < sink.count { break }
        }
        return state.withLock { state in
            defer { state.events.removeAll(keepingCapacity: true) }
            state.takenBytes = state.relayBytes
            state.takenEvents = state.relayEvents
            return state.events
        }
    }

    /// The shell has handled what it took: their charge is lifted, and connections that stopped
    /// reading read again once the queue is under its bound.
    func processed() {
        let resumes = state.withLock { state -> [@Sendable () -> Void] in
            state.relayBytes -= state.takenBytes
            state.relayEvents -= state.takenEvents
            state.takenBytes = 0
            state.takenEvents = 0
            guard state.relayBytes < relayBytesMax && state.relayEvents < Self.capacity / 2 else { return [] }
            defer { state.paused.removeAll() }
            return state.paused
        }
        for resume in resumes { resume() }
    }

    /// Frames (pings and pongs included) dropped because the mailbox was full.
    public var droppedFrames: Int { state.withLock { $0.dropped } }

    /// What the relay's queued events are charged right now (tests).
    public var queuedRelayBytes: Int { state.withLock { $0.relayBytes } }
}

extension ClientEvent {
    /// What an event from the relay is charged in the mailbox (payload plus overhead); nil for
    /// the connection's own events and the user's, which are never dropped or counted.
    fileprivate var relayEventCost: Int? {
        switch self {
        case let .transportFrame(_, bytes), let .transportBinaryFrame(_, bytes), let .transportPing(_, bytes):
            bytes.count + Mailbox.eventOverheadBytes
        case .transportPong: Mailbox.eventOverheadBytes
        case .start, .transportUp, .transportBinarySignals, .transportWritable, .transportClosed, .transportFailed,
            .line, .unreadableLine, .endOfInput, .signal:
            nil
        }
    }
}
