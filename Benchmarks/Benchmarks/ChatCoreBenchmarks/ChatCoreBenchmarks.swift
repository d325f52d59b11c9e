import Benchmark
import ChatCore
import ChatTesting
import RelayCore
import Simulator

// Micro-benchmarks of ChatCore's hot paths and of the simulator: time, CPU and allocations per
// operation (ordo-one/benchmark; allocations through its malloc interposer).
//
//   cd Benchmarks && swift package --disable-sandbox benchmark                 # everything
//   cd Benchmarks && swift package --disable-sandbox benchmark --filter 'Crypto.*'
//
// Results and the machine they ran on: BENCHMARKS.md, "Micro-benchmarks".
let benchmarks: @Sendable () -> Void = {
    // Wall clock, not CPU time: the process CPU clock ticks in 10 ms steps here, far coarser than
    // one operation. Allocations are malloc calls (the interposer); sodium_malloc's mmaps are not.
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]
    // Per-operation benchmarks run 1,000 operations per measured iteration (`scaledIterations`),
    // so one sample is long enough for the clock; the figures are reported per operation.
    let perOperation = Benchmark.Configuration(metrics: metrics, scalingFactor: .kilo, maxDuration: .seconds(2))

    // MARK: Crypto: seal + open one chat record with MessageRatchet, the session's construction.

    for size in [64, 1024, 65536] {
        Benchmark("Crypto: MessageRatchet seal+open \(size) B", configuration: perOperation) { benchmark in
            let pair = RatchetPair()
            let plaintext = [UInt8](repeating: 0x5A, count: size)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                blackHole(pair.sealAndOpen(plaintext))
            }
        }
    }

    // The same at 1 KiB, opening into a fresh guarded allocation per record (`openRecord -> SecureBytes`).
    Benchmark("Crypto: MessageRatchet seal+open 1024 B, allocating open", configuration: perOperation) { benchmark in
        let pair = RatchetPair()
        let plaintext = [UInt8](repeating: 0x5A, count: 1024)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let opened = pair.sealAndOpenAllocating(plaintext)
            blackHole(opened.count)
            opened.wipe()
        }
    }

    // MARK: Handshakes: one side's whole computation, opening to confirmed session keys.

    Benchmark("Handshake: CPace (password), one side", configuration: perOperation) { benchmark in
        let password = try! Password("oyster-lemon")
        let ci = CPaceParty.channelIdentifier(room: try! RoomCode("BENCH"))
        let peer = try! CPaceParty(
            password: password, channelIdentifier: ci, associatedData: [2], setting: .symmetric, entropy: SystemEntropy())
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let party = try! CPaceParty(
                password: password, channelIdentifier: ci, associatedData: [1], setting: .symmetric,
                entropy: SystemEntropy())
            let pending = try! party.receive(peerShare: peer.share, peerAssociatedData: peer.associatedData)
            // The peer's tag is not at hand here; the cost of checking it is one HMAC, as for ours.
            pending.wipe()
            blackHole(pending.localTag.count)
        }
    }

    Benchmark("Handshake: X25519 (no password), one side", configuration: perOperation) { benchmark in
        let peer = KeyManager().generateKeyPair(entropy: SystemEntropy())
        let transcript = [UInt8](repeating: 7, count: 32)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let keys = KeyManager()
            keys.generateKeyPair(entropy: SystemEntropy())
            let shared = try! keys.sharedSecret(with: peer)
            let ratchet = MessageRatchet(
                masterKey: SessionKeyDerivation.masterKey(handshakeSecret: shared, transcriptHash: transcript),
                localSide: .low)
            shared.wipe()
            blackHole(ratchet.localSide)
        }
    }

    // MARK: Envelopes: parse and serialize a SIGNAL carrying a 256-byte sealed record.

    let payload = [UInt8](repeating: 0xA5, count: 256)
    let signal = ClientMessage.signal(Signal(kind: .message, payload: payload))
    let signalFrame = WireCodec.encode(signal)

    Benchmark("Envelope: serialize SIGNAL 256 B", configuration: perOperation) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(WireCodec.encode(signal))
        }
    }

    Benchmark("Envelope: client parse SIGNAL 256 B", configuration: perOperation) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try! WireCodec.decodeRelayMessage(signalFrame))
        }
    }

    Benchmark("Envelope: relay inspect SIGNAL 256 B", configuration: perOperation) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(signalFrame.withUnsafeBytes { try! WireCodec.inspectClientFrame($0) })
        }
    }

    // MARK: Session: the lifecycle table, and one whole message through two sessions.

    Benchmark("Session: state machine step", configuration: perOperation) { benchmark in
        var machine = SessionStateMachine(state: .connected)
        for _ in benchmark.scaledIterations {
            blackHole(try! machine.apply(.receiveMessage))
        }
    }

    // ~0.2 ms per message (today's session allocates guarded memory per message): one per sample.
    let perMessage = Benchmark.Configuration(metrics: metrics, scalingFactor: .one, maxDuration: .seconds(2))
    Benchmark("Session: one message A to B, delivered and acknowledged", configuration: perMessage) {
        benchmark in
        let chat = SessionPair()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            chat.sendOneMessage()
        }
        benchmark.stopMeasurement()
        chat.checkAllDelivered()
    }

    // MARK: Room logic: the relay forwarding one SIGNAL.

    Benchmark("Room logic: one SIGNAL forward", configuration: perOperation) { benchmark in
        var rooms = RelayRooms<Int>()
        let room = try! RoomCode("BENCH")
        _ = rooms.join(1, room: room)
        _ = rooms.join(2, room: room)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(signalFrame.withUnsafeBytes { rooms.receive(frame: $0, from: 1) })
        }
    }

    // MARK: Simulator: a whole small run, with events per second as a custom metric.

    let eventsPerSecond = BenchmarkMetric.custom("events per second", polarity: .prefersLarger, useScalingFactor: false)
    let simulation = Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, eventsPerSecond], scalingFactor: .one,
        maxDuration: .seconds(5), maxIterations: 20)
    Benchmark("Simulator: 100 peers, drop 0.05, seed 1", configuration: simulation) { benchmark in
        // Every fault but drop off and a fixed workload, so each iteration does the same events.
        let options = SimulationOptions(
            peers: 100, seed: 1, drop: 0.05, dup: 0, delayMilliseconds: 0...50, reset: false, partition: false,
            relayCrash: false, peerRestart: false, messagesPerPeer: 20, faultPhaseSeconds: 30)
        for _ in benchmark.scaledIterations {
            let report = try! Simulation(options: options).run()
            precondition(report.passed, "the benchmark simulation must pass its invariants")
            benchmark.measurement(eventsPerSecond, Int(report.eventsPerSecond))
            blackHole(report.events)
        }
    }
}

/// A sender and a receiver ratcheting from one master key, as two peers after the handshake.
final class RatchetPair {
    let sender: MessageRatchet
    let receiver: MessageRatchet
    private var sequence: UInt64 = 1

    init() {
        let entropy = SystemEntropy()
        let master = SecureBytes(count: SodiumSizes.kdfKey) { entropy.fill($0) }
        let copy = SecureBytes(count: SodiumSizes.kdfKey) { out in master.withUnsafeBytes { out.copyMemory(from: $0) } }
        sender = MessageRatchet(masterKey: master, localSide: .low)
        receiver = MessageRatchet(masterKey: copy, localSide: .high)
    }

    /// Seal, then open with the plaintext lent from the receiver's guarded buffer; returns its last byte.
    func sealAndOpen(_ plaintext: [UInt8]) -> UInt8 {
        defer { sequence += 1 }
        let box = try! plaintext.withUnsafeBytes { try sender.sealRecord(sequence: sequence, $0) }
        return try! box.withUnsafeBytes { ciphertext in
            try receiver.openRecord(sequence: sequence, ciphertext) { $0.last ?? 0 }
        }
    }

    /// Seal, then open into a new guarded allocation.
    func sealAndOpenAllocating(_ plaintext: [UInt8]) -> SecureBytes {
        defer { sequence += 1 }
        let box = try! plaintext.withUnsafeBytes { try sender.sealRecord(sequence: sequence, $0) }
        return try! box.withUnsafeBytes { try receiver.openRecord(sequence: sequence, $0) }
    }
}

/// Two sessions joined through one `RelayRooms` in ChatTesting's `SessionRoom` (the session unit
/// tests' world, without its log), brought to CONNECTED before measuring.
final class SessionPair {
    private let room = SessionRoom(keepsLog: false)
    private var messagesSent = 0
    static let text = String(repeating: "x", count: 100)

    init() {
        let code = try! RoomCode("BENCHROOM")
        for _ in 0..<2 { room.addSession(room: code) }
        precondition(room.sessions.allSatisfy { $0.state == .connected }, "the benchmark sessions must connect")
    }

    func sendOneMessage() {
        room.send(0, Self.text)
        messagesSent += 1
    }

    func checkAllDelivered() {
        precondition(room.receivedCounts[1] == messagesSent, "every benchmark message must arrive")
        precondition(room.sessions[0].pendingCount == 0, "every benchmark message must be acknowledged")
    }
}
