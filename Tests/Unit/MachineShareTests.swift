import Testing
import TestSupport

/// The suite's share of the machine works as Tests/Support/MachineShare.swift says.
@Suite("MachineShare: CPU-bound tests off the cooperative pool")
struct MachineShareTests {
    @Test("A .cpuBound test's synchronous body runs on MachineShare's own thread", .cpuBound)
    func cpuBoundRunsOffPool() {
        #expect(MachineShare.onCPUBoundThread)
    }

    @Test("Without the trait a test runs where Swift Testing puts it, not on that thread")
    func othersRunOnThePool() {
        #expect(!MachineShare.onCPUBoundThread)
    }
}
