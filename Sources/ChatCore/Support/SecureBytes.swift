import CSodium

/// Secret bytes in libsodium guarded memory.
///
/// The storage comes from `sodium_malloc`: it sits between guard pages (an overrun faults instead
/// of reading a neighbour), it is `mlock`ed (never written to swap, so never to disk) as far as
/// RLIMIT_MEMLOCK allows, and it is wiped with `sodium_memzero` when `wipe()` is called or the
/// object is freed. libsodium ignores a failed `mlock`, so `LockedMemory` checks every allocation
/// and the client warns (or refuses to start) when secrets cannot be locked.
///
/// Secret material lives only here. Callers reach the bytes through `withUnsafeBytes` /
/// `withUnsafeMutableBytes`, which lend a pointer for the duration of a closure, so a key is
/// never copied into an ordinary Swift array. It is a class, not a struct, precisely so that Swift
/// never makes silent copies: every holder shares the one guarded allocation.
public final class SecureBytes {
    /// The largest `count` allowed: SecureBytes is for keys and messages, not bulk data.
    public static let countMax = 1 << 20
    /// The number of bytes held (fixed at creation).
    public let count: Int
    /// Guarded allocations cannot be empty, so an empty `SecureBytes` still holds one byte.
    private let allocatedCount: Int
    /// Only ever read or replaced in an instant (copied into a local before use, never passed
    /// `inout`), so no two accesses can overlap: the dynamic exclusivity checks Swift would add
    /// to every `withUnsafeBytes` are skipped (they were a third of MessageRatchet's overhead
    /// over the same libsodium calls from C; BENCHMARKS.md).
    @exclusivity(unchecked) private var pointer: UnsafeMutableRawPointer?
    /// From `sodium_malloc` (always, except in the simulator: SecureBytes+Simulation.swift).
    private let isGuarded: Bool
    /// A test watching this allocation (SecureBytes+Testing.swift); nil otherwise.
    private let observer: SecureBytesObserver?

    /// Allocate `count` zeroed bytes of guarded memory (`count` may be zero).
    public init(count: Int) {
        precondition(count >= 0, "negative SecureBytes size")
        precondition(count <= Self.countMax, "SecureBytes is for keys and messages, not bulk data")
        Sodium.ensureInitialized()
        let context = Self.allocationContext
        isGuarded = context.guarded
        observer = context.observer
        let allocatedCount = max(count, 1)
        guard let allocation = isGuarded ? sodium_malloc(allocatedCount) : malloc(allocatedCount) else {
            // Out of address space or mappings (sodium_malloc does not fail for want of locked
            // memory: it ignores mlock's failure, which LockedMemory.verify reports instead).
            preconditionFailure("sodium_malloc(\(allocatedCount)) failed: no guarded memory left")
        }
        if isGuarded { LockedMemory.verify(allocation, count: allocatedCount) }
        sodium_memzero(allocation, allocatedCount)
        self.count = count
        self.allocatedCount = allocatedCount
        self.pointer = allocation
        observer?.allocated(self)
    }

    /// Allocate guarded memory and let `initializer` fill it in place.
    public convenience init<E: Error>(
        count: Int, initializer: (UnsafeMutableRawBufferPointer) throws(E) -> Void
    ) throws(E) {
        self.init(count: count)
        do throws(E) {
            try withUnsafeMutableBytes(initializer)
        } catch {
            wipe()
            throw error
        }
    }

    /// Copy `bytes` into guarded memory. The caller remains responsible for its own copy
    /// (use `Sodium.memzero` on it when it was secret).
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count)
        if bytes.count > 0 {
            withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
        }
    }

    deinit {
        if let pointer { release(pointer) }
    }

    /// True once `wipe()` has run: the bytes are gone and any access is a programming error.
    public var isWiped: Bool { pointer == nil }

    /// Zero the bytes and release the guarded allocation now, rather than at deinit.
    public func wipe() {
        guard let pointer else { return }
        release(pointer)
        self.pointer = nil
    }

    /// Zero the allocation and hand it back. An observing test sees the bytes in between: the
    /// last moment anything can read them.
    private func release(_ pointer: UnsafeMutableRawPointer) {
        sodium_memzero(pointer, allocatedCount)
        observer?.released(ObjectIdentifier(self), bytes: UnsafeRawBufferPointer(start: pointer, count: allocatedCount))
        if isGuarded { sodium_free(pointer) } else { free(pointer) }
    }

    /// Lend the bytes read-only for the duration of `body`. The pointer must not escape.
    @discardableResult
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        guard let pointer else { preconditionFailure("use of wiped SecureBytes") }
        return try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Lend the bytes writable for the duration of `body`. The pointer must not escape.
    @discardableResult
    public func withUnsafeMutableBytes<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        guard let pointer else { preconditionFailure("use of wiped SecureBytes") }
        return try body(UnsafeMutableRawBufferPointer(start: pointer, count: count))
    }

    /// Constant-time equality of contents (for tests and key confirmation).
    public func constantTimeEquals(_ other: SecureBytes) -> Bool {
        withUnsafeBytes { a in other.withUnsafeBytes { b in Sodium.constantTimeEqual(a, b) } }
    }

    /// Constant-time equality with public bytes.
    public func constantTimeEquals(_ bytes: [UInt8]) -> Bool {
        withUnsafeBytes { a in bytes.withUnsafeBytes { b in Sodium.constantTimeEqual(a, b) } }
    }
}
