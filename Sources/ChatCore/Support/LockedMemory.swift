import CSodium
import Synchronization

/// Whether `SecureBytes` really are locked in RAM.
///
/// `sodium_malloc` locks each allocation with `mlock` but ignores a failure: past RLIMIT_MEMLOCK
/// (64 KiB on many systems; 8 MiB on recent ones) secrets silently land in memory the kernel may
/// swap to disk. So every guarded allocation is checked here, and the count of those that could
/// not be locked is kept for the client, which warns once (or, with `--require-locked-memory`,
/// refused to start when the limit was too small). Only a count: no address, no content.
public enum LockedMemory {
    private static let unlockedCount = Atomic<Int>(0)

    /// Guarded allocations made since start that could not be locked (they work, but may be
    /// swapped out).
    public static var unlockedAllocations: Int { unlockedCount.load(ordering: .relaxed) }

    /// The page size libsodium's guarded allocator rounds to (4 KiB on x86-64 and most arm64).
    public static let pageBytes = 4096

    /// The bytes one `SecureBytes` of `count` bytes locks: its data and libsodium's 16-byte canary,
    /// rounded up to whole pages (the guard pages around it are not locked).
    public static func lockedBytes(forCount count: Int) -> Int {
        (max(count, 1) + 16 + pageBytes - 1) / pageBytes * pageBytes
    }

    /// Check that a fresh guarded allocation is locked: locking it again succeeds when
    /// `sodium_malloc`'s own `mlock` did (pages already locked are not counted twice against the
    /// limit) and fails as it did otherwise. Two more system calls per allocation (`sodium_mlock`'s
    /// madvise, refused for an unaligned address, and mlock), beside the six of `sodium_malloc`.
    static func verify(_ pointer: UnsafeMutableRawPointer, count: Int) {
        if sodium_mlock(pointer, count) != 0 { unlockedCount.add(1, ordering: .relaxed) }
    }
}

extension LockedMemory {
    /// Guarded allocations a session holds besides its queued texts and retained keys, rounded up:
    /// two copies of the password, the record scratch buffer, the ratchet's four chain keys, its
    /// step scratch and open buffer, and a handshake's transient secrets (CPace, X25519).
    static let sessionFixedPages = 32

    /// An upper bound of the memory one session locks at once with `queuedMessages` texts of the
    /// largest size waiting for confirmation: the fixed allocations and the texts. Received records
    /// wait in the reorder buffer as ciphertext and lock nothing.
    public static func sessionBytes(_ configuration: SessionConfiguration, queuedMessages: Int) -> Int {
        sessionFixedPages * pageBytes + queuedMessages * lockedBytes(forCount: configuration.messageTextMaxBytes)
    }

    /// What a conversation locks when the peer keeps up: as many texts as may be in flight.
    public static func conversationBytes(_ configuration: SessionConfiguration) -> Int {
        sessionBytes(configuration, queuedMessages: configuration.inFlightMax)
    }

    /// The most a session can lock: its send queue full of texts of the largest size.
    public static func sessionBytesMax(_ configuration: SessionConfiguration) -> Int {
        sessionBytes(configuration, queuedMessages: configuration.sendQueueMax)
    }
}
