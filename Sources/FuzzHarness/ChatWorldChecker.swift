import ChatCore
import ChatTesting
import ClientCore

/// The fuzz world's oracle: what every output and every frame must satisfy (a broken one is
/// appended to `violations`).
///
/// - every state change is a legal transition (ChatTesting's `Lifecycle`) from the state before it;
/// - the ledger's message invariants: shown only if the peer sent it, at most once, in order,
///   every loss reported, delivered only if shown (`Ledger`);
/// - a message is shown only in CONNECTED;
/// - every frame a client sends is one the relay accepts, canonical, sent in a state that allows
///   it, and carries no plaintext of any message (raw or base64-decoded, `SecretScanner`);
/// - the session's pending messages are exactly what the ledger has pending;
/// - no room holds more than two peers; an honest run never fails authentication.
final class ChatWorldChecker: WorldObserver {
    let configuration: ChatWorld.Configuration
    weak var world: World?
    private(set) var violations: [String] = []
    var isAdversarial = false
    private var ledger = Ledger(clients: RoomCode.peersMax)
    private var secrets = SecretScanner()

    /// What the checker keeps about one side.
    struct Side {
        var state: SessionState = .initial
        /// Ledger numbers of the current process's accepted messages, by `MessageID.value - 1`.
        var numbers: [Int] = []
        /// The message being typed: its number and text.
        var typing: (number: Int, text: String)?
        var shown: [String] = []
        var outcomes: [(text: String, outcome: String)] = []
        /// The text of each message typed, by ledger number (looked up only, never iterated).
        var texts: [Int: String] = [:]
    }

    private(set) var sides = [Side](repeating: Side(), count: RoomCode.peersMax)

    init(configuration: ChatWorld.Configuration) {
        self.configuration = configuration
        // Every message text starts with the canary marker: finding it anywhere is a leak.
        secrets.add(Canary.markerBytes, name: "a message")
    }

    func record(_ problem: String) {
        // Bounded: the first few problems are what matters.
        if violations.count < 16 { violations.append("t=\(world?.now ?? .zero) \(problem)") }
    }

    private func record(_ finding: Finding?) {
        if let finding { record(finding.description) }
    }

    // MARK: The user's side

    /// The text of the next message of `side`: a canary that names it, then the fuzzer's bytes.
    func nextText(side: Int, body: [UInt8]) -> String {
        let number = ledger.entries[side].count
        let incarnation = Int(world?.clients[side].incarnation ?? 0)
        let canary = Canary.text(client: side, incarnation: incarnation, number: number, fillerLength: 0, fillerSeed: 0)
        return canary + String(decoding: body, as: UTF8.self)
    }

    func typing(_ text: String, side: Int) {
        guard let world, world.clients[side].isRunning, !text.isEmpty else { return }
        let number = ledger.typed(by: side, incarnation: world.clients[side].incarnation, at: world.now)
        sides[side].typing = (number, text)
        sides[side].texts[number] = text
    }

    func typed(side: Int) {
        sides[side].typing = nil
    }

    func crashed(side: Int) {
        guard let world else { return }
        ledger.crashed(side, incarnation: world.clients[side].incarnation)
        // What the user saw of the old process goes with it; the message texts stay (the peer may
        // still show them).
        sides[side] = Side(texts: sides[side].texts)
    }

    // MARK: WorldObserver

    func world(_ world: World, clientSent frame: [UInt8], client: Int) {
        checkTransmitted(frame, by: client)
    }

    func world(_ world: World, relayReceives frame: [UInt8], from client: Int) {}

    func world(_ world: World, relayWillSend message: RelayMessage, to client: Int, link: LinkID) -> Bool {
        let encoded = WireCodec.encode(message)
        if (try? WireCodec.decodeRelayMessage(encoded)) != message { record("a client cannot decode the relay's \(message)") }
        if world.relay.rooms.occupancy(of: configuration.session.room) > RoomCode.peersMax {
            record("a room holds more than two peers")
        }
        return true
    }

    func world(_ world: World, relayWillForward frame: [UInt8], from source: Int, to client: Int, link: LinkID)
        -> Bool
    {
        true
    }

    func world(_ world: World, relayClosed link: LinkID, client: Int) {}

    func world(_ world: World, client: Int, exited status: ClientExitStatus) {
        // Honest runs share one password; only the guess budget may end them, after handshakes
        // were cut short by restarts and disconnections (docs/SECURITY.md, "The guess budget").
        guard status == .authenticationFailed, !isAdversarial, let session = world.clients[client].driver?.session,
            session.passwordRunsUnconfirmed < session.configuration.passwordRunsUnconfirmedMax
        else { return }
        record("side \(client): authentication failed without any adversarial step")
    }

    func world(_ world: World, client side: Int, displays event: DisplayEvent) {
        switch event {
        case let .state(from, to):
            if from != sides[side].state { record("side \(side): change from \(from) but the state was \(sides[side].state)") }
            if !Lifecycle.isLegal(from: from, to: to) { record("side \(side): illegal transition \(from) → \(to)") }
            sides[side].state = to
        case let .message(message): shown(message, by: side)
        case let .sent(sent, _): accepted(sent, by: side)
        case let .delivered(ids): resolve(ids, of: side, delivered: true)
        case let .undeliverable(lost, reason):
            resolve(lost.map(\.id), of: side, delivered: false, reason: reason)
            if reason == .sessionEnded && sides[side].state != .destroyed {
                record("side \(side): undeliverable(sessionEnded) while \(sides[side].state)")
            }
        default: break
        }
    }

    // MARK: Messages

    private func accepted(_ sent: SentMessage, by side: Int) {
        guard let typing = sides[side].typing, typing.text == sent.text,
            sent.id.value == UInt64(sides[side].numbers.count + 1)
        else {
            record("side \(side): accepted \(sent.id) out of the blue")
            return
        }
        sides[side].numbers.append(typing.number)
        record(ledger.accepted(by: side, number: typing.number))
    }

    private func shown(_ message: IncomingMessage, by side: Int) {
        guard let world else { return }
        guard sides[side].state == .connected else {
            record("side \(side): message shown in \(sides[side].state)")
            return
        }
        guard let identity = Canary.parse(message.text) else {
            record("side \(side): shown a message nobody sent")
            return
        }
        record(ledger.shown(identity, to: side, incarnation: world.clients[side].incarnation, peer: world.peer(of: side)))
        sides[side].shown.append(message.text)
    }

    private func resolve(_ ids: [MessageID], of side: Int, delivered: Bool, reason: UndeliverableReason? = nil) {
        for id in ids {
            let position = Int(id.value) - 1
            guard position >= 0, position < sides[side].numbers.count else {
                record("side \(side): \(id) reported but never accepted")
                continue
            }
            let number = sides[side].numbers[position]
            record(delivered ? ledger.delivered(by: side, number: number) : ledger.undeliverable(by: side, number: number))
            let outcome = reason.map { "undeliverable(\($0))" } ?? "delivered"
            sides[side].outcomes.append((sides[side].texts[number] ?? "", outcome))
        }
    }

    // MARK: Frames and accounting

    private func checkTransmitted(_ frame: [UInt8], by side: Int) {
        let (decoded, problem) = TransmittedFrame.check(frame)
        if let problem { record("side \(side): \(problem)") }
        guard let message = decoded else { return }
        // The state the session had when it produced the frame: the driver's actions come in the
        // order of the session's outputs, so the state changes displayed so far (the session's own
        // state may already be further on, when one input both sent and ended).
        let state = sides[side].state
        switch message {
        case let .join(room):
            if room != configuration.session.room { record("side \(side): joined \(room)") }
            if state != .searching { record("side \(side): JOIN in \(state)") }
        case let .signal(signal):
            let allowed: [SessionState] = switch signal.kind {
            // Protocol v3 re-keys beside the keys in use: openings go out while CONNECTED too.
            case .keyExchange, .pake, .keyConfirm: [.keySetup, .connected]
            case .message, .ack, .goodbye: [.connected]
            default: []
            }
            if !allowed.contains(state) { record("side \(side): \(signal.kind) sent in \(state)") }
        }
        if let secret = secrets.find(in: frame) { record("side \(side): the plaintext of \(secret) on the wire") }
    }

    /// Every accepted message is pending, delivered or undeliverable; the session agrees.
    func checkAccounting() {
        guard let world else { return }
        for side in 0..<RoomCode.peersMax {
            guard let session = world.clients[side].driver?.session else { continue }
            if world.clients[side].isRunning && session.state != sides[side].state {
                record("side \(side): session says \(session.state), outputs said \(sides[side].state)")
            }
            let pending = sides[side].numbers.enumerated().filter { ledger.entries[side][$0.element].status == .pending }
                .map { MessageID(UInt64($0.offset + 1)) }
            if world.clients[side].isRunning && session.pendingMessageIDs != pending {
                record("side \(side): pending \(session.pendingMessageIDs), accounted \(pending)")
            }
            if session.pendingCount > configuration.session.sendQueueMax {
                record("side \(side): \(session.pendingCount) pending, over the cap")
            }
        }
    }

    /// Two sides connected through an honest relay show the same safety number.
    func checkSafetyNumbersMatch() {
        guard let world else { return }
        let numbers = world.clients.map { $0.driver?.session.safetyNumber }
        if numbers[0] == nil || numbers[0] != numbers[1] {
            record("connected through an honest relay, yet the safety numbers differ")
        }
    }
}
