import ChatCore
import Foundation
import Testing

@testable import ChatClient

#if canImport(Glibc)
import Glibc
#endif

/// A received file goes to disk as it is written (`WriteBehind`), so that a large file neither
/// fills the page cache nor leaves the whole file for the final `fsync`.
@Suite("WriteBehind: a received file's pages go to disk as it is written")
struct WriteBehindTests {
    static let step = WriteBehind.stepBytes

    @Test("Nothing under a step; then each step is written out and the one before it dropped; a jump starts again")
    func steps() {
        var behind = WriteBehind()
        var next = behind.wrote(offset: 0, count: Self.step - 1)
        #expect(next.writeOut == nil && next.drop == nil)
        next = behind.wrote(offset: Self.step - 1, count: 1)
        #expect(next.writeOut == 0..<Self.step && next.drop == nil)
        next = behind.wrote(offset: Self.step, count: Self.step)
        #expect(next.writeOut == Self.step..<2 * Self.step && next.drop == 0..<Self.step)
        next = behind.wrote(offset: 2 * Self.step, count: Self.step / 2)
        #expect(next.writeOut == nil && next.drop == nil)
        // A resume writes from past its kept prefix: counted from there, nothing before it dropped.
        next = behind.wrote(offset: 5 * Self.step, count: 10)
        #expect(next.writeOut == nil && next.drop == nil)
        next = behind.wrote(offset: 5 * Self.step + 10, count: Self.step)
        #expect(next.writeOut == 5 * Self.step..<6 * Self.step + 10 && next.drop == nil)
        next = behind.wrote(offset: 6 * Self.step + 10, count: Self.step)
        #expect(next.writeOut == 6 * Self.step + 10..<7 * Self.step + 10 && next.drop == 5 * Self.step..<6 * Self.step + 10)
    }

    @Test("A 40 MiB file written in chunks on a real disk: at most three steps stay in the page cache, every byte lands")
    func realDisk() throws {
        // /var/tmp is on disk by convention (a tmpfs /tmp keeps every page in memory whatever we ask).
        let dir = "/var/tmp/securechat-writebehind-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DiskFileStore()
        let tag = SafeFileName.partTag(fileHash: [UInt8](repeating: 3, count: 32), sizeBytes: 40 << 20)
        guard case let .success(file) = store.createPart(directory: dir, name: "big.bin", tag: tag) else {
            Issue.record("createPart failed")
            return
        }
        let chunkBytes = 94 * 1024
        let totalBytes = 40 << 20
        var offset = 0
        let digest = FileHasher()
        let pattern = (0..<chunkBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        while offset < totalBytes {  // Bounded: each round writes at least one byte.
            let count = min(chunkBytes, totalBytes - offset)
            var bytes = Array(pattern[0..<count])
            withUnsafeBytes(of: UInt64(offset).bigEndian) { bytes.replaceSubrange(0..<8, with: $0) }
            digest.update(bytes)
            #expect((try? store.write(file, offset: UInt64(offset), bytes: bytes).get()) != nil)
            offset += count
        }
        let part = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first)
        let resident = try #require(Self.residentBytes(dir + "/" + part))
        // Without write-behind all 40 MiB stay in memory (dirty until the kernel's 30 s or fsync).
        #expect(resident <= 3 * Int(Self.step), "\(resident) bytes of the .part in the page cache")
        let path = try #require(try? store.commit(file).get())
        store.release(file, deletePart: true)
        let landed = try Data(contentsOf: URL(fileURLWithPath: path))
        let check = FileHasher()
        check.update([UInt8](landed))
        #expect(landed.count == totalBytes && check.finish() == digest.finish())
    }

    /// Bytes of the file at `path` in the page cache (mincore over a read-only mapping).
    static func residentBytes(_ path: String) -> Int? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { return nil }
        let size = Int(info.st_size)
        guard let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), mapping != MAP_FAILED else { return nil }
        defer { munmap(mapping, size) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (size + page - 1) / page)
        guard mincore(mapping, size, &vector) == 0 else { return nil }
        return vector.reduce(0) { $0 + Int($1 & 1) } * page
    }
}
