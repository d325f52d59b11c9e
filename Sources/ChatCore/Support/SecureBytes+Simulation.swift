extension SecureBytes {
    /// How new `SecureBytes` are allocated in the current task: from libsodium's guarded allocator
    /// (always, except inside `withOrdinaryMemoryInSimulation`), and whether a test observes them
    /// (`observingAllocations`, SecureBytes+Testing.swift). One task-local for both, so an
    /// allocation costs one task-local lookup. Scoped to the caller's call stack: nothing else in
    /// the process (tests running beside it) is affected.
    struct AllocationContext: Sendable {
        var guarded = true
        var observer: SecureBytesObserver?
    }

    @TaskLocal static var allocationContext = AllocationContext()

    /// Run `body` with new `SecureBytes` backed by ordinary heap memory (still zeroed on wipe and
    /// on free), for the simulator only.
    ///
    /// `sodium_malloc` costs an mmap, two mprotects and an mlock per allocation and `sodium_free`
    /// a munlock and a munmap; a simulation of thousands of sessions spent two thirds of its time
    /// there (BENCHMARKS.md, "Simulator"). Guard pages and locking protect secrets in a real
    /// process; the simulator's keys come from a seed and protect nothing, and what it tests is
    /// the logic, which is the same whichever allocator backs the bytes (SimulationTests checks
    /// that the trace hash is). Reachable only through `@_spi(Simulation) import ChatCore`, which
    /// no shipped binary uses.
    @_spi(Simulation)
    public static func withOrdinaryMemoryInSimulation<R>(_ body: () throws -> R) rethrows -> R {
        var context = allocationContext
        context.guarded = false
        return try $allocationContext.withValue(context, operation: body)
    }
}
