@_spi(Testing) import ChatCore
import Testing

@Suite("SecureBytes: guarded memory")
struct SecureBytesTests {
    @Test("Starts zeroed, holds what is written, compares in constant time")
    func basics() {
        let secret = SecureBytes(count: 32)
        #expect(secret.testCopy == [UInt8](repeating: 0, count: 32))
        secret.withUnsafeMutableBytes { $0[0] = 7; $0[31] = 9 }
        let copy = [UInt8](repeating: 0, count: 32).enumerated().map { index, _ in
            index == 0 ? UInt8(7) : index == 31 ? 9 : 0
        }
        #expect(secret.constantTimeEquals(copy))
        #expect(!secret.constantTimeEquals([UInt8](repeating: 0, count: 32)))
        #expect(!secret.constantTimeEquals([UInt8](repeating: 0, count: 31)))
    }

    @Test("wipe releases the bytes; isWiped tells")
    func wipe() {
        let secret = [UInt8]([1, 2, 3]).withUnsafeBytes { SecureBytes(copying: $0) }
        #expect(!secret.isWiped)
        secret.wipe()
        #expect(secret.isWiped)
        secret.wipe()  // Idempotent.
        #expect(secret.isWiped)
    }

    @Test("Empty secure buffers are allowed")
    func empty() {
        let empty = SecureBytes(count: 0)
        #expect(empty.count == 0)
        #expect(empty.testCopy.isEmpty)
    }

    @Test("wipe and free zero the guarded bytes: the memory read at the moment it is handed back holds zeros")
    func releasedMemoryIsZero() {
        let observer = SecureBytesObserver()
        SecureBytes.observingAllocations(observer) {
            let secret = SecureBytes(count: 64)
            secret.withUnsafeMutableBytes { bytes in for index in bytes.indices { bytes[index] = 0xA5 } }
            // The observer sees the live buffer and what it holds...
            #expect(observer.liveBuffers().map(\.testCopy) == [[UInt8](repeating: 0xA5, count: 64)])
            secret.wipe()
            // ...and, at release, what was left in the memory before it went back: zeros.
            #expect(observer.releaseCount == 1)
            #expect(observer.releasesNotZeroed == 0, "wipe left secret bytes in the freed memory")
            #expect(observer.liveBuffers().isEmpty)
            // Freed without a wipe (deinit): zeroed as well.
            do {
                let dropped = [UInt8](repeating: 0x5A, count: 33).withUnsafeBytes { SecureBytes(copying: $0) }
                #expect(dropped.count == 33)
            }
            #expect(observer.releaseCount == 2)
            #expect(observer.releasesNotZeroed == 0, "deinit left secret bytes in the freed memory")
        }
        #expect(observer.allocationCount == 2)
    }
}
