import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// How the test suite shares CI's two cores.
///
/// Every test of every target runs in one process, in parallel, on Swift's cooperative pool: two
/// threads on a two-core machine. A synchronous CPU-bound test (a simulation, a property run) holds
/// one of them for its whole run, so two at once stop every other test's tasks, and with them the
/// deadlines and sleeps of the tests that wait on real processes: those then fail in a burst, not
/// because anything was wrong but because nobody looked in time. And tests that run a transfer or a
/// flood between real processes keep a core busy each; several at once starve everything else.
///
/// So each kind takes its turn: one `.cpuBound` test at a time, on a thread of its own (never on the
/// cooperative pool), and one `.heavy` test at a time; everything else runs beside them.
public enum MachineShare {
    static let cpuBoundTurn = Gate(width: 1)
    static let heavyTurn = Gate(width: 1)
    static let executor = ThreadExecutor()

    /// Whether the caller runs on the thread of `.cpuBound` tests.
    public static var onCPUBoundThread: Bool { executor.isCurrent }

    /// A counting semaphore whose waiters are served in order.
    actor Gate {
        private var free: Int
        /// Bounded by the number of tests in the suite.
        private var waiters: [CheckedContinuation<Void, Never>] = []

        init(width: Int) {
            free = width
        }

        func acquire() async {
            if free > 0 {
                free -= 1
                return
            }
            await withCheckedContinuation { waiters.append($0) }
        }

        func release() {
            if waiters.isEmpty {
                free += 1
            } else {
                waiters.removeFirst().resume()
            }
        }
    }

    /// Run `body` holding a turn of `gate`.
    static func withTurn(of gate: Gate, _ body: () async throws -> Void) async throws {
        await gate.acquire()
        do {
            try await body()
        } catch {
            await gate.release()
            throw error
        }
        await gate.release()
    }
}

/// A task executor with one thread of its own: the jobs of a task that prefers it (and of that
/// task's synchronous test body) run there, off the cooperative pool. Hand-written because neither
/// Foundation nor the standard library has a thread-backed `TaskExecutor` on Linux.
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    /// Guarded by `condition`; bounded by the tasks preferring this executor (one at a time, by
    /// `MachineShare.cpuBoundTurn`, plus the child tasks it starts).
    private var jobs: [UnownedJob] = []

    /// The executor's thread, once it has started (guarded by `condition`).
    private var thread: pthread_t?

    init() {
        Thread.detachNewThread { [unowned self] in
            condition.lock()
            thread = pthread_self()
            condition.unlock()
            serve()
        }
    }

    /// Whether the caller runs on this executor's thread.
    var isCurrent: Bool {
        condition.lock()
        defer { condition.unlock() }
        guard let thread else { return false }
        return pthread_equal(thread, pthread_self()) != 0
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The thread's loop: it lives as long as the test process.
    private func serve() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// `.heavy`: the test keeps a core busy through the processes it runs (a file transfer, a flood);
/// `.cpuBound`: it keeps a core busy in this process, and runs on `MachineShare`'s own thread.
public struct MachineShareTrait: TestTrait, SuiteTrait, TestScoping {
    let offPool: Bool

    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // Each test case takes its own turn: a suite holding one for all its tests would hold it
        // while its tests wait for one.
        testCase == nil ? nil : self
    }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        if offPool {
            try await MachineShare.withTurn(of: MachineShare.cpuBoundTurn) {
                try await withTaskExecutorPreference(MachineShare.executor) { try await function() }
            }
        } else {
            try await MachineShare.withTurn(of: MachineShare.heavyTurn) { try await function() }
        }
    }
}

extension Trait where Self == MachineShareTrait {
    /// The test runs processes that keep a core busy: one such test at a time.
    public static var heavy: Self { MachineShareTrait(offPool: false) }
    /// The test is CPU-bound in this process: one at a time, on a thread of its own.
    public static var cpuBound: Self { MachineShareTrait(offPool: true) }
}
