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
