import ChatCore
import ClientCore
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

    @Test("Nothing under a step; then each step is written out, and the one two steps back dropped; a jump starts again")
    func steps() {
        let step = Self.step
        var behind = WriteBehind()
        var next = behind.wrote(offset: 0, count: step - 1)
        #expect(next.writeOut == nil && next.drop == nil)
        next = behind.wrote(offset: step - 1, count: 1)
        #expect(next.writeOut == 0..<step && next.drop == nil)
        next = behind.wrote(offset: step, count: step)
        #expect(next.writeOut == step..<2 * step && next.drop == nil)
        next = behind.wrote(offset: 2 * step, count: step)
        #expect(next.writeOut == 2 * step..<3 * step && next.drop == 0..<step)
        next = behind.wrote(offset: 3 * step, count: step / 2)
        #expect(next.writeOut == nil && next.drop == nil)
        next = behind.wrote(offset: 3 * step + step / 2, count: step)
        #expect(next.writeOut == 3 * step..<4 * step + step / 2 && next.drop == step..<2 * step)
        // A resume writes from past its kept prefix: counted from there, nothing before it dropped.
        next = behind.wrote(offset: 9 * step, count: 10)
        #expect(next.writeOut == nil && next.drop == nil)
        for index in 0..<3 {
            next = behind.wrote(offset: 9 * step + 10 + UInt64(index) * step, count: step)
            let start = 9 * step + 10 + UInt64(index) * step
            #expect(next.writeOut == (index == 0 ? 9 * step : start)..<start + step)
            #expect(next.drop == (index == 2 ? 9 * step..<10 * step + 10 : nil))
        }
        // A refused resume empties the file and writes it again from 0 (`DiskFileStore.truncate`
        // starts a new `WriteBehind`; a write at 0 after others is a jump anyway).
        next = behind.wrote(offset: 0, count: step)
        #expect(next.writeOut == 0..<step && next.drop == nil && behind.dropped == 0)
    }

    /// What `DiskFileStore` asked of the kernel, and what the kernel answers (a test's disk).
    final class Kernel {
        var writtenOut: [Range<Int64>] = []
        var dropped: [Range<Int64>] = []
        var answer: Int32 = 0
    }

    @Test("A failing disk's errors (EIO, ENOSPC) fail the write; no write-behind (ENOSYS, EINVAL) or a filter's EPERM only costs speed")
    func diskErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("securechat-wb-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DiskFileStore()
        let kernel = Kernel()
        store.writeOut = { _, offset, count in
            kernel.writtenOut.append(offset..<offset + count)
            return kernel.answer
        }
        store.dropWritten = { _, offset, count in
            kernel.dropped.append(offset..<offset + count)
            return EIO  // Advice: never an error.
        }
        let tag = SafeFileName.partTag(fileHash: [UInt8](repeating: 4, count: 32), sizeBytes: 64 << 20)
        guard case let .success(file) = store.createPart(directory: dir, name: "e.bin", tag: tag) else {
            Issue.record("createPart failed")
            return
        }
        defer { store.release(file, deletePart: true) }
        let mebibyte = [UInt8](repeating: 9, count: 1 << 20)
        let step = Int64(Self.step)
        var offset: Int64 = 0
        func writeStep() -> Result<Void, FileStoreError> {
            var last: Result<Void, FileStoreError> = .success(())
            for _ in 0..<8 {  // Bounded: one step of 1 MiB writes.
                last = store.write(file, offset: UInt64(offset), bytes: mebibyte)
                offset += 1 << 20
            }
            return last
        }
        for answer in [0, 0, 0, ENOSYS, EINVAL, EPERM, EAGAIN] {
            kernel.answer = answer
            #expect((try? writeStep().get()) != nil, "errno \(answer) failed the write")
        }
        #expect(kernel.writtenOut == (0..<7).map { $0 * step..<($0 + 1) * step })
        #expect(kernel.dropped == (0..<5).map { $0 * step..<($0 + 1) * step })
        for answer in [EIO, ENOSPC] {
            kernel.answer = answer
            guard case let .failure(failure) = writeStep() else {
                Issue.record("errno \(answer) did not fail the write")
                continue
            }
            #expect(failure.reason == String(cString: strerror(answer)))
        }
    }

    /// Whether /var/tmp is on a filesystem whose page cache `sync_file_range` and `POSIX_FADV_DONTNEED`
    /// act on (`stat -f`): not tmpfs (its pages are the file), overlayfs, NFS or FUSE.
    static let diskBacked: Bool = {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/stat")
        probe.arguments = ["-f", "-c", "%T", "/var/tmp"]
        let output = Pipe()
        probe.standardOutput = output
        guard access("/var/tmp", W_OK) == 0, (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        let type = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return ["ext2/ext3", "xfs", "btrfs"].contains(type.trimmingCharacters(in: .whitespacesAndNewlines))
    }()

    @Test(
        "A 41 MiB file written in chunks on a real disk: at most 20 MiB stays in the page cache, every byte lands",
        .enabled(if: WriteBehindTests.diskBacked, "/var/tmp is not on ext4, xfs or btrfs"))
    func realDisk() throws {
        // /var/tmp is on disk by convention (a tmpfs /tmp keeps every page in memory whatever we ask).
        let dir = "/var/tmp/securechat-writebehind-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DiskFileStore()
        let tag = SafeFileName.partTag(fileHash: [UInt8](repeating: 3, count: 32), sizeBytes: 41 << 20)
        guard case let .success(file) = store.createPart(directory: dir, name: "big.bin", tag: tag) else {
            Issue.record("createPart failed")
            return
        }
        let part = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first)
        // The disk's pace made certain: each full step is on disk before the next is written, as a
        // transfer slower than the disk has it, so what is dropped is clean (the kernel keeps dirty pages).
        let paced = open(dir + "/" + part, O_RDONLY | O_CLOEXEC)
        try #require(paced >= 0)
        defer { close(paced) }
        let chunkBytes = 94 * 1024
        // Chunks end steps a little past each 8 MiB: 41 MiB ends the fifth, dropping up to 24.2 MiB.
        let totalBytes = 41 << 20
        var offset = 0
        let digest = FileHasher()
        let pattern = (0..<chunkBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        while offset < totalBytes {  // Bounded: each round writes at least one byte.
            let count = min(chunkBytes, totalBytes - offset)
            var bytes = Array(pattern[0..<count])
            withUnsafeBytes(of: UInt64(offset).bigEndian) { bytes.replaceSubrange(0..<8, with: $0) }
            digest.update(bytes)
            #expect((try? store.write(file, offset: UInt64(offset), bytes: bytes).get()) != nil)
            if (offset + count) / Int(Self.step) > offset / Int(Self.step) { #expect(fdatasync(paced) == 0) }
            offset += count
        }
        let resident = try #require(Self.residentBytes(dir + "/" + part))
        // 16.8 MiB: the last two steps and what followed; without write-behind all 41 MiB stay.
        #expect(resident <= 20 << 20, "\(resident) bytes of the .part in the page cache")
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
