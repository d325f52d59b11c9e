import ChatCore
import RelayCore

/// Two chat processes and the real relay room logic wired in memory, on a virtual clock, with
/// every output checked as it appears.
///
/// Each side has at most one relay connection at a time; each connection is two FIFO queues
/// (client → relay, relay → client), like the WebSocket over TCP it stands for. Honest steps keep
/// that FIFO order and only fail whole connections; adversarial steps (drop, duplicate, reorder,
/// tamper, truncate, inject, replay) act like a hostile relay or network. Safety invariants are
/// checked after every output in either case; liveness (`heal()`) is only owed to honest runs.
///
/// The invariants (a broken one is appended to `violations`):
/// - every state change is a legal transition from the state before it;
/// - a message is shown only in CONNECTED, only if the other side sent it, at most once anywhere,
///   in the order it was sent, with consecutive sequence numbers per conversation;
/// - a message is reported delivered only if the other side really showed it, and every accepted
///   message is exactly one of pending, delivered or undeliverable (nothing lost unreported);
/// - every frame a session transmits is one the relay accepts, canonical, sent in a state that
///   allows it, and carries no plaintext;
/// - after a timer runs, the next deadline is in the future (no busy loop);
/// - everything the relay sends decodes on the client; no room holds more than two peers;
/// - an honest network settles (no ping-pong), and after `heal()` two live sides are CONNECTED
///   with nothing pending.
public final class ChatWorld {
    public struct Configuration: Sendable {
        public var session: SessionConfiguration
        /// A connection whose queue grows past this is reset, as a relay drops a slow consumer.
        public var queueFramesMax: Int
        /// Deliveries one `settle()` may take before the network counts as not settling.
        public var settleDeliveriesMax: Int
        /// Frames kept for replay steps.
        public var historyMax: Int
        /// The password both processes (and every restarted one) use; nil: no password (X25519
        /// and safety numbers).
        public var password: String?

        public init(session: SessionConfiguration, queueFramesMax: Int = 512, settleDeliveriesMax: Int = 8192,
                    historyMax: Int = 64, password: String? = nil) {
            self.session = session
            self.queueFramesMax = queueFramesMax
            self.settleDeliveriesMax = settleDeliveriesMax
            self.historyMax = historyMax
            self.password = password
        }

        /// Small queues and windows, so that fuzz inputs reach every bound quickly.
        public static let small = Configuration(session: SessionConfiguration(
            room: try! RoomCode("ROOM1"), sendQueueMax: 16, inFlightMax: 4, reorderBufferMax: 4,
            messageTextMaxBytes: 128))

        /// `small` with a password: the handshakes are CPace.
        public static let smallWithPassword: Configuration = {
            var configuration = small
            configuration.password = "oyster-lemon"
            return configuration
        }()
    }

    /// Who sent a message the world has seen accepted.
    struct SentMessage {
        let side: Int
        let instance: Int
        let id: MessageID
    }

    public let configuration: Configuration
    public private(set) var now = Instant.zero
    public private(set) var relay = RelayRooms<Int>()
    /// The running process on each side (index 0 and 1).
    public private(set) var processes: [PeerProcess] = []
    /// Set by any adversarial step; liveness is not owed after one.
    public private(set) var isAdversarial = false
    /// Every broken invariant, in the order found.
    public private(set) var violations: [String] = []
    /// Frames seen on the relay → client links, for replays (bounded).
    public private(set) var history: [[UInt8]] = []
    /// Called with a line for every frame moved and every output, when set (triage; see
    /// `fuzz-explain --verbose`).
    public var trace: ((String) -> Void)?
    /// The exact text of the last `send` (with its unique tag).
    public private(set) var lastSentText = ""

    private var nextConnection = 1
    private var nextInstance = 1
    private var nextTag = 1
    /// Text → sender, for every message a session accepted.
    var sent: [String: SentMessage] = [:]
    /// Text → the process that showed it.
    var shownBy: [String: (side: Int, instance: Int)] = [:]

    public init(configuration: Configuration = .small) {
        self.configuration = configuration
        processes = [makeProcess(side: 0), makeProcess(side: 1)]
    }

    private func makeProcess(side: Int) -> PeerProcess {
        defer { nextInstance += 1 }
        // Deterministic keys: a fuzz input replays exactly. See `SeededEntropy` (test code only).
        let entropy = SeededEntropy(seed: UInt64(nextInstance) &* 0x1000_0000_01B3 ^ UInt64(side))
        let password = configuration.password.map { try! Password($0) }  // A valid test password.
        defer { password?.wipe() }
        return PeerProcess(side: side, instance: nextInstance,
                           session: SessionManager(configuration: configuration.session, password: password,
                                                   entropy: entropy))
    }

    func record(_ problem: String) {
        // Bounded: the first few problems are what matters.
        if violations.count < 16 { violations.append("t=\(now) \(problem)") }
    }

    // MARK: Honest steps

    /// Connect side `side` to the relay (if it has no connection and its session can take one).
    public func transportUp(_ side: Int) {
        let process = processes[side]
        guard process.connection == nil, [.initial, .disconnected].contains(process.session.state) else { return }
        process.connection = nextConnection
        nextConnection += 1
        process.session.handle(.transportUp, now: now)
        drain(process)
    }

    /// The connection of side `side` fails; both ends notice.
    public func transportDown(_ side: Int) {
        let process = processes[side]
        guard process.connection != nil else { return }
        // Close first, so that nothing the session does next can find the old connection.
        closeConnection(process)
        process.session.handle(.transportDown, now: now)
        drain(process)
    }

    /// The user on side `side` types `body` (tagged to make it unique); `empty` sends "".
    public func send(_ side: Int, _ body: [UInt8], empty: Bool = false) {
        let process = processes[side]
        let tag = "#\(nextTag):"
        nextTag += 1
        let text = empty ? "" : tag + String(decoding: body, as: UTF8.self)
        lastSentText = text
        let expected: SendRefusal?
        if process.session.state == .destroyed {
            expected = .sessionEnded
        } else if text.utf8.isEmpty {
            expected = .empty
        } else if text.utf8.count > configuration.session.messageTextMaxBytes {
            expected = .tooLong(maxBytes: configuration.session.messageTextMaxBytes)
        } else if process.session.pendingCount >= configuration.session.sendQueueMax {
            expected = .queueFull(max: configuration.session.sendQueueMax)
        } else {
            expected = nil
        }
        switch process.session.send(text, now: now) {
        case let .success(id):
            if let expected { record("side \(side): queued \(id), expected refusal \(expected)") }
            if let last = process.queued.last, id <= last { record("side \(side): message IDs not increasing") }
            process.queued.append(id)
            process.texts[id] = text
            process.tags[id] = Array(tag.utf8)
            sent[text] = SentMessage(side: side, instance: process.instance, id: id)
        case let .failure(reason):
            if expected != reason {
                record("side \(side): refused \(reason), expected \(String(describing: expected))")
            }
        }
        drain(process)
    }

    /// The user on side `side` quits.
    public func quit(_ side: Int) {
        let process = processes[side]
        process.session.handle(.quit, now: now)
        drain(process)
        if process.session.state != .destroyed { record("side \(side): quit did not destroy the session") }
        if process.connection != nil { record("side \(side): quit left the transport open") }
    }

    /// The process on side `side` dies and a new one starts (transport down, fresh instance).
    public func restart(_ side: Int) {
        closeConnection(processes[side])
        processes[side].isDead = true
        processes[side] = makeProcess(side: side)
    }

    /// Let virtual time pass, running every timer when it is due (as a shell's timer would).
    public func advance(by duration: Duration) {
        let end = now.advanced(by: duration)
        // Bounded: each round moves to the next deadline; after 256 rounds jump to the end.
        for _ in 0..<256 {
            let due = processes.compactMap { $0.session.pollTimeout() }.filter { $0 <= end }.min()
            guard let due else { break }
            now = max(now, due)
            fireTimers()
        }
        now = end
        fireTimers()
    }

    private func fireTimers() {
        for process in processes {
            guard let due = process.session.pollTimeout(), due <= now else { continue }
            process.session.handleTimeout(now: now)
            drain(process)
            if let next = process.session.pollTimeout(), next <= now {
                record("side \(process.side): after a timer ran at \(now) the next deadline \(next) is not later")
            }
        }
    }

    /// Deliver the oldest frame on side `side`'s client → relay link.
    public func deliverUp(_ side: Int) {
        let process = processes[side]
        guard let connection = process.connection, !process.up.isEmpty else { return }
        let frame = process.up.removeFirst()
        let actions = relay.receive(frame: frame, from: connection)
        trace?("  relay ← \(side) c\(connection): \(Self.summary(frame)) → \(actions)")
        perform(actions, frame: frame)
    }

    /// Deliver the oldest frame on side `side`'s relay → client link.
    public func deliverDown(_ side: Int) {
        let process = processes[side]
        guard process.connection != nil, !process.down.isEmpty else { return }
        let frame = process.down.removeFirst()
        if history.count == configuration.historyMax { history.removeFirst() }
        history.append(frame)
        trace?("  \(side) ← relay: \(Self.summary(frame))")
        process.session.handle(.frame(frame), now: now)
        drain(process)
    }

    /// Deliver everything in flight, links taken in turn, until nothing moves.
    public func settle() {
        var deliveries = 0
        while processes.contains(where: { !$0.up.isEmpty || !$0.down.isEmpty }) {
            guard deliveries < configuration.settleDeliveriesMax else {
                record("the network did not settle after \(deliveries) deliveries (ping-pong?)")
                for process in processes { process.up.removeAll(); process.down.removeAll() }
                return
            }
            for side in 0..<2 {
                if !processes[side].up.isEmpty { deliverUp(side); deliveries += 1 }
                if !processes[side].down.isEmpty { deliverDown(side); deliveries += 1 }
            }
        }
    }

    /// Whether both sides are CONNECTED with nothing pending and nothing in flight.
    public var isQuiescentAndConnected: Bool {
        processes.allSatisfy {
            $0.session.state == .connected && $0.session.pendingCount == 0 && $0.up.isEmpty && $0.down.isEmpty
        }
    }

    /// Heal every fault and check liveness: two live sides (not destroyed) must reach CONNECTED
    /// with nothing pending within `rounds` seconds of virtual time. Only for honest runs.
    public func heal(rounds: Int = 60) {
        precondition(!isAdversarial, "liveness is not owed after adversarial steps")
        guard processes.allSatisfy({ $0.session.state != .destroyed }) else { return }
        for side in 0..<2 { transportUp(side) }
        for _ in 0..<rounds {
            settle()
            if isQuiescentAndConnected {
                checkSafetyNumbersMatch()
                return
            }
            advance(by: .seconds(1))
        }
        settle()
        if !isQuiescentAndConnected {
            let summary = processes.map { "\($0.session.state) pending \($0.session.pendingCount)" }
            record("liveness: after healing, not both CONNECTED with nothing pending: \(summary)")
        }
    }

    /// Two sides connected through an honest relay show the same safety number.
    private func checkSafetyNumbersMatch() {
        let numbers = processes.map(\.session.safetyNumber)
        if numbers[0] == nil || numbers[0] != numbers[1] {
            record("connected through an honest relay, yet the safety numbers differ: \(numbers)")
        }
    }

    // MARK: Adversarial steps

    /// Which link of a side an adversarial step acts on.
    public enum Link: Int, Sendable {
        case up = 0
        case down = 1
    }

    private func withQueue(_ side: Int, _ link: Link, _ body: (inout [[UInt8]]) -> Void) {
        isAdversarial = true
        let process = processes[side]
        switch link {
        case .up: body(&process.up)
        case .down: body(&process.down)
        }
    }

    public func drop(_ side: Int, _ link: Link, index: Int) {
        withQueue(side, link) { queue in if !queue.isEmpty { queue.remove(at: index % queue.count) } }
    }

    public func duplicate(_ side: Int, _ link: Link, index: Int) {
        withQueue(side, link) { queue in
            if !queue.isEmpty, queue.count < configuration.queueFramesMax { queue.append(queue[index % queue.count]) }
        }
    }

    /// Move one frame to the back of its queue.
    public func reorder(_ side: Int, _ link: Link, index: Int) {
        withQueue(side, link) { queue in if !queue.isEmpty { queue.append(queue.remove(at: index % queue.count)) } }
    }

    /// XOR one byte of a frame's text.
    public func tamperBytes(_ side: Int, _ link: Link, index: Int, position: Int, mask: UInt8) {
        withQueue(side, link) { queue in
            guard !queue.isEmpty else { return }
            let target = index % queue.count
            guard !queue[target].isEmpty else { return }
            queue[target][position % queue[target].count] ^= mask
        }
    }

    /// XOR one byte inside a SIGNAL's decoded `payload` (or `key`) and re-encode it, so the change
    /// reaches the session's handshake and decryption code instead of its JSON parser.
    public func tamperSignal(_ side: Int, _ link: Link, index: Int, position: Int, mask: UInt8, key: Bool) {
        withQueue(side, link) { queue in
            guard !queue.isEmpty else { return }
            let target = index % queue.count
            guard case let .signal(signal)? = try? WireCodec.decodeRelayMessage(queue[target]) else { return }
            var changed = signal
            if key {
                guard var bytes = changed.key, !bytes.isEmpty else { return }
                bytes[position % bytes.count] ^= mask
                changed.key = bytes
            } else {
                guard var bytes = changed.payload, !bytes.isEmpty else { return }
                bytes[position % bytes.count] ^= mask
                changed.payload = bytes
            }
            queue[target] = WireCodec.encode(RelayMessage.signal(changed))
        }
    }

    public func truncate(_ side: Int, _ link: Link, index: Int, length: Int) {
        withQueue(side, link) { queue in
            guard !queue.isEmpty else { return }
            let target = index % queue.count
            queue[target] = Array(queue[target].prefix(length))
        }
    }

    /// Hand side `side` arbitrary bytes as if from the relay.
    public func inject(_ side: Int, _ frame: [UInt8]) {
        isAdversarial = true
        let process = processes[side]
        process.session.handle(.frame(frame), now: now)
        drain(process)
    }

    /// Hand side `side` a frame seen earlier on any relay → client link.
    public func replay(_ side: Int, index: Int) {
        guard !history.isEmpty else { return }
        inject(side, history[index % history.count])
    }

    // MARK: Plumbing and checks

    /// A short form of a frame for traces: SIGNAL kind and payload size, else the JSON text.
    static func summary(_ frame: [UInt8]) -> String {
        if case let .signal(signal)? = try? WireCodec.decodeRelayMessage(frame) {
            return "SIGNAL \(signal.kind) \(signal.payload?.count ?? 0)B payload \(signal.payload.map { Array($0.prefix(8)) } ?? [])"
        }
        return String(decoding: frame.prefix(120), as: UTF8.self)
    }

    private func perform(_ actions: [RelayRooms<Int>.Action], frame: [UInt8]) {
        for action in actions {
            let connection: Int
            let bytes: [UInt8]
            switch action {
            case let .send(to, message):
                let encoded = WireCodec.encode(message)
                if (try? WireCodec.decodeRelayMessage(encoded)) != message {
                    record("a client cannot decode the relay's \(message)")
                }
                (connection, bytes) = (to, encoded)
            case let .forward(to):
                (connection, bytes) = (to, frame)
            }
            guard let process = processes.first(where: { $0.connection == connection }) else { continue }
            process.down.append(bytes)
            if process.down.count > configuration.queueFramesMax { transportDown(process.side) }
        }
        if relay.occupancy(of: configuration.session.room) > 2 { record("a room holds more than two peers") }
    }

    private func closeConnection(_ process: PeerProcess) {
        guard let connection = process.connection else { return }
        process.connection = nil
        process.up.removeAll()
        process.down.removeAll()
        perform(relay.disconnect(connection), frame: [])
    }

    /// Take every output of `process`'s session, check it, and act on it.
    func drain(_ process: PeerProcess) {
        var closeRequested = false
        for output in process.session.drainOutputs() {
            if let trace {
                if case let .transmit(frame) = output {
                    trace("    \(process.side) out: transmit \(Self.summary(frame))")
                } else {
                    trace("    \(process.side) out: \(output)")
                }
            }
            check(output, of: process, closeRequested: &closeRequested)
        }
        if closeRequested { closeConnection(process) }
        if process.up.count > configuration.queueFramesMax { transportDown(process.side) }
        checkAccounting(process)
    }

    private func check(_ output: SessionOutput, of process: PeerProcess, closeRequested: inout Bool) {
        let side = process.side
        switch output {
        case let .stateChanged(from, to):
            if from != process.state { record("side \(side): change from \(from) but the state was \(process.state)") }
            if from == to || !SessionEvent.allCases.contains(where: { SessionStateMachine.transition(from: from, on: $0) == to }) {
                record("side \(side): illegal transition \(from) → \(to)")
            }
            process.state = to
        case let .received(message):
            checkShown(message, by: process)
        case let .delivered(ids):
            for id in ids {
                resolve(id, of: process, as: "delivered")
                guard let text = process.texts[id], let shower = shownBy[text] else {
                    record("side \(side): \(id) reported delivered but the peer never showed it")
                    continue
                }
                if shower.side == side { record("side \(side): \(id) delivered to its own side") }
            }
        case let .undeliverable(ids, reason):
            for id in ids { resolve(id, of: process, as: "undeliverable(\(reason))") }
            if reason == .sessionEnded && process.state != .destroyed {
                record("side \(side): undeliverable(sessionEnded) while \(process.state)")
            }
        case let .transmit(frame):
            checkTransmitted(frame, by: process)
            if process.connection != nil {
                process.up.append(frame)
            } else {
                record("side \(side): transmitted without a transport")
            }
        case let .notice(notice):
            if case .ended = notice, process.state != .destroyed {
                record("side \(side): ended while \(process.state)")
            }
            if case let .ended(.authenticationFailed(failure)) = notice, !isAdversarial {
                // Honest runs share one password; only the guess budget may end them, after many
                // handshakes were cut short.
                if case .tooManyAttempts = failure {} else {
                    record("side \(side): authentication failed (\(failure)) without any adversarial step")
                }
            }
            if case let .secured(_, authentication, _) = notice,
               authentication != (configuration.password == nil ? .safetyNumber : .password) {
                record("side \(side): secured with \(authentication) authentication")
            }
        case .closeTransport:
            if process.state != .destroyed { record("side \(side): closeTransport while \(process.state)") }
            closeRequested = true
        }
    }

    private func resolve(_ id: MessageID, of process: PeerProcess, as outcome: String) {
        guard process.queued.contains(id) else {
            record("side \(process.side): \(outcome) \(id) was never queued")
            return
        }
        if let earlier = process.resolved[id] {
            record("side \(process.side): \(id) reported \(outcome) after \(earlier)")
            return
        }
        process.resolved[id] = outcome
        process.outcomes.append((process.texts[id] ?? "?", outcome))
    }

    private func checkShown(_ message: IncomingMessage, by process: PeerProcess) {
        let side = process.side
        guard process.state == .connected else {
            record("side \(side): message shown in \(process.state)")
            return
        }
        guard let origin = sent[message.text] else {
            record("side \(side): shown a message nobody sent: \(message.text.debugDescription)")
            return
        }
        if origin.side == side { record("side \(side): shown its own message") }
        if let earlier = shownBy[message.text] {
            record("side \(side): \(origin.id) shown again (first by instance \(earlier.instance))")
        }
        shownBy[message.text] = (side, process.instance)
        if let last = process.lastShown[origin.instance] {
            if message.sequence != last.sequence + 1 {
                record("side \(side): sequence \(message.sequence) after \(last.sequence)")
            }
            if origin.id <= last.id { record("side \(side): \(origin.id) shown after \(last.id): out of order") }
        } else if message.sequence != 1 {
            record("side \(side): first message of a conversation has sequence \(message.sequence)")
        }
        process.lastShown[origin.instance] = (message.sequence, origin.id)
        process.shown.append(message.text)
    }

    private func checkTransmitted(_ frame: [UInt8], by process: PeerProcess) {
        let side = process.side
        let message: ClientMessage
        do {
            _ = try WireCodec.inspectClientFrame(frame)
            message = try WireCodec.decodeClientMessage(frame)
        } catch {
            record("side \(side): transmitted a frame the relay refuses: \(error)")
            return
        }
        if WireCodec.encode(message) != frame { record("side \(side): transmitted a non-canonical frame") }
        switch message {
        case let .join(room):
            if room != configuration.session.room { record("side \(side): joined \(room)") }
            if process.state != .searching { record("side \(side): JOIN in \(process.state)") }
        case let .signal(signal):
            let allowed: [SessionState] = switch signal.kind {
            // Protocol v3 re-keys beside the keys in use: openings go out while CONNECTED too.
            case .keyExchange, .pake, .keyConfirm: [.keySetup, .connected]
            case .message, .ack, .goodbye: [.connected]
            default: []
            }
            if !allowed.contains(process.state) { record("side \(side): \(signal.kind) sent in \(process.state)") }
        }
        // No plaintext on the wire: each pending message's unique tag ("#n:") cannot occur in
        // base64 or in the JSON around it, so finding one means a text left unencrypted.
        for (id, tag) in process.tags where process.resolved[id] == nil && frame.contains(subsequence: tag) {
            record("side \(side): plaintext of \(id) on the wire")
        }
    }

    /// Every accepted message is pending, delivered or undeliverable; the session agrees.
    private func checkAccounting(_ process: PeerProcess) {
        let session = process.session
        if session.state != process.state {
            record("side \(process.side): session says \(session.state), outputs said \(process.state)")
        }
        let pending = process.queued.filter { process.resolved[$0] == nil }
        if session.pendingMessageIDs != pending {
            record("side \(process.side): pending \(session.pendingMessageIDs), accounted \(pending)")
        }
        if session.pendingCount > configuration.session.sendQueueMax {
            record("side \(process.side): \(session.pendingCount) pending, over the cap")
        }
    }
}

/// One running chat process on one side, and what the world has seen it do.
public final class PeerProcess {
    public let side: Int
    /// Unique across the world's life; a restart makes a new one.
    public let instance: Int
    public let session: SessionManager
    public internal(set) var connection: Int?
    public internal(set) var isDead = false
    /// The state as the outputs tell it.
    public internal(set) var state: SessionState = .initial
    var up: [[UInt8]] = []
    var down: [[UInt8]] = []
    /// Accepted messages in order, and how each ended (absent: pending).
    public internal(set) var queued: [MessageID] = []
    public internal(set) var resolved: [MessageID: String] = [:]
    /// (text, "delivered" or "undeliverable(reason)") in the order the session reported them.
    public internal(set) var outcomes: [(text: String, outcome: String)] = []
    var texts: [MessageID: String] = [:]
    var tags: [MessageID: [UInt8]] = [:]
    /// Texts this process showed, in order.
    public internal(set) var shown: [String] = []
    /// The last (sequence, sender's ID) shown from each sender instance.
    var lastShown: [Int: (sequence: UInt64, id: MessageID)] = [:]

    init(side: Int, instance: Int, session: SessionManager) {
        self.side = side
        self.instance = instance
        self.session = session
    }

    /// The text of a message this process accepted.
    public func text(of id: MessageID) -> String? { texts[id] }

    /// Frames in flight on this process's links.
    public var framesInFlight: Int { up.count + down.count }
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs contiguously (naive search; frames and tags are short).
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if self[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
