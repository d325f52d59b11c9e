import CSodium

/// The only way randomness enters ChatCore.
///
/// Production code uses `SystemEntropy` (libsodium's CSPRNG, which reads the kernel's
/// `getrandom`). A seeded, reproducible source exists only in the simulator module, which no
/// shipped binary links; ChatCore itself has no way to construct one.
public protocol EntropySource: AnyObject {
    /// Fill `buffer` with uniformly random bytes.
    func fill(_ buffer: UnsafeMutableRawBufferPointer)
}

extension EntropySource {
    /// A uniformly random 64-bit value.
    public func nextUInt64() -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { fill($0) }
        return value
    }

    /// A uniformly random value in `0..<upperBound` (rejection sampling, no modulo bias).
    public func uniform(below upperBound: UInt64) -> UInt64 {
        precondition(upperBound > 0)
        let limit = UInt64.max - (UInt64.max % upperBound)
        // Bounded loop: each draw is rejected with probability < 1/2, so 128 draws all failing
        // has probability < 2^-128; treat that as a broken source.
        for _ in 0..<128 {
            let draw = nextUInt64()
            if draw < limit { return draw % upperBound }
        }
        preconditionFailure("entropy source is not uniform")
    }

    /// `count` random bytes in ordinary memory: only for public values (nonces, identifiers).
    public func publicBytes(count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { fill($0) }
        return bytes
    }
}

/// libsodium's CSPRNG (`randombytes_buf`): the entropy source of every shipped binary.
public final class SystemEntropy: EntropySource, @unchecked Sendable {
    // @unchecked: the class has no stored state; randombytes_buf is thread-safe.
    public init() {
        Sodium.ensureInitialized()
    }

    public func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }
}
