import ChatCore

#if canImport(Glibc)
    import Glibc
#endif

/// A 64-bit fingerprint of everything that happened in a run, in order.
///
/// Not Swift's `Hasher` (seeded per process unless SWIFT_DETERMINISTIC_HASHING is set) and not
/// `hashValue`: a fixed mixing function over a canonical encoding of every event, so the same seed
/// and build always print the same hash. It fingerprints runs; it is not a cryptographic hash, so
/// speed wins (it sees every byte of every frame; a cryptographic hash would cost a third of a run).
/// The round and the finaliser are xxHash64's (public domain constants).
public struct TraceHasher: Sendable {
    private static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let prime3: UInt64 = 0x1656_67B1_9E37_79F9

    private var state: UInt64 = 0x2718_2818_2845_9045
    private var length: UInt64 = 0

    public init() {}

    @inline(__always)
    public mutating func mix(_ value: UInt64) {
        var lane = value &* Self.prime2
        lane = (lane << 31) | (lane >> 33)
        lane &*= Self.prime1
        state ^= lane
        state = ((state << 27) | (state >> 37)) &* Self.prime1 &+ Self.prime3
        length &+= 8
    }

    /// Mix a byte string: its length, then its bytes eight at a time.
    public mutating func mix(bytes: UnsafeRawBufferPointer) {
        mix(UInt64(bytes.count))
        var offset = 0
        while offset + 8 <= bytes.count {
            mix(bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian)
            offset += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count {
            tail |= UInt64(bytes[offset]) << shift
            shift += 8
            offset += 1
        }
        mix(tail)
    }

    public mutating func mix(bytes: [UInt8]) {
        bytes.withUnsafeBytes { mix(bytes: $0) }
    }

    /// The fingerprint so far.
    public var value: UInt64 {
        var h = state ^ length
        h ^= h >> 33
        h &*= Self.prime2
        h ^= h >> 29
        h &*= Self.prime3
        h ^= h >> 32
        return h
    }

    /// The fingerprint as 16 lowercase hex digits.
    public var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// What a trace line is about. The world records the network, the relay and what each client
/// shows; the simulator adds its workload, faults and adversary.
public enum TraceKind: UInt8, Sendable, CaseIterable {
    // Connections and frames (the world).
    case connectAttempt = 1
    case linkUp
    case connectFailed
    case frameAtRelay
    case frameAtClient
    case relaySeesClose
    case clientSeesClose
    case clientTimer
    case relayTimer
    case frameDropped
    case frameDuplicated
    case frameLost
    case relaySend
    case relayForward
    case relayClose
    case relayPause
    case relayResume
    // What a client shows (the world, from its driver's display events).
    case stateChanged
    case received
    case queued
    case refused
    case delivered
    case undeliverable
    case exited
    // Faults (the world carries them out; the simulator schedules them).
    case reset
    case partition
    case clientCrash
    case clientStart
    case relayCrash
    case relayRestart
    // The workload and the phases (the simulator).
    case userTypes
    case userEndsInput
    case heal
    case convergenceCheck
    case goodbye
    // The malicious relay (`--mitm`): its endpoints toward each client.
    case mitmIntercept
    case mitmSend
    case mitmDecrypted
    case mitmTimer
    case mitmRespawn
    // The cluster world (`--nodes`); numbered apart so that other kinds can be added above.
    case clusterNodeCrash = 200
    case clusterNodeRestart
    case redisRestart
    case redisPartition
    case clusterLinkUp
    case clusterLinkDown

    var label: String {
        switch self {
        case .connectAttempt: "connect-attempt"
        case .linkUp: "link-up"
        case .connectFailed: "connect-failed"
        case .frameAtRelay: "relay<-frame"
        case .frameAtClient: "client<-frame"
        case .relaySeesClose: "relay-sees-close"
        case .clientSeesClose: "client-sees-close"
        case .clientTimer: "timer"
        case .relayTimer: "relay-timer"
        case .frameDropped: "  net-drop"
        case .frameDuplicated: "  net-dup"
        case .frameLost: "  net-lost"
        case .relaySend: "  relay-send"
        case .relayForward: "  relay-forward"
        case .relayClose: "  relay-close"
        case .relayPause: "  relay-pause"
        case .relayResume: "  relay-resume"
        case .stateChanged: "  state"
        case .received: "  received"
        case .queued: "  queued"
        case .refused: "  refused"
        case .delivered: "  delivered"
        case .undeliverable: "  undeliverable"
        case .exited: "  exited"
        case .reset: "reset"
        case .partition: "partition"
        case .clientCrash: "client-crash"
        case .clientStart: "client-start"
        case .relayCrash: "relay-crash"
        case .relayRestart: "relay-restart"
        case .userTypes: "user-types"
        case .userEndsInput: "user-ends-input"
        case .heal: "heal"
        case .convergenceCheck: "convergence-check"
        case .goodbye: "goodbye"
        case .mitmIntercept: "  mitm-intercept"
        case .mitmSend: "  mitm-send"
        case .mitmDecrypted: "  mitm-decrypted"
        case .mitmTimer: "mitm-timer"
        case .mitmRespawn: "  mitm-respawn"
        case .clusterNodeCrash: "node-crash"
        case .clusterNodeRestart: "node-restart"
        case .redisRestart: "redis-restart"
        case .redisPartition: "redis-partition"
        case .clusterLinkUp: "  redis-link-up"
        case .clusterLinkDown: "  redis-link-down"
        }
    }
}

/// One line of the trace, kept compact (no strings) so recording costs almost nothing; it is
/// formatted only when printed. It never holds message text or key bytes, so a trace file holds
/// no message (the project rule), even though simulated messages are synthetic.
public struct TraceRecord: Sendable {
    public var time: UInt64
    public var kind: TraceKind
    public var client: Int32
    public var connection: UInt64
    /// Kind-specific: a message number, a frame length, packed states, a relay target, ...
    public var value: UInt64
    /// Kind-specific text code (a signal kind, a rejection), for display only.
    public var note: StaticString

    public var formatted: String {
        var line = Self.formatTime(time) + " " + kind.label
        if client >= 0 { line += " c\(client)" }
        if connection != 0 { line += " link\(connection)" }
        switch kind {
        case .stateChanged:
            let from = SessionState.allCases[Int(value >> 8)]
            let to = SessionState.allCases[Int(value & 0xFF)]
            line += " \(from)->\(to)"
        case .frameAtRelay, .frameAtClient, .frameDropped, .frameDuplicated, .frameLost, .relaySend, .mitmIntercept,
             .mitmSend:
            line += " \(value)B"
        case .relayForward:
            line += " to-c\(value)"
        case .received, .queued, .delivered, .undeliverable, .userTypes:
            line += " msg\(value)"
        case .partition:
            line += " \(value)ms"
        default:
            if value != 0 { line += " \(value)" }
        }
        let noteText = "\(note)"
        if !noteText.isEmpty { line += " " + noteText }
        return line
    }

    public static func formatTime(_ nanoseconds: UInt64) -> String {
        let micros = nanoseconds / 1_000
        let fraction = String(micros % 1_000)
        return "t=\(micros / 1_000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)ms"
    }
}

/// The trace: every record feeds the hash; the last `tailCapacity` are kept for a failure report;
/// with a file, every record is also written there as a line.
public final class Trace {
    public private(set) var hasher = TraceHasher()
    private var tail: [TraceRecord]
    private var tailNext = 0
    private var tailFilled = false
    private let file: UnsafeMutablePointer<FILE>?
    public private(set) var recordCount: UInt64 = 0
    /// Called with every record as a line, when set (triage: `fuzz-explain --verbose`).
    public var lineHandler: ((String) -> Void)?

    /// Why a trace file could not be opened.
    public struct FileError: Error, Hashable, Sendable {
        public var path: String
        public var errno: Int32
    }

    public init(tailCapacity: Int, filePath: String?) throws(FileError) {
        precondition(tailCapacity >= 1)
        tail = []
        tail.reserveCapacity(tailCapacity)
        if let filePath {
            guard let handle = fopen(filePath, "w") else {
                throw FileError(path: filePath, errno: errno)
            }
            file = handle
        } else {
            file = nil
        }
        self.tailCapacity = tailCapacity
    }

    private let tailCapacity: Int

    deinit {
        if let file { fclose(file) }
    }

    @inline(__always)
    public func record(
        _ kind: TraceKind, time: UInt64, client: Int32 = -1, connection: UInt64 = 0, value: UInt64 = 0,
        note: StaticString = ""
    ) {
        hasher.mix(time)
        hasher.mix(UInt64(kind.rawValue) << 32 | UInt64(UInt32(bitPattern: client)))
        hasher.mix(connection)
        hasher.mix(value)
        recordCount &+= 1
        if let lineHandler {
            lineHandler(TraceRecord(
                time: time, kind: kind, client: client, connection: connection, value: value, note: note).formatted)
        }
        // Convergence checks go into the hash but not the tail, which they would flood.
        if kind == .convergenceCheck && file == nil { return }
        let entry = TraceRecord(
            time: time, kind: kind, client: client, connection: connection, value: value, note: note)
        if kind == .convergenceCheck {
            // Only the file gets them.
        } else if tail.count < tailCapacity {
            tail.append(entry)
        } else {
            tail[tailNext] = entry
            tailFilled = true
        }
        tailNext = (tailNext + 1) % tailCapacity
        if let file {
            let line = entry.formatted + "\n"
            _ = line.withCString { fputs($0, file) }
        }
    }

    /// Mix bytes that belong to the record just made (a frame's content).
    @inline(__always)
    public func mixBytes(_ bytes: [UInt8]) {
        hasher.mix(bytes: bytes)
    }

    /// The last records, oldest first, formatted.
    public func tailLines() -> [String] {
        let ordered = tailFilled ? Array(tail[tailNext...] + tail[..<tailNext]) : tail
        return ordered.map(\.formatted)
    }

    public func flush() {
        if let file { fflush(file) }
    }
}
