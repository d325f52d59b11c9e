import ChatCore

/// A deterministic `EntropySource` (SplitMix64) so that a fuzz input or a generated test case
/// replays the same keys, instance IDs and handshakes every time.
///
/// TEST CODE ONLY. This type lives in `FuzzHarness`, which only the fuzz executables
/// (`FuzzTesting/`) and the test targets link; no shipped binary (`securechat`, `relay`) depends
/// on `FuzzHarness`, so a predictable key can never reach a real session. Keep it that way: a
/// product that links this module must not ship.
public final class SeededEntropy: EntropySource {
    private var state: UInt64

    public init(seed: UInt64) {
        self.state = seed
    }

    /// SplitMix64 (Steele, Lea, Flood 2014): a full-period 64-bit generator with good mixing;
    /// enough for reproducible test keys, worthless as a secret.
    private func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }

    public func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var index = 0
        while index < buffer.count {
            var word = next()
            for _ in 0..<8 where index < buffer.count {
                buffer[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
    }
}
