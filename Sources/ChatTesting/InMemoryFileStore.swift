import ChatCore
import ClientCore

/// A disk in memory for file transfers in tests and simulations: paths are keys, directories are
/// prefixes. It keeps the rules the real store enforces (a `.part` is created new, a final name
/// never replaces one that exists) so that tests of the driver see the same refusals.
public final class InMemoryFileStore: FileStore {
    /// Every file, by path ("DIR/NAME"). Tests put sources here and read what was stored.
    public var files: [String: [UInt8]] = [:]
    /// What `freeBytes` answers (nil: unknown).
    public var freeBytes: UInt64?
    /// Writes fail from now on (a full or broken disk).
    public var failWrites = false
    private var open: [Int: (path: String, directory: String, name: String)] = [:]
    private var nextID = 1

    public init() {}

    public func openForReading(path: String) -> Result<(file: StoredFile, name: String, sizeBytes: UInt64), FileStoreError> {
        guard let content = files[path] else { return .failure(FileStoreError("No such file or directory")) }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return .success((add(path, directory: "", name: name), name, UInt64(content.count)))
    }

    public func read(_ file: StoredFile, offset: UInt64, count: Int) -> Result<[UInt8], FileStoreError> {
        guard let entry = open[file.rawValue], let content = files[entry.path] else {
            return .failure(FileStoreError("not open"))
        }
        let start = min(Int(offset), content.count)
        return .success(Array(content[start..<min(start + count, content.count)]))
    }

    public func freeBytes(directory: String) -> UInt64? { freeBytes }

    public func createPart(directory: String, name: String) -> Result<StoredFile, FileStoreError> {
        for index in 0..<1_000 {
            let path = directory + "/" + SafeFileName.alternative(name, index: index) + ".part"
            guard files[path] == nil else { continue }
            files[path] = []
            return .success(add(path, directory: directory, name: name))
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
        return .success(())
    }

    public func commit(_ file: StoredFile) -> Result<String, FileStoreError> {
        guard let entry = open[file.rawValue], let content = files[entry.path] else {
            return .failure(FileStoreError("not open"))
        }
        for index in 0..<1_000 {
            let path = entry.directory + "/" + SafeFileName.alternative(entry.name, index: index)
            guard files[path] == nil else { continue }
            files[path] = content
            files[entry.path] = nil
            open[file.rawValue]?.path = path
            return .success(path)
        }
        return .failure(FileStoreError("every name is taken"))
    }

    public func release(_ file: StoredFile, deletePart: Bool) {
        guard let entry = open.removeValue(forKey: file.rawValue) else { return }
        if deletePart && entry.path.hasSuffix(".part") { files[entry.path] = nil }
    }

    private func add(_ path: String, directory: String, name: String) -> StoredFile {
        defer { nextID += 1 }
        open[nextID] = (path, directory, name)
        return StoredFile(rawValue: nextID)
    }
}
