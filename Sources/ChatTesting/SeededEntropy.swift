import ChatCore
@_exported import SeededRandom

// No shipped chat binary (`securechat`, `relay`) links this module (IsolationTests checks the
// package graph and the built binaries), so a predictable key can never reach a real session.

/// A reproducible `EntropySource`: simulated clients, fuzz inputs and tests draw their keys and
/// instance IDs here, so that a run, an input or a test case replays exactly.
///
/// TEST CODE ONLY: see the note at the top of this file.
public final class SeededEntropy: EntropySource {
    private var generator: Xoshiro256

    /// Stream `index` of `stream` of the run seeded with `seed`.
    public init(seed: UInt64, stream: Xoshiro256.Stream = .entropy, index: UInt64 = 0) {
        generator = Xoshiro256(seed: seed, stream: stream, index: index)
    }

    public func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        var offset = 0
        // Bounded: each round fills up to 8 of the buffer's bytes.
        while offset < buffer.count {
            var word = generator.next().littleEndian
            let chunk = min(8, buffer.count - offset)
            withUnsafeBytes(of: &word) { source in
                (base + offset).copyMemory(from: source.baseAddress!, byteCount: chunk)
            }
            offset += chunk
        }
    }
}
