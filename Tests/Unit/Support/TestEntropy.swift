import ChatCore

/// An entropy source that hands out exactly the bytes it was given, then refuses: for feeding a
/// known-answer scalar (a vector's ya) through the real sampling path.
final class FixedEntropy: EntropySource {
    private var bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// True when every byte was consumed (the code under test read exactly what it should).
    var isExhausted: Bool { offset == bytes.count }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        precondition(offset + buffer.count <= bytes.count, "FixedEntropy: asked for more bytes than provided")
        for index in 0..<buffer.count { buffer[index] = bytes[offset + index] }
        offset += buffer.count
    }
}

/// A reproducible, seeded byte stream (SplitMix64) for tests that want the same "random" choices
/// every run. Not cryptographic; only tests use it.
final class SeededEntropy: EntropySource {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    private func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var index = 0
        while index < buffer.count {
            let word = next()
            for shift in stride(from: 0, to: 64, by: 8) where index < buffer.count {
                buffer[index] = UInt8(truncatingIfNeeded: word >> UInt64(shift))
                index += 1
            }
        }
    }
}

/// An entropy source that returns one byte value, always: every random value a session draws (its
/// instance ID, its X25519 secret key) is that byte repeated, whatever order they are drawn in, so
/// an outside implementation can compute the session's frames from the protocol's text alone
/// (scripts/session-vectors.py).
final class RepeatedByteEntropy: EntropySource {
    let byte: UInt8

    init(_ byte: UInt8) {
        self.byte = byte
    }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        for index in buffer.indices { buffer[index] = byte }
    }
}
