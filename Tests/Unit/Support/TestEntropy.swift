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
