import Synchronization

extension SecureBytes {
    /// Whether new `SecureBytes` come from libsodium's guarded allocator. Always true, unless the
    /// simulator switched it off.
    private static let guardedMemory = Atomic<Bool>(true)

    static var allocatesGuardedMemory: Bool { guardedMemory.load(ordering: .relaxed) }

    /// Back new `SecureBytes` with ordinary heap memory (still zeroed on wipe and on free) when
    /// `guarded` is false, for the simulator only; existing ones keep their allocator.
    ///
    /// `sodium_malloc` costs an mmap, two mprotects and an mlock per allocation and `sodium_free`
    /// a munlock and a munmap; a simulation of thousands of sessions spends most of its time
    /// there (BENCHMARKS.md, "Simulator"). Guard pages and locking protect secrets in a real
    /// process; the simulator's keys come from a seed and protect nothing, and what it tests is
    /// the logic, which is the same whichever allocator backs the bytes. Reachable only through
    /// `@_spi(Simulation) import ChatCore`, which no shipped binary uses.
    @_spi(Simulation)
    public static func useGuardedMemoryInSimulation(_ guarded: Bool) {
        guardedMemory.store(guarded, ordering: .relaxed)
    }
}
