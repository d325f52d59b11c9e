import ChatCore

/// The properties the testing world checks. The raw values are stable names that scripts, tests
/// and `simulator --plant-bug` match on.
public enum Invariant: String, CaseIterable, Sendable, Codable {
    /// Every state change a session reports is a transition of the documented lifecycle, from the
    /// state it was last seen in.
    case legalTransitions = "legal-transitions"
    /// Nothing reaches a client that its room peer did not send: the relay forwards a SIGNAL only
    /// within the sender's room, and every message shown was sent by the peer.
    case onlyFromPeer = "only-from-peer"
    /// No message is shown twice.
    case atMostOnce = "at-most-once"
    /// Messages from one sender are shown in the order it sent them.
    case inOrder = "in-order"
    /// Every message is shown to the peer or reported undeliverable to its sender; a message
    /// reported delivered was shown; nothing is skipped silently.
    case lossReported = "loss-reported"
    /// No byte a client sends contains a message's plaintext or the room's password (raw or
    /// base64-decoded, at any offset).
    case relayBlind = "relay-blind"
    /// No room ever holds more than `RoomCode.peersMax` peers.
    case roomCapacity = "room-capacity"
    /// After every fault heals, every session reaches CONNECTED with nothing left to send, or a
    /// reported terminal failure, within the stated bound.
    case liveness = "liveness"
    /// With an honest relay no session fails authentication and the two sides of every room show
    /// the same safety number; with a relay in the middle, passwords make every session fail and
    /// the relay decrypt nothing, and without them the two sides' safety numbers differ.
    case authentication = "authentication"
    /// Leaving with drain time to spare leaves nothing unread (the goodbye, issue 13). A client
    /// whose input ended and that exits 0 before its drain deadline finished its goodbye: at that
    /// moment nothing it sent is pending (each message was shown to the peer or reported), and its
    /// peer's process, if it is the one the leaver last secured a conversation with, has nothing
    /// pending either: every message it accepted was shown to the leaver and confirmed (the records
    /// it sent before learning of the goodbye), or was already reported undeliverable (`peer left`:
    /// never sent, because it learned of the goodbye first). And "to spare" has a number: a leaver whose
    /// drain deadline came at least the simulation's goodbye bound (`leaveSpareMilliseconds`: the
    /// liveness bound plus a capped BYE retransmission and round trips) after the faults healed must
    /// not run into it while its peer's process runs; nor may two connected peers that leave after
    /// convergence exit with anything but 0.
    case cleanLeave = "clean-leave"
    /// A relay in the middle receives no more password tags (each tests one guess) than
    /// docs/SECURITY.md states: 2 per side and run, 4 per code (both sides, across process
    /// restarts) while the users heed "the code is spent".
    case guessBound = "guess-bound"
    /// A file a client stored is byte for byte the file its peer offered (and the hash the offer
    /// named); a file the sender was told was stored was stored; no hash mismatch through an
    /// honest relay.
    case fileIntegrity = "file-integrity"
    /// No offset of a received file is written twice, and nothing is written beyond the offered
    /// size (a chunk outside the file or a second copy of one is never a write).
    case fileWrites = "file-writes"
    /// A transfer's progress, as each side shows it, never goes backwards nor past the file's size.
    case fileProgress = "file-progress"
    /// After an interruption (a reconnect, a relay crash, a stall) a transfer goes on from the
    /// last acknowledged chunk: no chunk the receiver acknowledged is sent again, and each go-back
    /// re-sends at most a window of chunks, never the file from zero.
    case fileNoRestart = "file-no-restart"
    /// A transfer that finds a `.part` an earlier process left for the same file, holding k > 0
    /// whole chunks of it (short of the last), continues from chunk k: it shows `resumed` with
    /// exactly those bytes, never empties the `.part` nor writes inside the kept prefix.
    case fileResume = "file-resume"
    /// After the heal every transfer ends within the bound; each ends stored and confirmed, or
    /// failed with a reason the faults explain (the peer changed, the session ended) at each side
    /// whose process lived.
    case fileLiveness = "file-liveness"
    /// A cluster node that dies (kill -9) has its seats given up within the bound docs/RELAY.md
    /// states (the seat TTL, a heartbeat and round trips to Redis): each seat it holds in Redis
    /// is past its deadline (the JOIN script then reserves or frees it), its heartbeat key is gone,
    /// and no node that could reach Redis meanwhile still takes one of its connections for a
    /// room-mate (each was told PEER_LEFT).
    case deadNodeBound = "dead-node-bound"

    /// One line for people.
    public var summary: String {
        switch self {
        case .legalTransitions: "only legal state transitions"
        case .onlyFromPeer: "nothing delivered that the peer did not send"
        case .atMostOnce: "each message delivered at most once"
        case .inOrder: "messages delivered in the order sent"
        case .lossReported: "every undeliverable message reported to its sender"
        case .relayBlind: "the relay never sees plaintext or a password"
        case .roomCapacity: "no room ever above two peers"
        case .liveness: "every session converges after the faults heal"
        case .authentication: "a relay in the middle is always detected, an honest one never"
        case .cleanLeave: "leaving with drain time to spare leaves no peer record unread"
        case .guessBound: "a relay in the middle tests no more password guesses than documented"
        case .fileIntegrity: "a stored file equals the file sent"
        case .fileWrites: "no file offset written twice or beyond the offered size"
        case .fileProgress: "file progress never goes backwards"
        case .fileNoRestart: "an interrupted transfer goes on from the last acknowledged chunk"
        case .fileResume: "a file offered again after a process exit resumes from its kept .part"
        case .fileLiveness: "every transfer ends, stored and confirmed or failed with a typed reason"
        case .deadNodeBound: "a dead cluster node's seats are given up within the documented bound"
        }
    }
}

/// A broken invariant, as the checker saw it.
public struct Finding: Error, Hashable, Sendable, CustomStringConvertible {
    public var invariant: Invariant
    /// What exactly was seen (never message text or key bytes).
    public var detail: String

    public init(_ invariant: Invariant, _ detail: String) {
        self.invariant = invariant
        self.detail = detail
    }

    public var description: String { "\(invariant.rawValue): \(detail)" }
}

/// The fate of one message a user typed.
public enum MessageStatus: UInt8, Sendable {
    /// The session refused it (queue full, session ended): never accepted, nothing owed.
    case refused
    /// Accepted, neither confirmed nor reported yet.
    case pending
    /// The sender was told the peer confirmed it.
    case delivered
    /// The sender was told it will not be confirmed.
    case undeliverable
    /// Its sender's process crashed before it was confirmed: nobody is left to tell.
    case lostWithSender
}

/// The one message checker: every message any user typed, what became of it, and who was shown
/// it. It checks `only-from-peer` (for messages), `at-most-once`, `in-order` and `loss-reported`.
///
/// Each invariant can fire on its own: a receiver that shows message 5 before message 4 skips 4 at
/// first (it may yet be reported undeliverable: a peer that changed), and when 4 is then shown it
/// is an `in-order` violation, not a loss; a skipped message is a loss only if its sender is told
/// it was delivered, or if at the end it is neither shown nor reported.
public struct Ledger: Sendable {
    /// Everything known about one typed message.
    public struct Entry: Sendable {
        /// The sender's process incarnation.
        public var incarnation: Int32
        public var status: MessageStatus
        /// Which incarnation of the receiving client showed it (-1: none yet).
        public var shownBy: Int32 = -1
        /// The receiver showed a later message of the same conversation first.
        public var skipped = false
        /// When it was typed.
        public var typedAt: Instant
    }

    /// Per sender client, every message it typed, by number.
    public private(set) var entries: [[Entry]]
    /// Per receiver client, per sender incarnation, the last number shown (-1: none).
    private var lastShown: [[Int]]

    public init(clients: Int) {
        entries = Array(repeating: [], count: clients)
        lastShown = Array(repeating: [], count: clients)
    }

    /// A user typed a message: its number (the message's canary names it).
    public mutating func typed(by client: Int, incarnation: Int32, at now: Instant) -> Int {
        entries[client].append(Entry(incarnation: incarnation, status: .refused, typedAt: now))
        return entries[client].count - 1
    }

    /// The sender's session accepted message `number`.
    public mutating func accepted(by client: Int, number: Int) -> Finding? {
        guard number < entries[client].count, entries[client][number].status == .refused else {
            return Finding(.lossReported, "client \(client) accepted message \(number) twice or out of the blue")
        }
        entries[client][number].status = .pending
        return nil
    }

    /// `receiver` (process `incarnation`), whose peer is `peer`, was shown the message `identity`.
    public mutating func shown(
        _ identity: Canary.Identity, to receiver: Int, incarnation: Int32, peer: Int
    ) -> Finding? {
        let sender = identity.client
        let number = identity.number
        guard sender == peer, number < entries[sender].count,
            entries[sender][number].incarnation == Int32(identity.incarnation),
            entries[sender][number].status != .refused
        else {
            return Finding(
                .onlyFromPeer, "client \(receiver) was shown message \(number) of client \(sender), which its peer never sent")
        }
        guard entries[sender][number].shownBy < 0 else {
            return Finding(
                .atMostOnce,
                "client \(receiver) was shown message \(number) of client \(sender) again "
                    + "(first shown to incarnation \(entries[sender][number].shownBy))")
        }
        let conversation = identity.incarnation
        while lastShown[receiver].count <= conversation { lastShown[receiver].append(-1) }
        let last = lastShown[receiver][conversation]
        guard number > last else {
            return Finding(
                .inOrder, "client \(receiver) was shown message \(number) of client \(sender) after message \(last)")
        }
        // Bounded by the messages the sender typed.
        for gap in (last + 1)..<number where entries[sender][gap].incarnation == Int32(conversation) {
            if entries[sender][gap].status == .pending || entries[sender][gap].status == .delivered {
                entries[sender][gap].skipped = true
            }
        }
        lastShown[receiver][conversation] = number
        entries[sender][number].shownBy = incarnation
        return nil
    }

    /// `client`'s user was told message `number` was delivered. `peerIsTrusted`: the acknowledgement
    /// came from the real peer (false when a relay in the middle holds the session keys).
    public mutating func delivered(by client: Int, number: Int, peerIsTrusted: Bool = true) -> Finding? {
        guard number < entries[client].count, entries[client][number].status == .pending else {
            return Finding(
                .lossReported, "client \(client) was told message \(number) was delivered, but it was not pending")
        }
        guard entries[client][number].shownBy >= 0 || !peerIsTrusted else {
            return Finding(
                .lossReported, "client \(client) was told message \(number) was delivered, but its peer never showed it")
        }
        entries[client][number].status = .delivered
        return nil
    }

    /// `client`'s user was told message `number` will not be delivered.
    public mutating func undeliverable(by client: Int, number: Int) -> Finding? {
        guard number < entries[client].count, entries[client][number].status == .pending else {
            return Finding(
                .lossReported, "client \(client) was told message \(number) is undeliverable, but it was not pending")
        }
        entries[client][number].status = .undeliverable
        return nil
    }

    /// `client`'s process `incarnation` crashed: what it had not had confirmed is lost with it.
    public mutating func crashed(_ client: Int, incarnation: Int32) {
        for index in entries[client].indices
        where entries[client][index].incarnation == incarnation && entries[client][index].status == .pending {
            entries[client][index].status = .lostWithSender
        }
    }

    /// At the end: every accepted message of a live process is delivered or reported, and nothing
    /// skipped was left unreported.
    public func finalCheck() -> Finding? {
        for (client, messages) in entries.enumerated() {
            for (number, entry) in messages.enumerated() {
                if entry.status == .pending {
                    return Finding(
                        .lossReported,
                        "message \(number) of client \(client) is neither delivered nor reported undeliverable at the end")
                }
                if entry.skipped && entry.shownBy < 0 && entry.status != .undeliverable
                    && entry.status != .lostWithSender
                {
                    return Finding(
                        .lossReported,
                        "message \(number) of client \(client) was skipped by its receiver and never reported")
                }
            }
        }
        return nil
    }

    /// `client`'s process `incarnation` left cleanly: it exited 0 before its drain deadline, so its
    /// goodbye finished. Nothing it sent may be pending; nor may anything `peer`'s process
    /// `peerIncarnation` sent, when that process was the other side of the leaver's conversation
    /// (nil: no process of the peer running now ever was, so it owes the leaver nothing).
    public func leftCleanly(_ client: Int, incarnation: Int32, peer: Int, peerIncarnation: Int32?) -> Finding? {
        if let number = entries[client].indices.first(where: {
            entries[client][$0].incarnation == incarnation && entries[client][$0].status == .pending
        }) {
            return Finding(.cleanLeave, "client \(client) left cleanly with its message \(number) still pending")
        }
        guard let peerIncarnation else { return nil }
        if let number = entries[peer].indices.first(where: {
            entries[peer][$0].incarnation == peerIncarnation && entries[peer][$0].status == .pending
        }) {
            let fate = entries[peer][number].shownBy >= 0 ? "shown but never confirmed" : "neither shown nor reported"
            return Finding(
                .cleanLeave,
                "client \(client) left cleanly (exit 0, drain time to spare) while message \(number) of its peer "
                    + "\(peer) was \(fate): the peer will report it undeliverable")
        }
        return nil
    }

    /// Totals for a report.
    public func tally() -> (pending: Int, lostWithSender: Int, shownButReportedUndeliverable: Int) {
        var pending = 0
        var lost = 0
        var shownButUndeliverable = 0
        for messages in entries {
            for entry in messages {
                if entry.status == .pending { pending += 1 }
                if entry.status == .lostWithSender { lost += 1 }
                if entry.status == .undeliverable && entry.shownBy >= 0 { shownButUndeliverable += 1 }
            }
        }
        return (pending, lost, shownButUndeliverable)
    }
}
