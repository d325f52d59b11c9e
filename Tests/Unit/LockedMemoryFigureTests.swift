import ChatCore
import Testing

@testable import ClientCore

@Suite("Locked memory: what a session can lock")
struct LockedMemoryFigureTests {
    @Test("Locked memory: bytes per secret in whole pages with the canary; a session's bounds from its configuration")
    func lockedMemoryFigures() throws {
        #expect(LockedMemory.lockedBytes(forCount: 0) == 4096)
        #expect(LockedMemory.lockedBytes(forCount: 4080) == 4096)
        #expect(LockedMemory.lockedBytes(forCount: 4081) == 8192)
        #expect(LockedMemory.lockedBytes(forCount: 4096) == 8192)
        let configuration = SessionConfiguration(room: try RoomCode("LOCK"))
        #expect(LockedMemory.conversationBytes(configuration) == 640 * 1024)
        #expect(LockedMemory.sessionBytesMax(configuration) == 8320 * 1024)
        #expect(ClientNotice.kibibytes(65_536) == "64 KiB")
        #expect(ClientNotice.kibibytes(8320 * 1024) == "8.1 MiB")
        #expect(ClientNotice.kibibytes(16 << 20) == "16 MiB")
    }
}
