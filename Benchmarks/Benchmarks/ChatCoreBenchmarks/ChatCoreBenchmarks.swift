import Benchmark
import ChatCore

// Micro-benchmarks of ChatCore's hot paths: time and allocations per operation.
// Run: cd Benchmarks && swift package --disable-sandbox benchmark --filter '...'
let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .cpuTotal, .mallocCountTotal, .throughput]
    let configuration = Benchmark.Configuration(metrics: metrics, scalingFactor: .kilo, maxDuration: .seconds(3))

    // MARK: Crypto: seal + open one record, the session's encrypt/decrypt path.

    for size in [64, 1024, 65536] {
        Benchmark("Crypto: seal+open \(size) B", configuration: configuration) { benchmark in
            let pair = CryptoPair()
            let plaintext = [UInt8](repeating: 0x5A, count: size)
            var sequence: UInt64 = 1
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let box = plaintext.withUnsafeBytes { try! pair.sender.sealRecord(sequence: sequence, $0) }
                let opened = box.withUnsafeBytes { try! pair.receiver.openRecord(sequence: sequence, $0) }
                blackHole(opened.count)
                opened.wipe()
                sequence += 1
            }
        }
    }

    // MARK: Envelopes: parse and serialize a 256-byte MSG.

    let payload = [UInt8](repeating: 0xA5, count: 256)
    let signalFrame = WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: payload)))

    Benchmark("Envelope: client decode MSG 256 B", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try! WireCodec.decodeRelayMessage(signalFrame))
        }
    }

    Benchmark("Envelope: relay inspect MSG 256 B", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(signalFrame.withUnsafeBytes { try! WireCodec.inspectClientFrame($0) })
        }
    }

    Benchmark("Envelope: serialize MSG 256 B", configuration: configuration) { benchmark in
        let message = ClientMessage.signal(Signal(kind: .message, payload: payload))
        for _ in benchmark.scaledIterations {
            blackHole(WireCodec.encode(message))
        }
    }

    // MARK: State machine and room logic.

    Benchmark("Session state machine: one step", configuration: configuration) { benchmark in
        var machine = SessionStateMachine(state: .connected)
        for _ in benchmark.scaledIterations {
            blackHole(try! machine.apply(.receiveMessage))
        }
    }

    Benchmark("Room logic: one SIGNAL forward", configuration: configuration) { benchmark in
        var rooms = RelayRooms<Int>()
        let room = try! RoomCode("BENCH")
        _ = rooms.join(1, room: room)
        _ = rooms.join(2, room: room)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(signalFrame.withUnsafeBytes { rooms.receive(frame: $0, from: 1) })
        }
    }
}

/// Two EncryptionHandlers holding the same session key, one per side.
final class CryptoPair {
    let sender: EncryptionHandler
    let receiver: EncryptionHandler

    init() {
        let entropy = SystemEntropy()
        let alice = KeyManager()
        let bob = KeyManager()
        let alicePublic = alice.generateKeyPair(entropy: entropy)
        let bobPublic = bob.generateKeyPair(entropy: entropy)
        let aliceSide: EncryptionHandler.Side = alicePublic < bobPublic ? .low : .high
        sender = EncryptionHandler(boxKey: try! alice.precomputedBoxKey(with: bobPublic), localSide: aliceSide)
        receiver = EncryptionHandler(boxKey: try! bob.precomputedBoxKey(with: alicePublic), localSide: aliceSide.other)
    }
}
