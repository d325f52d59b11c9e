import ChatCore
import ClientCore

/// A disk in memory for file transfers in tests and simulations: paths are keys, directories are
/// prefixes. It keeps the rules the real store enforces (a `.part` is created new, a final name
/// never replaces one that exists) so that tests of the driver see the same refusals, and its
/// resume semantics: a `.part` left in a directory is found again only under the names
/// `createPart` gives the same offer's tag, the longest first, and never while a transfer has it
/// open (the real store's `flock`; `processEnded` closes a dead process's files, as the kernel
/// does). The disk outlives the process: a slot's restarted process finds its predecessor's parts.
public final class InMemoryFileStore: FileStore {
    /// Every file, by path ("DIR/NAME"). Tests put sources here and read what was stored.
    public var files: [String: [UInt8]] = [:]
    /// What `freeBytes` answers (nil: unknown).
    public var freeBytes: UInt64?
    /// Writes fail from now on (a full or broken disk).
    public var failWrites = false
    /// The age `keptParts` gives every `.part`, in days.
    public var keptPartsAgeDays = 0
    /// Sees every operation as it happens (the simulator's file checks); nil: nobody watches.
    public var onOperation: ((FileStoreOperation) -> Void)?
    /// Deliberately broken behaviours, for the simulator's self-tests.
    public var plantedBugs: PlantedDiskBugs = []
    private var open: [Int: (path: String, directory: String, name: String)] = [:]
    /// Files opened to send, as they were then (`changedSinceOpened`).
    private var openedContent: [Int: [UInt8]] = [:]
    /// `.part` names looked at for a resume (DiskFileStore's `resumeCandidatesMax`).
    static let resumeCandidatesMax = 16
    private var nextID = 1

    public init() {}

    public func openForReading(path: String) -> Result<(file: StoredFile, name: String, sizeBytes: UInt64), FileStoreError> {
        guard let content = files[path] else { return .failure(FileStoreError("No such file or directory")) }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let file = add(path, directory: "", name: name)
        openedContent[file.rawValue] = content
        onOperation?(.openForReading(file, path: path))
        return .success((file, name, UInt64(content.count)))
    }

    public func changedSinceOpened(_ file: StoredFile) -> Bool {
        guard let entry = open[file.rawValue], let content = openedContent[file.rawValue] else { return true }
        return files[entry.path] != content
    }

    public func read(_ file: StoredFile, offset: UInt64, count: Int) -> Result<[UInt8], FileStoreError> {
        bytes(file, offset: offset, count: count, .read(file, offset: offset, count: count))
    }

    public func readToHash(_ file: StoredFile, offset: UInt64, count: Int) -> Result<[UInt8], FileStoreError> {
        bytes(file, offset: offset, count: count, .readToHash(file, offset: offset, count: count))
    }

    private func bytes(_ file: StoredFile, offset: UInt64, count: Int, _ operation: FileStoreOperation)
        -> Result<[UInt8], FileStoreError>
    {
        guard let entry = open[file.rawValue], let content = files[entry.path] else {
            return .failure(FileStoreError("not open"))
        }
        let start = min(Int(offset), content.count)
        onOperation?(operation)
        return .success(Array(content[start..<min(start + count, content.count)]))
    }

    public func freeBytes(directory: String) -> UInt64? { freeBytes }

    public func createPart(directory: String, name: String, tag: String) -> Result<StoredFile, FileStoreError> {
        for index in 0..<1_000 {
            let path = directory + "/" + SafeFileName.partName(name, index: index, tag: tag)
            guard files[path] == nil else { continue }
            files[path] = []
            let file = add(path, directory: directory, name: name)
            onOperation?(.createPart(file, path: path))
            return .success(file)
        }
        return .failure(FileStoreError("every name is taken"))
    }

    public func write(_ file: StoredFile, offset: UInt64, bytes: [UInt8]) -> Result<Void, FileStoreError> {
        guard !failWrites, let entry = open[file.rawValue], var content = files[entry.path] else {
            return .failure(FileStoreError("write failed"))
        }
        let end = Int(offset) + bytes.count
        if content.count < end { content += [UInt8](repeating: 0, count: end - content.count) }
        content.replaceSubrange(Int(offset)..<end, with: bytes)
        files[entry.path] = content
        onOperation?(.write(file, offset: offset, count: bytes.count))
        // The planted naive retry writes the same bytes again, as a shell retrying on EINTR would.
        if plantedBugs.contains(.writeTwice) { onOperation?(.write(file, offset: offset, count: bytes.count)) }
        return .success(())
    }

    public func commit(_ file: StoredFile) -> Result<String, FileStoreError> {
        guard let entry = open[file.rawValue], let content = files[entry.path] else {
            return .failure(FileStoreError("not open"))
        }
        for index in 0..<1_000 {
            let path = entry.directory + "/" + SafeFileName.alternative(entry.name, index: index)
            guard files[path] == nil else { continue }
            // The planted unflushed tail: the file takes its name without its last byte.
            files[path] = plantedBugs.contains(.commitDropsLastByte) ? Array(content.dropLast()) : content
            files[entry.path] = nil
            open[file.rawValue]?.path = path
            onOperation?(.commit(file, path: path))
            return .success(path)
        }
        return .failure(FileStoreError("every name is taken"))
    }

    public func release(_ file: StoredFile, deletePart: Bool) {
        guard let entry = open.removeValue(forKey: file.rawValue) else { return }
        openedContent[file.rawValue] = nil
        if deletePart && entry.path.hasSuffix(".part") { files[entry.path] = nil }
    }

    public func resumablePart(directory: String, name: String, tag: String, maxBytes: UInt64)
        -> (file: StoredFile, sizeBytes: UInt64)?
    {
        var best: (path: String, size: Int)?
        for index in 0..<Self.resumeCandidatesMax {
            let path = directory + "/" + SafeFileName.partName(name, index: index, tag: tag)
            // Held by a transfer under way: the real store's flock refuses it.
            guard let content = files[path], UInt64(content.count) <= maxBytes,
                  !open.values.contains(where: { $0.path == path }) else { continue }
            if best == nil || content.count > best!.size { best = (path, content.count) }
        }
        guard let best else { return nil }
        let file = add(best.path, directory: directory, name: name)
        onOperation?(.resumePart(file, path: best.path, sizeBytes: UInt64(best.size)))
        // The planted misread size: the store says the kept part is empty, so nothing is proposed.
        return (file, plantedBugs.contains(.resumeSeesEmptyPart) ? 0 : UInt64(best.size))
    }

    public func truncate(_ file: StoredFile) -> Result<Void, FileStoreError> {
        guard let entry = open[file.rawValue], files[entry.path] != nil, entry.path.hasSuffix(".part") else {
            return .failure(FileStoreError("not open"))
        }
        files[entry.path] = []
        onOperation?(.truncate(file))
        return .success(())
    }

    /// Every `.part` in `directory` is as old as the test says (`keptPartsAgeDays`).
    public func keptParts(directory: String) -> KeptParts? {
        let parts = files.filter {
            $0.key.hasPrefix(directory + "/") && SafeFileName.isPartName(String($0.key.dropFirst(directory.count + 1)))
        }
        return KeptParts(count: parts.count, bytes: parts.values.reduce(0) { $0 + UInt64($1.count) },
                         oldestDays: keptPartsAgeDays)
    }

    /// The process that used this disk ended (crashed or exited): its files close without a
    /// `release`, as the kernel closes a dead process's descriptors (and drops its locks); every
    /// `.part` stays where it is.
    public func processEnded() {
        open.removeAll()
    }

    private func add(_ path: String, directory: String, name: String) -> StoredFile {
        defer { nextID += 1 }
        open[nextID] = (path, directory, name)
        return StoredFile(rawValue: nextID)
    }
}

/// One operation on an `InMemoryFileStore`, as `onOperation` sees it (after it happened).
public enum FileStoreOperation: Sendable {
    case openForReading(StoredFile, path: String)
    /// Bytes read to send them.
    case read(StoredFile, offset: UInt64, count: Int)
    /// Bytes read to hash them (a file whose hash follows its offer, a prefix to resume).
    case readToHash(StoredFile, offset: UInt64, count: Int)
    case createPart(StoredFile, path: String)
    case write(StoredFile, offset: UInt64, count: Int)
    /// The `.part` took its final name, `path`.
    case commit(StoredFile, path: String)
    /// A `.part` an earlier transfer left at `path`, of `sizeBytes`, was opened to resume it.
    case resumePart(StoredFile, path: String, sizeBytes: UInt64)
    /// An open `.part` was cut to zero bytes (its prefix was not the offered file's).
    case truncate(StoredFile)
}

/// Deliberate disk bugs in the in-memory store (not in shipped code), for the simulator's
/// self-tests: each must be caught under the file invariant it breaks.
public struct PlantedDiskBugs: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// Every write is carried out (and seen) twice, at the same offset: a naive retry.
    public static let writeTwice = PlantedDiskBugs(rawValue: 1 << 0)
    /// A committed file loses its last byte (a tail never flushed before the rename).
    public static let commitDropsLastByte = PlantedDiskBugs(rawValue: 1 << 1)
    /// A kept `.part` is opened for a resume but its size is misread as 0: the receiver proposes
    /// nothing and writes the file again from its first byte.
    public static let resumeSeesEmptyPart = PlantedDiskBugs(rawValue: 1 << 2)
}
