import CClientSupport
import ChatCore
import ClientCore

/// The memory-lock limit (RLIMIT_MEMLOCK), raised at start.
public struct MemoryLockLimits: Sendable {
    /// The soft limit in bytes after raising it, nil when unlimited.
    public var softBytes: Int?
    /// The hard limit in bytes, nil when unlimited.
    public var hardBytes: Int?

    /// Raise the soft limit to the hard one (any process may) and return both. Call before the
    /// first secret is allocated.
    public static func raise() -> MemoryLockLimits {
        var soft: Int64 = 0
        var hard: Int64 = 0
        // A failed setrlimit leaves the limits as they were, which the check then judges.
        _ = scl_memlock_raise(&soft, &hard)
        return MemoryLockLimits(softBytes: soft < 0 ? nil : Int(soft), hardBytes: hard < 0 ? nil : Int(hard))
    }
}

/// At start: can this process lock what its secrets need? libsodium locks each secret but
/// ignores a failure, so a limit that is too low would silently leave keys and messages in memory
/// the kernel may swap to disk.
public enum LockedMemoryCheck {
    /// What the check decided: a warning to show (nil: enough), and the session's send queue size
    /// (smaller than the default only with `require`, so that a full queue still fits the limit).
    public struct Outcome: Sendable {
        /// The warning to show when the client starts, if any.
        public var warning: ClientNotice?
        /// The send queue's size for the session.
        public var sendQueueMax: Int
    }

    /// - Parameter require: `--require-locked-memory`: refuse (the failure's text) unless every
    ///   secret of the session can be locked, the send queue shortened to fit the limit if need be.
    public static func run(limits: MemoryLockLimits, require: Bool) -> Result<Outcome, ClientSetupError> {
        // The session's default tunables; the room plays no part (a constant, always valid).
        guard let room = try? RoomCode("DEFAULTS") else { return .failure(.process("no default room")) }
        let configuration = SessionConfiguration(room: room)
        let queueDefault = configuration.sendQueueMax
        // The first guarded allocation: is it really locked?
        let probe = SecureBytes(count: 1)
        defer { probe.wipe() }
        let firstLocked = LockedMemory.unlockedAllocations == 0
        guard let soft = limits.softBytes else {
            if firstLocked { return .success(Outcome(warning: nil, sendQueueMax: queueDefault)) }
            return require ? .failure(.process(refusal(limits, configuration))) : .success(Outcome(
                warning: .memoryNotLocked(limitBytes: nil), sendQueueMax: queueDefault))
        }
        let locked = max(0, Int(scl_memlock_current()))
        let wanted = require
            ? LockedMemory.sessionBytesMax(configuration) : LockedMemory.conversationBytes(configuration)
        // Enough under the limit, or more than the limit can be locked (CAP_IPC_LOCK: root).
        if firstLocked && (locked + wanted <= soft || scl_memlock_probe(wanted) == 0) {
            return .success(Outcome(warning: nil, sendQueueMax: queueDefault))
        }
        guard require else {
            return .success(Outcome(
                warning: .lockedMemoryLow(
                    limitBytes: soft, hardBytes: limits.hardBytes,
                    neededBytes: LockedMemory.conversationBytes(configuration)),
                sendQueueMax: queueDefault))
        }
        // Fit the send queue to the limit, as long as a conversation still fits.
        let perText = LockedMemory.lockedBytes(forCount: configuration.messageTextMaxBytes)
        let queue = (soft - locked - LockedMemory.sessionBytes(configuration, queuedMessages: 0)) / perText
        guard firstLocked && queue >= configuration.inFlightMax else {
            return .failure(.process(refusal(limits, configuration)))
        }
        return .success(Outcome(warning: nil, sendQueueMax: min(queue, queueDefault)))
    }

    private static func refusal(_ limits: MemoryLockLimits, _ configuration: SessionConfiguration) -> String {
        ClientNotice.lockedMemoryRefusal(
            limitBytes: limits.softBytes ?? 0, hardBytes: limits.hardBytes,
            neededBytes: LockedMemory.conversationBytes(configuration))
    }
}

/// Secrets that could not be locked during the session (the limit was reached after the start):
/// one warning, the first time.
final class LockedMemoryWatch {
    private let limits: MemoryLockLimits
    private var warned: Bool

    /// `alreadyWarned`: the start-up check said so already.
    init(limits: MemoryLockLimits, alreadyWarned: Bool) {
        self.limits = limits
        self.warned = alreadyWarned
    }

    /// A warning the first time an allocation was not locked, else nil. One atomic load.
    func check() -> ClientNotice? {
        guard !warned, LockedMemory.unlockedAllocations > 0 else { return nil }
        warned = true
        return .memoryNotLocked(limitBytes: limits.softBytes)
    }
}
