import ChatTesting
import Foundation
import Simulator
import Testing
import TestSupport

/// The cluster simulator (`--nodes`, issue 15): small runs of three nodes sharing the virtual Redis
/// with every cluster fault; `PlantedBugTests` runs its planted bugs.
@Suite("Simulator: the cluster relay", .cpuBound)
struct ClusterSimulationTests {
    static func options(seed: UInt64, peers: Int = 40, plantedBug: PlantedBug? = nil) -> SimulationOptions {
        var options = SimulationTests.allFaults(seed: seed, peers: peers, plantedBug: plantedBug)
        options.cluster = plantedBug?.clusterFaults
            ?? ClusterOptions(nodes: 3, nodeCrash: true, redisRestart: true, redisPartition: true)
        options.squatters = peers / 4
        return options
    }

    /// `simulator --nodes 3 --peers 400 --drop 0.05 --node-crash --redis-restart --redis-partition
    /// --node-frames-lost --seed 6`: a partition's node taken for dead, back, and one side's
    /// PEER_FOUND lost (caught with `--plant-bug cluster-mate-never-told`, the old behaviour).
    static var mateNeverToldOptions: SimulationOptions {
        var options = SimulationOptions(peers: 400, seed: 6, drop: 0.05, plantedBug: .clusterMateNeverTold)
        options.cluster = ClusterOptions(
            nodes: 3, nodeCrash: true, redisRestart: true, redisPartition: true, nodeFramesLost: true)
        return options
    }

    @Test("Three nodes, every fault kind: every invariant holds and the faults happened", arguments: 1...4)
    func sweep(seed: UInt64) throws {
        let report = try SimulationTests.run(Self.options(seed: seed))
        #expect(report.violation == nil, "\(report.violation.map { "\($0.invariant.rawValue): \($0.detail)" } ?? "")")
        #expect(report.settings.cluster?.nodes == 3)
        #expect(report.network.relayCrashes > 0, "no node crashed")
        #expect(report.liveness.convergenceMilliseconds != nil)
        #expect(report.messages.stillPending == 0)
    }

    @Test("The same cluster seed gives the same trace hash; --nodes 1 is the single relay's run")
    func determinism() throws {
        let first = try SimulationTests.run(Self.options(seed: 3))
        let second = try SimulationTests.run(Self.options(seed: 3))
        #expect(first.traceHash == second.traceHash && first.events == second.events)
        var single = SimulationTests.allFaults(seed: 3)
        let plain = try SimulationTests.run(single)
        single.cluster = ClusterOptions(nodes: 1)
        let one = try SimulationTests.run(single)
        #expect(plain.traceHash == one.traceHash)
        #expect(plain.traceHash != first.traceHash)
    }

    @Test("Cluster faults and bugs need --nodes 2 or more; --mitm is the single relay's")
    func validation() {
        var options = SimulationTests.allFaults(seed: 1)
        options.cluster = ClusterOptions(nodes: 1, nodeCrash: true)
        #expect(throws: SimulationError.self) { try Simulation(options: options) }
        options = SimulationTests.allFaults(seed: 1, plantedBug: .clusterLongHeartbeatTTL)
        #expect(throws: SimulationError.self) { try Simulation(options: options) }
        options = Self.options(seed: 1)
        options.mitm = true
        #expect(throws: SimulationError.self) { try Simulation(options: options) }
    }

    /// The world reimplements `ClusterLink`'s timing (ChatTesting cannot link the NIO shell): the
    /// numbers must stay the shell's.
    @Test("The virtual cluster's timing is ClusterLink's")
    func timingIsTheShells() throws {
        let source = try String(
            contentsOf: packageRoot.appendingPathComponent("Sources/RelayServer/ClusterLink.swift"), encoding: .utf8)
        let expected: [(String, Int64)] = [
            ("heartbeatMilliseconds", VirtualClusterTiming.heartbeatMilliseconds),
            ("nodeTTLMilliseconds", VirtualClusterTiming.nodeTTLMilliseconds),
            ("commandTimeoutMilliseconds", VirtualClusterTiming.commandTimeoutMilliseconds),
            ("reconnectFirstMilliseconds", VirtualClusterTiming.reconnectFirstMilliseconds),
            ("reconnectMaxMilliseconds", VirtualClusterTiming.reconnectMaxMilliseconds),
        ]
        for (name, value) in expected {
            #expect(source.contains("static let \(name): Int64 = \(value)"), "ClusterTiming.\(name) is not \(value)")
        }
    }
}
