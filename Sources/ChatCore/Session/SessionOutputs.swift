/// What a session has to tell its shell, oldest first, and the counters behind its statistics.
///
/// The coordinator and the reliable channel append to it in the order things happen (the
/// simulator's trace hash covers that order); the shell drains it after every input.
struct SessionOutputs {
    private var pending: [SessionOutput] = []
    var statistics = SessionManager.Statistics()

    mutating func append(_ output: SessionOutput) {
        pending.append(output)
    }

    /// Send this frame to the relay.
    mutating func transmit(_ frame: [UInt8]) {
        pending.append(.transmit(frame))
    }

    mutating func notice(_ notice: SessionNotice) {
        pending.append(.notice(notice))
    }

    /// A frame was refused: count it and tell the UI why.
    mutating func reject(_ rejection: FrameRejection) {
        statistics.framesRejected += 1
        pending.append(.notice(.frameRejected(rejection)))
    }

    /// The oldest output, or nil when there is none.
    mutating func next() -> SessionOutput? {
        pending.isEmpty ? nil : pending.removeFirst()
    }

    /// Every output, oldest first.
    mutating func drain() -> [SessionOutput] {
        defer { pending.removeAll(keepingCapacity: true) }
        return pending
    }
}
