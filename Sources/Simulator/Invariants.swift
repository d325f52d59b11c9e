import ChatCore

/// The properties the simulator checks after every event. The raw values are stable names that
/// scripts and tests match on.
public enum Invariant: String, CaseIterable, Sendable, Codable {
    /// Every state change a session reports is a transition of the lifecycle table, from the
    /// state it was last seen in.
    case legalTransitions = "legal-transitions"
    /// Nothing reaches a client that its room peer did not send: the relay forwards a SIGNAL only
    /// within the sender's room (to the peer, or to the sender's own stale connection that the relay
    /// has not yet seen close), and every message shown was sent by the peer.
    case onlyFromPeer = "only-from-peer"
    /// No message is shown twice.
    case atMostOnce = "at-most-once"
    /// Messages from one sender are shown in the order it sent them.
    case inOrder = "in-order"
    /// Every message is shown to the peer or reported undeliverable to its sender; a message
    /// reported delivered was shown; nothing is skipped silently.
    case lossReported = "loss-reported"
    /// No byte the relay handles contains a message's plaintext (raw or base64-decoded).
    case relayBlind = "relay-blind"
    /// No room ever holds more than two peers.
    case roomCapacity = "room-capacity"
    /// After every fault heals, every session reaches CONNECTED with nothing left to send, or a
    /// reported terminal failure, within the stated bound.
    case liveness = "liveness"
    /// At convergence, with an honest relay: no session failed authentication and the two sides of
    /// every room show the same safety number. With a malicious relay in the middle (`--mitm`):
    /// with passwords, every session failed authentication and the relay decrypted nothing;
    /// without, the two sides of every room show different safety numbers.
    case authentication = "authentication"

    /// One line for people.
    public var summary: String {
        switch self {
        case .legalTransitions: "only legal state transitions"
        case .onlyFromPeer: "nothing delivered that the peer did not send"
        case .atMostOnce: "each message delivered at most once"
        case .inOrder: "messages delivered in the order sent"
        case .lossReported: "every undeliverable message reported to its sender"
        case .relayBlind: "the relay never sees plaintext"
        case .roomCapacity: "no room ever above two peers"
        case .liveness: "every session converges after the faults heal"
        case .authentication: "a relay in the middle is always detected, an honest one never"
        }
    }
}

/// A broken invariant: the run stops at the first one.
public struct Violation: Error, Sendable, Hashable, Codable {
    public var invariant: Invariant
    /// What exactly was seen.
    public var detail: String
    /// Virtual time of the event that broke it.
    public var atNanoseconds: UInt64
    /// The last trace lines before it, oldest first.
    public var traceTail: [String]
}

/// The lifecycle table as a legality matrix: `allowed[from][to]` when some event moves `from` to `to`.
struct TransitionTable {
    private let allowed: [[Bool]]

    init() {
        let states = SessionState.allCases
        allowed = states.map { from in
            states.map { to in
                SessionEvent.allCases.contains { SessionStateMachine.transition(from: from, on: $0) == to }
            }
        }
    }

    func isLegal(from: SessionState, to: SessionState) -> Bool {
        allowed[from.index][to.index]
    }
}

extension SessionState {
    /// Position in `allCases` (declaration order), for tables and compact trace records.
    var index: Int {
        switch self {
        case .initial: 0
        case .searching: 1
        case .userFound: 2
        case .keySetup: 3
        case .connected: 4
        case .disconnected: 5
        case .destroyed: 6
        }
    }
}

/// The fate of one message a simulated user typed.
enum MessageStatus: UInt8 {
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

/// Everything the checker knows about one typed message.
struct MessageRecord {
    /// The sender's process incarnation.
    var incarnation: Int32
    var status: MessageStatus
    /// Which incarnation of the receiving client showed it (-1: none yet).
    var receivedBy: Int32 = -1
    /// Virtual time it was typed.
    var typedAt: UInt64
}

/// Parses the planted plaintext of a simulated message: `PLAINTEXT-CANARY/<client>/<incarnation>/<number>/<filler>`.
///
/// Every message carries the canary, so a single scan for it over every byte the relay handles
/// shows whether any plaintext leaked, and the receiver can tell exactly which message it got.
enum Canary {
    static let marker = "PLAINTEXT-CANARY/"
    static let markerBytes = Array(marker.utf8)

    struct Identity: Hashable {
        var client: Int
        var incarnation: Int
        var number: Int
    }

    static func text(client: Int, incarnation: Int, number: Int, fillerLength: Int, fillerSeed: UInt64) -> String {
        // Built as bytes, then validated once: per-character String appends cost more than the
        // session's encryption of the message.
        var bytes = markerBytes
        bytes.reserveCapacity(markerBytes.count + 24 + fillerLength)
        for field in [client, incarnation, number] {
            bytes.append(contentsOf: String(field).utf8)
            bytes.append(UInt8(ascii: "/"))
        }
        var state = fillerSeed
        for _ in 0..<fillerLength {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes.append(UInt8(ascii: "a") + UInt8((state >> 33) % 26))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The identity of a received text, or nil when it is not a well-formed simulated message.
    static func parse(_ text: String) -> Identity? {
        var utf8 = text.utf8[...]
        guard utf8.starts(with: markerBytes) else { return nil }
        utf8 = utf8.dropFirst(markerBytes.count)
        var fields: [Int] = []
        for _ in 0..<3 {
            var value = 0
            var digits = 0
            while let byte = utf8.first, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), digits < 12 {
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                utf8 = utf8.dropFirst()
            }
            guard digits > 0, utf8.first == UInt8(ascii: "/") else { return nil }
            utf8 = utf8.dropFirst()
            fields.append(value)
        }
        return Identity(client: fields[0], incarnation: fields[1], number: fields[2])
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// Finds the canary in every byte the relay handles: in the raw frame, and inside its base64
/// fields without decoding them.
///
/// Base64 maps each 3-byte group of the decoded payload to 4 characters, aligned from the start of
/// the field, so a canary at any offset in the payload shows up in the field's text as one of
/// three fixed character strings (one per offset modulo 3; the standard trick of secret scanners).
/// Searching the raw frame for the marker and those three strings finds exactly the frames whose
/// decoded payload contains the marker (a superset, never fewer), at memchr speed instead of a
/// decode per frame. SimulationTests checks it against decoding for every offset.
enum PlaintextScanner {
    /// The raw marker, then its base64 forms for each phase.
    static let patterns: [[UInt8]] = {
        let marker = Canary.markerBytes
        var patterns = [marker]
        for phase in 0..<3 {
            // Skip bytes so that the rest starts on a 3-byte group boundary of the payload when the
            // marker starts at an offset congruent to `phase` modulo 3; keep only whole groups.
            let skip = (3 - phase) % 3
            let groups = (marker.count - skip) / 3
            let aligned = Array(marker[skip..<(skip + groups * 3)])
            patterns.append(Base64.encode(aligned))
        }
        return patterns
    }()

    /// Whether `needle` occurs in `bytes` (memchr for the first byte, memcmp for the rest; glibc's
    /// memmem is a GNU extension that Swift does not import).
    static func contains(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer) -> Bool {
        let needleCount = needle.count
        guard needleCount > 0, bytes.count >= needleCount, let base = bytes.baseAddress else { return false }
        return needle.withUnsafeBytes { pattern in
            let first = Int32(pattern[0])
            let lastStart = bytes.count - needleCount
            var offset = 0
            // Bounded: every iteration moves `offset` forward by at least one.
            while offset <= lastStart {
                guard let hit = memchr(base + offset, first, lastStart - offset + 1) else { return false }
                if memcmp(hit, pattern.baseAddress!, needleCount) == 0 { return true }
                offset = base.distance(to: UnsafeRawPointer(hit)) + 1
            }
            return false
        }
    }

    /// Whether the raw bytes contain the marker.
    static func containsCanary(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { contains(patterns[0], in: $0) }
    }

    /// Whether a frame shows plaintext: the marker in its raw bytes, or in any base64 field.
    static func frameLeaksPlaintext(_ frame: [UInt8]) -> Bool {
        frame.withUnsafeBytes { bytes in patterns.contains { contains($0, in: bytes) } }
    }
}
