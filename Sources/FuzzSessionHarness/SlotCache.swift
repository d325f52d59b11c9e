import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A cache of values by byte-string key with a fixed number of slots, direct-mapped (a key's slot
/// is its hash modulo the slot count; a new key replaces the slot's entry). Once the slots are
/// full, storing an entry releases the one it replaces, so an input that meets new keys frees about
/// as many blocks as it keeps: libFuzzer runs an input that leaves more mallocs than frees a second
/// time, to look for a leak, and a growing dictionary made every new key cost a run.
/// Shared by concurrent tests (Tests/Fuzz), hence the lock.
final class SlotCache<Value: Sendable>: Sendable {
    private struct Entry: Sendable {
        let key: [UInt8]
        let value: Value
    }

    private let slots: Mutex<[Entry?]>
    private let slotCount: Int

    init(slots slotCount: Int) {
        precondition(slotCount > 0)
        self.slotCount = slotCount
        slots = Mutex([Entry?](repeating: nil, count: slotCount))
    }

    subscript(key: [UInt8]) -> Value? {
        get {
            let slot = slot(key)
            guard let entry = slots.withLock({ $0[slot] }), Self.equal(entry.key, key) else { return nil }
            return entry.value
        }
        set {
            let slot = slot(key)
            let entry = newValue.map { Entry(key: key, value: $0) }
            slots.withLock { $0[slot] = entry }
        }
    }

    /// The standard library's hash of the bytes (not instrumented for coverage, unlike a loop here).
    private func slot(_ key: [UInt8]) -> Int {
        var hasher = Hasher()
        key.withUnsafeBytes { hasher.combine(bytes: $0) }
        return Int(UInt(bitPattern: hasher.finalize()) % UInt(slotCount))
    }

    private static func equal(_ first: [UInt8], _ second: [UInt8]) -> Bool {
        guard first.count == second.count else { return false }
        return first.withUnsafeBytes { one in
            second.withUnsafeBytes { other in
                guard let one = one.baseAddress, let other = other.baseAddress else { return true }  // Both empty.
                return memcmp(one, other, first.count) == 0
            }
        }
    }
}
