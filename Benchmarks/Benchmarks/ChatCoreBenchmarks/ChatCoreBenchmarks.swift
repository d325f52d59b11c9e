import Benchmark
import ChatCore

// Micro-benchmarks of ChatCore's hot paths: time and allocations per operation.
// Run: cd Benchmarks && swift package --disable-sandbox benchmark --filter '...'
let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .cpuTotal, .mallocCountTotal, .throughput]
    let configuration = Benchmark.Configuration(metrics: metrics, scalingFactor: .kilo, maxDuration: .seconds(3))

    // MARK: Crypto: seal + open one record, the session's encrypt/decrypt path (one ratchet step each).

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

    // MARK: Handshakes: one side's whole computation, opening to confirmed session keys.

    Benchmark("Handshake: CPace (password), one side", configuration: configuration) { benchmark in
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

    Benchmark("Handshake: X25519 (no password), one side", configuration: configuration) { benchmark in
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

/// Two ratchets keyed from one X25519 exchange, one per side, as a session without a password has.
final class CryptoPair {
    let sender: MessageRatchet
    let receiver: MessageRatchet

    init() {
        let entropy = SystemEntropy()
        let alice = KeyManager()
        let bob = KeyManager()
        let alicePublic = alice.generateKeyPair(entropy: entropy)
        let bobPublic = bob.generateKeyPair(entropy: entropy)
        let transcript = [UInt8](repeating: 7, count: 32)
        let aliceSide: MessageRatchet.Side = alicePublic < bobPublic ? .low : .high
        sender = MessageRatchet(
            masterKey: SessionKeyDerivation.masterKey(
                handshakeSecret: try! alice.sharedSecret(with: bobPublic), transcriptHash: transcript),
            localSide: aliceSide)
        receiver = MessageRatchet(
            masterKey: SessionKeyDerivation.masterKey(
                handshakeSecret: try! bob.sharedSecret(with: alicePublic), transcriptHash: transcript),
            localSide: aliceSide.other)
    }
}
