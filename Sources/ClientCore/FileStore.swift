import ChatCore

/// A file the store has open, named by the store (the driver never sees a descriptor).
public struct StoredFile: Hashable, Sendable {
    public let rawValue: Int

    public init(rawValue: Int) {
        self.rawValue = rawValue
    }
}

/// Why the store could not do what the driver asked (for the user; no file content).
public struct FileStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The failures the driver tells apart.
    public enum Kind: Hashable, Sendable {
        case other
        /// A `.part` just created is locked by another transfer (another process of this user
        /// opened it to resume in the instant between its creation and our lock): it is theirs.
        case partInUse
        /// A path to send names no regular file (a FIFO, a device, a socket, a directory): it is
        /// refused without being read (and without waiting in `open`).
        case notRegularFile
    }

    public var reason: String
    public var kind: Kind

    public init(_ reason: String, kind: Kind = .other) {
        self.reason = reason
        self.kind = kind
    }

    public var description: String { reason }
}

/// The disk, as file transfers need it: the only I/O they do, behind a protocol so that the
/// shell supplies the real one (ChatClient's `DiskFileStore`: O_NOFOLLOW, O_EXCL, pread/pwrite,
/// statvfs, no overwrite) and a simulation could supply one in memory. Every decision (what to
/// write where, what to refuse) is the driver's and `FileTransfers`'; the store only obeys.
public protocol FileStore: AnyObject {
    /// Open a regular file to send (the user's own path); its base name and size. Anything else
    /// is a failure of kind `notRegularFile`, and never blocks (a FIFO waits for a writer in `open`).
    func openForReading(path: String) -> Result<(file: StoredFile, name: String, sizeBytes: UInt64), FileStoreError>
    /// Exactly `count` bytes at `offset` (fewer only at the end of a file that shrank).
    func read(_ file: StoredFile, offset: UInt64, count: Int) -> Result<[UInt8], FileStoreError>
    /// As `read`, for bytes to hash rather than to send (a store may tell the two apart: the
    /// simulator's checker counts the chunks a sender reads).
    func readToHash(_ file: StoredFile, offset: UInt64, count: Int) -> Result<[UInt8], FileStoreError>
    /// Whether a file opened to send changed since it was opened (its size, or its modification
    /// or status-change time, on the descriptor): its hash, taken while it was sent, may then
    /// cover a mix of old and new bytes, and the driver hashes it again. True also when it cannot
    /// be told. No default: a store that cannot tell must say so (true), never skip the check.
    func changedSinceOpened(_ file: StoredFile) -> Bool
    /// Bytes free for an unprivileged user in `directory` (statvfs), or nil if unknown.
    func freeBytes(directory: String) -> UInt64?
    /// Create `SafeFileName.partName(name, index: n, tag: tag)` in `directory` for the first n not
    /// taken, new (O_EXCL), never through a symlink, and locked for this transfer; `name` is
    /// already a safe basename, `tag` the offer's (`SafeFileName.partTag`). A lock held elsewhere
    /// is a failure of kind `partInUse`.
    func createPart(directory: String, name: String, tag: String) -> Result<StoredFile, FileStoreError>
    func write(_ file: StoredFile, offset: UInt64, bytes: [UInt8]) -> Result<Void, FileStoreError>
    /// Give a complete `.part` its final name (the first of `name`, `name (1).ext`, … not taken:
    /// never overwriting); the path it now has.
    func commit(_ file: StoredFile) -> Result<String, FileStoreError>
    /// Close the file; delete it first when it is a `.part` that did not become the file.
    func release(_ file: StoredFile, deletePart: Bool)
    /// Open a `.part` an earlier session left in `directory` for `name` and the same offered file
    /// (the names `createPart` gives with `tag`) to resume it: only one this user owns, a regular
    /// file with no other link, not a symlink, at most `maxBytes`, and not in use by another
    /// transfer. Nil if none.
    func resumablePart(directory: String, name: String, tag: String, maxBytes: UInt64)
        -> (file: StoredFile, sizeBytes: UInt64)?
    /// Cut an open `.part` to zero bytes (its prefix was not the offered file's).
    func truncate(_ file: StoredFile) -> Result<Void, FileStoreError>
    /// The `.part`s earlier transfers left in `directory` (names `createPart` gives, regular files
    /// of this user), or nil if it cannot be read. Reported at start; never deleted by the client.
    func keptParts(directory: String) -> KeptParts?
}

/// What `FileStore.keptParts` found.
public struct KeptParts: Hashable, Sendable {
    public var count: Int
    public var bytes: UInt64
    /// Whole days since the oldest was last written.
    public var oldestDays: Int

    public init(count: Int, bytes: UInt64, oldestDays: Int) {
        self.count = count
        self.bytes = bytes
        self.oldestDays = oldestDays
    }
}

extension FileStore {
    public func readToHash(_ file: StoredFile, offset: UInt64, count: Int) -> Result<[UInt8], FileStoreError> {
        read(file, offset: offset, count: count)
    }

    /// A store that keeps no `.part` across sessions: every transfer starts from 0.
    public func resumablePart(directory: String, name: String, tag: String, maxBytes: UInt64)
        -> (file: StoredFile, sizeBytes: UInt64)?
    {
        nil
    }

    public func truncate(_ file: StoredFile) -> Result<Void, FileStoreError> {
        .failure(FileStoreError("this store does not resume files"))
    }

    public func keptParts(directory: String) -> KeptParts? {
        nil
    }
}

/// What the client does with files: what to offer at the start, where to put what is offered.
public struct FilePolicy: Sendable {
    /// `--send PATH` (repeatable): offered as soon as the session starts.
    public var sendPaths: [String] = []
    /// `--accept-files DIR`: every offer is accepted into DIR. Nil: in pipe mode offers are
    /// declined, interactively the user answers `/accept` or `/reject`.
    public var acceptDirectory: String?
    /// `--max-file-bytes`: larger offers are refused (`too_large`).
    public var maxFileBytes: UInt64 = FileTransfers.fileBytesMax
    public var transfer = FileTransferConfiguration()
    /// Bytes of a file hashed per turn of the shell's loop where no chunk sent hashes them (a file
    /// whose offer waits for its answer, a kept `.part`'s prefix; about 4 ms here): between slices
    /// the shell reads the network and the keyboard, so hashing a GiB (about 1.7 s) never holds up
    /// chat, pings or keepalives. A file of at most this size is hashed before its offer, which then
    /// carries the hash; a larger one is offered first. The driver's tests make it small, to slice
    /// files small enough for a debug build.
    public var hashSliceBytes = 4 << 20

    public init() {}
}
