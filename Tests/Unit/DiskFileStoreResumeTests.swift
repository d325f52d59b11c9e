import ChatCore
import ClientCore
import Foundation
import Testing

@testable import ChatClient

#if canImport(Glibc)
import Glibc
#endif

/// The real disk's side of a resume, on a real directory: which kept `.part` a new session may
/// open and write into. A hostile download directory (or whoever could plant names in it) must
/// not turn a resume into a write through a symlink, into another file by a hard link, past the
/// offered size, into a FIFO or device, or into a `.part` another transfer is writing.
@Suite("DiskFileStore: which kept .part a resume opens")
struct DiskFileStoreResumeTests {
    /// The tag of the offer every test here resumes (`SafeFileName.partTag`).
    static let tag = SafeFileName.partTag(fileHash: [UInt8](repeating: 7, count: 32), sizeBytes: 10_000)

    static func directory() throws -> String {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("securechat-resume-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    static func put(_ path: String, _ bytes: Int, mode: Int = 0o600) {
        let data = Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        #expect(FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: mode]))
    }

    static func size(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int
    }

    @Test("A kept .part is opened once (a second resume finds it locked), read, written, emptied and committed")
    func keptPart() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.put(dir + "/a.bin.\(Self.tag).part", 5_000)
        Self.put(dir + "/a (1).bin.\(Self.tag).part", 2_000)
        let store = DiskFileStore()
        let kept = try #require(store.resumablePart(directory: dir, name: "a.bin", tag: Self.tag, maxBytes: 10_000))
        #expect(kept.sizeBytes == 5_000)  // The longer of the two.
        #expect(store.resumablePart(directory: dir, name: "a.bin", tag: Self.tag, maxBytes: 10_000)?.sizeBytes == 2_000)
        let other = DiskFileStore()  // Another process's store: the same locks.
        #expect(other.resumablePart(directory: dir, name: "a.bin", tag: Self.tag, maxBytes: 10_000) == nil)
        guard case let .success(bytes) = store.read(kept.file, offset: 4_990, count: 10) else {
            Issue.record("the kept .part could not be read")
            return
        }
        #expect(bytes == (4_990..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        #expect((try? store.truncate(kept.file).get()) != nil && Self.size(dir + "/a.bin.\(Self.tag).part") == 0)
        #expect((try? store.write(kept.file, offset: 0, bytes: [1, 2, 3]).get()) != nil)
        #expect((try? store.commit(kept.file).get()) == dir + "/a.bin")
        store.release(kept.file, deletePart: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a (1).bin.\(Self.tag).part", "a.bin"])
        // A .part a transfer creates is locked too: no resume takes it while it is written.
        guard case let .success(fresh) = store.createPart(directory: dir, name: "c.bin", tag: Self.tag) else {
            Issue.record("createPart failed")
            return
        }
        #expect(other.resumablePart(directory: dir, name: "c.bin", tag: Self.tag, maxBytes: 10) == nil)
        store.release(fresh, deletePart: false)
        #expect(other.resumablePart(directory: dir, name: "c.bin", tag: Self.tag, maxBytes: 10)?.sizeBytes == 0)
    }

    @Test("Attack: a .part that is a symlink, a second hard link, larger than the offer, group-writable, a FIFO or a directory is never opened")
    func hostileParts() throws {
        let dir = try Self.directory()
        let outside = try Self.directory()
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: outside)
        }
        let target = outside + "/victim"
        Self.put(target, 3_000)
        let before = try Data(contentsOf: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.bin.\(Self.tag).part", withDestinationPath: target)
        #expect(link(target, dir + "/hard.bin.\(Self.tag).part") == 0)
        Self.put(dir + "/big.bin.\(Self.tag).part", 10_001)
        Self.put(dir + "/shared.bin.\(Self.tag).part", 1_000, mode: 0o660)
        #expect(mkfifo(dir + "/fifo.bin.\(Self.tag).part", 0o600) == 0)
        try FileManager.default.createDirectory(atPath: dir + "/dir.bin.\(Self.tag).part", withIntermediateDirectories: false)
        let store = DiskFileStore()
        for name in ["link.bin", "hard.bin", "big.bin", "shared.bin", "fifo.bin", "dir.bin"] {
            #expect(store.resumablePart(directory: dir, name: name, tag: Self.tag, maxBytes: 10_000) == nil, "\(name)")
            // What the driver does then: a new `.part` beside it, written; the planted one untouched.
            guard case let .success(file) = store.createPart(directory: dir, name: name, tag: Self.tag) else {
                Issue.record("createPart failed for \(name)")
                continue
            }
            #expect((try? store.write(file, offset: 0, bytes: [UInt8](repeating: 0xEE, count: 100)).get()) != nil)
            store.release(file, deletePart: true)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == before)
        #expect(Self.size(dir + "/big.bin.\(Self.tag).part") == 10_001 && Self.size(dir + "/shared.bin.\(Self.tag).part") == 1_000)
        // Within the offered size, the same .part is fine.
        #expect(store.resumablePart(directory: dir, name: "big.bin", tag: Self.tag, maxBytes: 10_001)?.sizeBytes == 10_001)
    }

    @Test("Attack: a .part swapped under its name mid-transfer takes no final name and is not deleted")
    func replacedPart() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DiskFileStore()
        for ending in ["commit", "release"] {
            guard case let .success(file) = store.createPart(directory: dir, name: "\(ending).bin", tag: Self.tag) else {
                Issue.record("createPart failed")
                return
            }
            #expect((try? store.write(file, offset: 0, bytes: [1, 2, 3]).get()) != nil)
            // Whoever can rename in the directory moves the transfer's .part away and plants another.
            #expect(rename(dir + "/\(ending).bin.\(Self.tag).part", dir + "/\(ending)-moved") == 0)
            Self.put(dir + "/\(ending).bin.\(Self.tag).part", 50)
            if ending == "commit" {
                // The verified bytes or nothing under the final name: never the planted file.
                if case let .success(path) = store.commit(file) {
                    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data([1, 2, 3]))
                }
                #expect(Self.size(dir + "/commit.bin") != 50)
            }
            store.release(file, deletePart: true)
            #expect(Self.size(dir + "/\(ending).bin.\(Self.tag).part") == 50, "\(ending): the planted file is not the transfer's")
        }
    }

    @Test("Attack: an offer resumes only a .part written for the same file: not a user's NAME.part, nor another offer's")
    func foreignParts() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The user's own files named like a transfer's, and a kept .part of another file.
        Self.put(dir + "/thesis.part", 4_000)
        Self.put(dir + "/thesis.bin.part", 4_000)
        let otherTag = SafeFileName.partTag(fileHash: [UInt8](repeating: 8, count: 32), sizeBytes: 10_000)
        #expect(otherTag != Self.tag)
        #expect(SafeFileName.partTag(fileHash: [UInt8](repeating: 7, count: 32), sizeBytes: 10_001) != Self.tag)
        Self.put(dir + "/thesis.bin.\(otherTag).part", 4_000)
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let store = DiskFileStore()
        for name in ["thesis", "thesis.bin"] {
            #expect(store.resumablePart(directory: dir, name: name, tag: Self.tag, maxBytes: 10_000) == nil, "\(name)")
        }
        // A new .part for this offer goes beside them, and they keep their bytes.
        guard case let .success(file) = store.createPart(directory: dir, name: "thesis.bin", tag: Self.tag) else {
            Issue.record("createPart failed")
            return
        }
        store.release(file, deletePart: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == before)
        for name in before { #expect(Self.size(dir + "/" + name) == 4_000, "\(name)") }
        // The same offer again finds its own.
        Self.put(dir + "/thesis.bin.\(Self.tag).part", 1_000)
        #expect(store.resumablePart(directory: dir, name: "thesis.bin", tag: Self.tag, maxBytes: 10_000)?.sizeBytes == 1_000)
    }

    /// A real second process (`flock(1)`) takes the lock of `path` and holds it until its stdin closes.
    static func holdLock(_ path: String) throws -> (process: Process, release: FileHandle) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        process.arguments = ["--nonblock", path, "--command", "echo held; read line"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        // It says "held" once the lock is its own.
        let said = output.fileHandleForReading.readData(ofLength: 5)
        #expect(String(decoding: said, as: UTF8.self) == "held\n")
        return (process, input.fileHandleForWriting)
    }

    @Test("A .part another process locks between its creation and our lock is a typed failure (partInUse), left to it")
    func createdPartLockedElsewhere() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DiskFileStore()
        var holder: (process: Process, release: FileHandle)?
        // The race window: another process's resume opens and locks the new, empty .part.
        store.beforeLockingPart = { path in holder = try? Self.holdLock(path) }
        let result = store.createPart(directory: dir, name: "b.bin", tag: Self.tag)
        store.beforeLockingPart = nil
        let held = try #require(holder)
        guard case let .failure(error) = result else {
            Issue.record("createPart used a .part another process holds")
            return
        }
        #expect(error.kind == .partInUse)
        #expect(Self.size(dir + "/b.bin.\(Self.tag).part") == 0)  // Theirs: not deleted.
        #expect(store.resumablePart(directory: dir, name: "b.bin", tag: Self.tag, maxBytes: 10_000) == nil)
        // Once that process ends, the .part is free again: a resume takes it, a new one is locked.
        try held.release.close()
        held.process.waitUntilExit()
        let kept = try #require(store.resumablePart(directory: dir, name: "b.bin", tag: Self.tag, maxBytes: 10_000))
        store.release(kept.file, deletePart: false)
        guard case let .success(file) = store.createPart(directory: dir, name: "b.bin", tag: Self.tag) else {
            Issue.record("createPart failed with no lock held elsewhere")
            return
        }
        #expect(DiskFileStore().resumablePart(directory: dir, name: "b (1).bin", tag: Self.tag, maxBytes: 10) == nil)
        store.release(file, deletePart: true)
    }

    @Test("Kept .parts are counted for the start notice: only names a transfer gives, regular files; nothing deleted")
    func keptPartsReported() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.put(dir + "/a.bin.\(Self.tag).part", 5_000)
        Self.put(dir + "/b (1).bin.\(Self.tag).part", 2_000)
        let old = Date(timeIntervalSinceNow: -10.5 * 86_400)
        let files = FileManager.default
        try files.setAttributes([.modificationDate: old], ofItemAtPath: dir + "/b (1).bin.\(Self.tag).part")
        // Not a transfer's: a user's own .part names, a symlink and a directory named like one.
        Self.put(dir + "/thesis.part", 4_000)
        Self.put(dir + "/x.0123456789ABCDEF.part", 4_000)
        Self.put(dir + "/target", 4_000)
        try files.createSymbolicLink(atPath: dir + "/c.bin.\(Self.tag).part", withDestinationPath: dir + "/target")
        try files.createDirectory(atPath: dir + "/d.bin.\(Self.tag).part", withIntermediateDirectories: false)
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(DiskFileStore().keptParts(directory: dir) == KeptParts(count: 2, bytes: 7_000, oldestDays: 10))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == before)
        #expect(DiskFileStore().keptParts(directory: dir + "/missing") == nil)
    }
}

extension DiskFileStoreResumeTests {
    @Test("A file to send is seen changed when written in place (same size), appended to, or its times reset")
    func changedSinceOpened() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/send.bin"
        Self.put(path, 4_096)
        let store = DiskFileStore()
        let opened = try store.openForReading(path: path).get()
        #expect(!store.changedSinceOpened(opened.file))
        // One byte rewritten in place, the size unchanged, and the modification time put back as it
        // was (touch -r, as a careless copy tool would): the status-change time still moves.
        var before = stat()
        #expect(stat(path, &before) == 0)
        usleep(20_000)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seek(toFileOffset: 100)
        handle.write(Data([0xFF]))
        handle.closeFile()
        var times = [before.st_atim, before.st_mtim]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        #expect(store.changedSinceOpened(opened.file))
        store.release(opened.file, deletePart: false)
        // Appended to: the size moves.
        let again = try store.openForReading(path: path).get()
        #expect(!store.changedSinceOpened(again.file))
        let appender = try #require(FileHandle(forWritingAtPath: path))
        appender.seekToEndOfFile()
        appender.write(Data([1]))
        appender.closeFile()
        #expect(store.changedSinceOpened(again.file))
        store.release(again.file, deletePart: false)
    }
}
