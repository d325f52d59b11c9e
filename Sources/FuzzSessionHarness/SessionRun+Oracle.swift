@_spi(Simulation) import ChatCore
import ChatTesting

/// The checks on every output of the victim (see `SessionRun`).
extension SessionRun {
    func drain() {
        // Bounded: the session's outputs are finite; drained after every input.
        for output in victim.drainOutputs() {
            trace?("  \(output)")
            check(output)
        }
    }

    private func check(_ output: SessionOutput) {
        switch output {
        case let .transmit(frame): checkTransmitted(frame)
        case let .stateChanged(from, to):
            if from != state { record("change from \(from) but the state was \(state)") }
            if !Lifecycle.isLegal(from: from, to: to) { record("illegal transition \(from) → \(to)") }
            state = to
        case let .received(message): shown(message.text)
        case let .delivered(ids): resolve(ids)
        case let .undeliverable(ids, reason):
            resolve(ids)
            if reason == .sessionEnded && state != .destroyed { record("undeliverable(sessionEnded) while \(state)") }
        case let .notice(.frameRejected(rejection)):
            if rejections.count < 64 { rejections.append(rejection) }
        case .notice, .closeTransport, .file: break
        }
    }

    private func shown(_ text: String) {
        guard state == .connected else {
            record("message shown in \(state)")
            return
        }
        guard let index = fixture.peerTexts.firstIndex(of: text) else {
            record("shown a message the peer never sent: \(text.debugDescription)")
            return
        }
        if index <= shownIndex { record("shown \(text.debugDescription) again or out of order") }
        shownIndex = max(shownIndex, index)
    }

    private func resolve(_ ids: [MessageID]) {
        for id in ids {
            if id.value < 1 || id.value > UInt64(accepted) { record("\(id) reported but never accepted") }
            if !resolved.insert(id.value).inserted { record("\(id) reported twice") }
        }
    }

    private func checkTransmitted(_ frame: [UInt8]) {
        let (decoded, problems) = FrameVerdicts.shared.check(frame)
        for problem in problems { record(problem) }
        guard let message = decoded else { return }
        switch message {
        case let .join(room):
            if room != SessionFixture.configuration.room { record("joined \(room)") }
            if state != .searching { record("JOIN in \(state)") }
        case let .signal(signal):
            let allowed: [SessionState] = switch signal.kind {
            case .keyExchange, .pake, .keyConfirm: [.keySetup, .connected]
            case .message, .ack, .goodbye: [.connected]
            default: []
            }
            if !allowed.contains(state) { record("\(signal.kind) sent in \(state)") }
            if sentSignals.count == Self.remembered { sentSignals.removeFirst() }
            sentSignals.append(signal)
            if signal.kind == .pake || signal.kind == .keyExchange { latestOpening = signal }
        }
    }

    /// The session's state and pending list agree with what its outputs said.
    func checkAccounting() {
        if victim.state != state { record("session says \(victim.state), outputs said \(state)") }
        // The pending list must be exactly 1...accepted less the resolved ones, in order: compared
        // in place (this runs after every operation; building the expected list cost allocations).
        let ids = victim.pendingMessageIDs
        var index = 0
        var agrees = true
        var next = UInt64(1)
        while agrees, next <= UInt64(accepted) {  // Bounded: `accepted` steps.
            if !resolved.contains(next) {
                agrees = index < ids.count && ids[index].value == next
                index += 1
            }
            next += 1
        }
        if !agrees || index != ids.count {
            let pending = (1...max(accepted, 1)).filter { $0 <= accepted && !resolved.contains(UInt64($0)) }
                .map { MessageID(UInt64($0)) }
            record("pending \(ids), accounted \(pending)")
        }
        if victim.pendingCount > SessionFixture.configuration.sendQueueMax {
            record("\(victim.pendingCount) pending, over the cap")
        }
    }

    /// After the honest script alone: CONNECTED, every peer message shown, nothing pending.
    public func checkHonestOutcome() {
        if state != .connected { record("the honest script ends in \(state)") }
        if shownIndex != fixture.peerTexts.count - 1 { record("the honest script showed \(shownIndex + 1) messages") }
        if victim.pendingCount != 0 { record("the honest script leaves \(victim.pendingCount) pending") }
    }
}

/// One real session against a recorded peer and a forging one, driven by a program of
/// operations (`SessionOp`): deliveries of the recorded frames (in order, out of order,
/// repeated, reflected, tampered with), openings with extreme fields (instance reuse, huge
/// epochs, nextExpected up to UInt64.max) and confirmations with computed run ids, timers, the
/// user's messages, the relay's notices, reconnects, leaving. Byte 0 picks the mode (bit 0: a
/// password, CPace; else X25519). The handshakes are computed once per process (`SessionFixture`):
/// per input only the victim's crypto runs. Every output is checked (`SessionRun`).
///
/// Secrets live in ordinary heap memory here, as in the simulator: libsodium's guarded allocator
/// costs an mmap, two mprotects and an mlock per allocation (half the time per input), and keys
/// from a fixed seed protect nothing. ASan then also watches those buffers.
public func fuzzSession(_ data: UnsafeRawBufferPointer) {
    let (password, ops) = decodeSessionProgram(Array(data))
    SecureBytes.withOrdinaryMemoryInSimulation {
        let run = SessionRun(password: password)
        for op in ops {
            run.apply(op)
            require(run.violations.isEmpty, "(\(password ? "password" : "no password")) after \(op): "
                + run.violations.joined(separator: "\n"))
        }
    }
}
