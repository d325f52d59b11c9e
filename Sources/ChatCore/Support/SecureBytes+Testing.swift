import Synchronization

/// What became of the `SecureBytes` allocated inside `SecureBytes.observingAllocations`: the
/// bytes each held at the moment it was released (after its zeroing, just before the memory went
/// back to the allocator, where nothing can read it any more), and the ones still allocated, so a
/// test can read them. Test SPI (`@_spi(Testing)`): it lets the key-wiping tests check memory,
/// not flags. Outside an observed scope it costs one nil check per wipe.
@_spi(Testing)
public final class SecureBytesObserver: Sendable {
    private struct Live: @unchecked Sendable {
        // @unchecked: only read under the mutex; the buffer is not Sendable, but the observer
        // lends it only to the test that observes it.
        var order: Int
        weak var buffer: SecureBytes?
    }

    private struct State {
        var allocations = 0
        var releases = 0
        var releasesNotZero = 0
        var live: [ObjectIdentifier: Live] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Allocations made in the observed scope.
    public var allocationCount: Int { state.withLock { $0.allocations } }

    /// Of those, how many were released (wiped or freed).
    public var releaseCount: Int { state.withLock { $0.releases } }

    /// Releases whose memory still held a non-zero byte when it was handed back: each is a secret
    /// left in freed memory. Zero unless wiping is broken.
    public var releasesNotZeroed: Int { state.withLock { $0.releasesNotZero } }

    /// The observed allocations still held (neither wiped nor freed), oldest first.
    public func liveBuffers() -> [SecureBytes] {
        let entries = state.withLock { Array($0.live.values) }
        return entries.sorted { $0.order < $1.order }.compactMap(\.buffer)
    }

    func allocated(_ buffer: SecureBytes) {
        state.withLock { state in
            state.allocations += 1
            state.live[ObjectIdentifier(buffer)] = Live(order: state.allocations, buffer: buffer)
        }
    }

    func released(_ id: ObjectIdentifier, bytes: UnsafeRawBufferPointer) {
        let zero = bytes.allSatisfy { $0 == 0 }
        state.withLock { state in
            state.releases += 1
            if !zero { state.releasesNotZero += 1 }
            state.live[id] = nil
        }
    }
}

extension SecureBytes {
    /// Run `body` with every `SecureBytes` it allocates reported to `observer` (test SPI).
    @_spi(Testing)
    public static func observingAllocations<R>(_ observer: SecureBytesObserver, _ body: () throws -> R) rethrows -> R {
        var context = allocationContext
        context.observer = observer
        return try $allocationContext.withValue(context, operation: body)
    }
}
