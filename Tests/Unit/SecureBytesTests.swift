import ChatCore
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
}
