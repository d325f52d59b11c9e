extension SecureBytes {
    /// Whether new `SecureBytes` come from libsodium's guarded allocator: true, except inside
    /// `withOrdinaryMemoryInSimulation`. A task-local, so the choice is scoped to the simulator's
    /// call stack: nothing else in the process (tests running beside it) is affected.
    @TaskLocal static var guardedMemory = true

    static var allocatesGuardedMemory: Bool { guardedMemory }

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
        try $guardedMemory.withValue(false, operation: body)
    }
}
