import CClientSupport
import ChatCore
import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// The real disk for file transfers. It obeys the driver; what it refuses on its own is what
/// the kernel must enforce: received files are created new (`O_CREAT|O_EXCL`) and never through
/// a symlink (`O_NOFOLLOW`), relative to the download directory's descriptor (`openat`), so a
/// name cannot leave the directory, and a finished `.part` takes its final name with `linkat`,
/// which fails rather than replace an existing name (no overwrite, whatever appears meanwhile).
/// Created files are private to the user (0600). A `.part` is held under an exclusive `flock`
/// while a transfer uses it, so no other transfer (in this process or another) resumes it.
final class DiskFileStore: FileStore {
    private struct Entry {
        var fd: Int32
        /// For a file to send: its size and times when it was opened (`changedSinceOpened`).
        var opened: (size: Int, modified: timespec, changed: timespec)?
        /// For a received file: the directory's descriptor, the `.part`'s name, the safe name.
        var directoryFD: Int32 = -1
        var directory = ""
        var partName = ""
        var name = ""
        var writeBehind = WriteBehind()
    }

    /// Alternatives tried for a taken name: `name (1).ext` … `name (999).ext`.
    static let alternativesMax = 1_000
    /// `.part` names looked at for a resume: `name.part` … `name (15).part` (as many transfers as
    /// may be under way at once could have left one each).
    static let resumeCandidatesMax = 16
    private var entries: [Int: Entry] = [:]
    private var nextID = 1
    /// Tests only: runs between a `.part`'s creation and its lock (the window in which another
    /// process's resume can take it), with its path.
    var beforeLockingPart: ((String) -> Void)?
    /// `WriteBehind`'s two calls (descriptor, offset, count; 0 or an errno value): the kernel's,
    /// but for tests that play a failing disk or record the ranges.
    var writeOut: (Int32, Int64, Int64) -> Int32 = { scl_write_out($0, $1, $2) }
    var dropWritten: (Int32, Int64, Int64) -> Int32 = { scl_drop_written($0, $1, $2) }

    /// The user's own path, symlinks followed (their choice; docs/SECURITY.md trusts the sending
    /// side's paths). Only a regular file: looked at before opening, so that no device is opened
    /// at all, then opened `O_NONBLOCK`, so that a name that became a FIFO meanwhile does not hang
    /// the client in `open` (a FIFO blocks until a writer comes), and checked again on the descriptor.
    func openForReading(path: String) -> Result<(file: StoredFile, name: String, sizeBytes: UInt64), FileStoreError> {
        var before = stat()
        guard stat(path, &before) == 0 else { return .failure(Self.error()) }
        if let refusal = Self.notRegular(before) { return .failure(refusal) }
        // O_NONBLOCK changes nothing for a regular file's reads; it only keeps open from waiting.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return .failure(Self.error()) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let failure = Self.error()
            close(fd)
            return .failure(failure)
        }
        if let refusal = Self.notRegular(info) {
            close(fd)
            return .failure(refusal)
        }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let opened = (size: info.st_size, modified: info.st_mtim, changed: info.st_ctim)
        return .success((add(Entry(fd: fd, opened: opened)), name, UInt64(info.st_size)))
    }

    func changedSinceOpened(_ file: StoredFile) -> Bool {
        var now = stat()
        guard let entry = entries[file.rawValue], let opened = entry.opened, fstat(entry.fd, &now) == 0 else { return true }
        func same(_ a: timespec, _ b: timespec) -> Bool { a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec }
        return now.st_size != opened.size || !same(now.st_mtim, opened.modified) || !same(now.st_ctim, opened.changed)
    }

    /// Nil for a regular file; else the typed refusal, naming what it is.
    static func notRegular(_ info: stat) -> FileStoreError? {
        let what: String
        switch info.st_mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFIFO: what = "a FIFO (named pipe)"
        case S_IFDIR: what = "a directory"
        case S_IFCHR: what = "a character device"
        case S_IFBLK: what = "a block device"
        case S_IFSOCK: what = "a socket"
        default: what = "a special file"
        }
        return FileStoreError("it is \(what), not a regular file", kind: .notRegularFile)
    }

    func read(_ file: StoredFile, offset: UInt64, count: Int) -> Result<[UInt8], FileStoreError> {
        guard let entry = entries[file.rawValue] else { return .failure(FileStoreError("not open")) }
        guard count > 0 else { return .success([]) }
        var failure: FileStoreError?
        // Uninitialized, not zero-filled first: only the bytes pread wrote are counted in.
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initializedCount in
            var done = 0
            // Bounded: each round reads at least one byte or ends.
            while done < count {
                let got = pread(entry.fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if got < 0 && errno == EINTR { continue }
                guard got >= 0 else {
                    failure = Self.error()
                    break
                }
                if got == 0 { break }
                done += got
            }
            initializedCount = done
        }
        if let failure { return .failure(failure) }
        return .success(bytes)
    }

    func freeBytes(directory: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    func createPart(directory: String, name: String, tag: String) -> Result<StoredFile, FileStoreError> {
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { return .failure(Self.error()) }
        for index in 0..<Self.alternativesMax {
            let partName = SafeFileName.partName(name, index: index, tag: tag)
            let fd = openat(directoryFD, partName, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd < 0 && errno == EEXIST { continue }
            guard fd >= 0 else {
                let failure = Self.error()
                close(directoryFD)
                return .failure(failure)
            }
            beforeLockingPart?(directory + "/" + partName)
            // New, but another process's resume may have opened and locked it in the meantime:
            // then it is theirs (left as it is). Unlocked, a resume elsewhere could share it.
            if let failure = Self.lockNewPart(fd, directoryFD, partName) {
                close(fd)
                close(directoryFD)
                return .failure(failure)
            }
            let entry = Entry(fd: fd, directoryFD: directoryFD, directory: directory, partName: partName, name: name)
            return .success(add(entry))
        }
        close(directoryFD)
        return .failure(FileStoreError("every name like \(name) is taken"))
    }

    /// Lock a `.part` just created as `partName`; nil when locked. Held by someone else: a
    /// `partInUse` failure, the file left to them; any other error: the file is ours and goes.
    private static func lockNewPart(_ fd: Int32, _ directoryFD: Int32, _ partName: String) -> FileStoreError? {
        // Bounded: a signal interrupts a non-blocking flock at most a few times.
        for _ in 0..<8 {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return nil }
            guard errno == EINTR else { break }
        }
        let code = errno
        if code == EWOULDBLOCK {
            return FileStoreError("\(partName) is locked by another transfer", kind: .partInUse)
        }
        var open = stat()
        var named = stat()
        if fstat(fd, &open) == 0, fstatat(directoryFD, partName, &named, AT_SYMLINK_NOFOLLOW) == 0,
           open.st_dev == named.st_dev, open.st_ino == named.st_ino {
            unlinkat(directoryFD, partName, 0)
        }
        return FileStoreError("cannot lock \(partName): " + String(cString: strerror(code)))
    }

    func write(_ file: StoredFile, offset: UInt64, bytes: [UInt8]) -> Result<Void, FileStoreError> {
        guard var entry = entries[file.rawValue], entry.directoryFD >= 0 else { return .failure(FileStoreError("not open")) }
        if case let .failure(failure) = Self.write(entry.fd, offset: offset, bytes: bytes) { return .failure(failure) }
        let (writeOut, drop) = entry.writeBehind.wrote(offset: offset, count: UInt64(bytes.count))
        entries[file.rawValue] = entry
        if let writeOut {
            let code = self.writeOut(entry.fd, Int64(writeOut.lowerBound), Int64(writeOut.count))
            if WriteBehind.isDiskError(code) { return .failure(FileStoreError(String(cString: strerror(code)))) }
        }
        // Advice only: whatever it answers, the bytes are written.
        if let drop { _ = dropWritten(entry.fd, Int64(drop.lowerBound), Int64(drop.count)) }
        return .success(())
    }

    private static func write(_ fd: Int32, offset: UInt64, bytes: [UInt8]) -> Result<Void, FileStoreError> {
        var done = 0
        // Bounded: each round writes at least one byte or fails.
        while done < bytes.count {
            let wrote = bytes.withUnsafeBytes { buffer in
                pwrite(fd, buffer.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            }
            if wrote < 0 && errno == EINTR { continue }
            guard wrote > 0 else { return .failure(Self.error()) }
            done += wrote
        }
        return .success(())
    }

    func commit(_ file: StoredFile) -> Result<String, FileStoreError> {
        guard let entry = entries[file.rawValue], entry.directoryFD >= 0 else { return .failure(FileStoreError("not open")) }
        guard fsync(entry.fd) == 0 else { return .failure(Self.error()) }
        for index in 0..<Self.alternativesMax {
            let finalName = SafeFileName.alternative(entry.name, index: index)
            // linkat never replaces: an existing name (file, symlink, anything) is EEXIST.
            if linkat(entry.directoryFD, entry.partName, entry.directoryFD, finalName, 0) == 0 {
                // linkat takes a name: if the `.part` was replaced under it, the final name now holds
                // a file this transfer never wrote nor hashed. Take the name back and fail.
                guard Self.names(finalName, entry) else {
                    if Self.names(finalName, entry, sameFile: false) { unlinkat(entry.directoryFD, finalName, 0) }
                    return .failure(FileStoreError("the .part was replaced"))
                }
                if Self.names(entry.partName, entry) { unlinkat(entry.directoryFD, entry.partName, 0) }
                entries[file.rawValue]?.partName = ""
                return .success(entry.directory + (entry.directory.hasSuffix("/") ? "" : "/") + finalName)
            }
            guard errno == EEXIST else { return .failure(Self.error()) }
        }
        return .failure(FileStoreError("every name like \(entry.name) is taken"))
    }

    func release(_ file: StoredFile, deletePart: Bool) {
        guard let entry = entries.removeValue(forKey: file.rawValue) else { return }
        if entry.directoryFD >= 0 {
            // Only the file this transfer wrote (compared with the descriptor, so before it is
            // closed): a name that now holds another file is left alone.
            if deletePart && !entry.partName.isEmpty && Self.names(entry.partName, entry) {
                unlinkat(entry.directoryFD, entry.partName, 0)
            }
            close(entry.directoryFD)
        }
        close(entry.fd)
    }

    func resumablePart(directory: String, name: String, tag: String, maxBytes: UInt64)
        -> (file: StoredFile, sizeBytes: UInt64)?
    {
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { return nil }
        var best: (fd: Int32, partName: String, size: UInt64)?
        for index in 0..<Self.resumeCandidatesMax {
            let partName = SafeFileName.partName(name, index: index, tag: tag)
            guard let (fd, size) = Self.openKeptPart(directoryFD, partName, maxBytes: maxBytes) else { continue }
            // The longest one: the most a resume can save (a wrong one only costs a restart).
            if let current = best, current.size >= size {
                close(fd)
            } else {
                if let current = best { close(current.fd) }
                best = (fd, partName, size)
            }
        }
        guard let best else {
            close(directoryFD)
            return nil
        }
        let entry = Entry(
            fd: best.fd, directoryFD: directoryFD, directory: directory, partName: best.partName, name: name)
        return (add(entry), best.size)
    }

    /// Directory entries looked at for `keptParts` (a directory larger than this is reported on
    /// its first entries only).
    static let keptPartsScanMax = 100_000

    func keptParts(directory: String) -> KeptParts? {
        guard let stream = opendir(directory) else { return nil }
        defer { closedir(stream) }
        let directoryFD = dirfd(stream)
        var kept = KeptParts(count: 0, bytes: 0, oldestDays: 0)
        var oldest: Int?
        let now = Int(time(nil))
        // Bounded by `keptPartsScanMax` entries.
        for _ in 0..<Self.keptPartsScanMax {
            guard let entry = readdir(stream) else { break }
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            var info = stat()
            guard SafeFileName.isPartName(name), fstatat(directoryFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0,
                  (info.st_mode & S_IFMT) == S_IFREG, info.st_uid == geteuid() else { continue }
            kept.count += 1
            kept.bytes += UInt64(max(info.st_size, 0))
            oldest = min(oldest ?? Int(info.st_mtim.tv_sec), Int(info.st_mtim.tv_sec))
        }
        kept.oldestDays = oldest.map { max(0, now - $0) / 86_400 } ?? 0
        return kept
    }

    /// `partName` in the directory, opened for a resume if it is a `.part` this client could have
    /// left: a regular file (not a symlink, FIFO or device: checked before opening, and again on
    /// the descriptor), owned by this user, private (no group or other bits), with one link (a
    /// hard link to another file would make the transfer write into that file), no larger than
    /// the offer, and not locked by a transfer under way.
    static func openKeptPart(_ directoryFD: Int32, _ partName: String, maxBytes: UInt64) -> (Int32, UInt64)? {
        var before = stat()
        guard fstatat(directoryFD, partName, &before, AT_SYMLINK_NOFOLLOW) == 0,
              isKeptPart(before, maxBytes: maxBytes) else { return nil }
        // O_NONBLOCK: should the name become a FIFO meanwhile, the open does not hang on it.
        let fd = openat(directoryFD, partName, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_dev == before.st_dev, info.st_ino == before.st_ino,
              isKeptPart(info, maxBytes: maxBytes), flock(fd, LOCK_EX | LOCK_NB) == 0,
              fstat(fd, &info) == 0, isKeptPart(info, maxBytes: maxBytes) else {
            close(fd)
            return nil
        }
        return (fd, UInt64(info.st_size))
    }

    static func isKeptPart(_ info: stat, maxBytes: UInt64) -> Bool {
        (info.st_mode & S_IFMT) == S_IFREG && info.st_uid == geteuid() && info.st_nlink == 1
            && (info.st_mode & 0o077) == 0 && info.st_size >= 0 && UInt64(info.st_size) <= maxBytes
    }

    /// Whether `name` in the entry's directory is (`sameFile`), or is not, the file the entry has
    /// open; false either way when either cannot be looked at.
    private static func names(_ name: String, _ entry: Entry, sameFile: Bool = true) -> Bool {
        var open = stat()
        var named = stat()
        guard fstat(entry.fd, &open) == 0, fstatat(entry.directoryFD, name, &named, AT_SYMLINK_NOFOLLOW) == 0
        else { return false }
        return (open.st_dev == named.st_dev && open.st_ino == named.st_ino) == sameFile
    }

    func truncate(_ file: StoredFile) -> Result<Void, FileStoreError> {
        guard let entry = entries[file.rawValue], entry.directoryFD >= 0 else {
            return .failure(FileStoreError("not open"))
        }
        guard ftruncate(entry.fd, 0) == 0 else { return .failure(Self.error()) }
        entries[file.rawValue]?.writeBehind = WriteBehind()
        return .success(())
    }

    private func add(_ entry: Entry) -> StoredFile {
        let id = nextID
        nextID += 1
        entries[id] = entry
        return StoredFile(rawValue: id)
    }

    private static func error() -> FileStoreError {
        FileStoreError(String(cString: strerror(errno)))
    }
}
