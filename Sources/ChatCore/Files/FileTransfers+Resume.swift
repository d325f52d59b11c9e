/// Resuming a transfer in a new session from the `.part` an earlier one left (docs/PROTOCOL.md,
/// "File transfer", "Resume"). The receiver proposes a start chunk and the BLAKE2b-256 of the
/// chunks before it; the sender hashes its own file's prefix (through the driver: no I/O here)
/// and continues from there if they are equal, else answers `RESTART` and both start from 0.
/// The receiver's hasher carries on from its prefix, so the whole-file check still covers it.

/// The chunks of a kept `.part` a receiver proposes to keep, hashed by the driver.
public struct FilePrefix {
    /// Whole chunks kept (from `FileTransfers.resumePoint`).
    public let chunks: UInt64
    /// A hasher fed exactly those chunks' bytes, in order (it goes on hashing the rest).
    public let hasher: FileHasher

    public init(chunks: UInt64, hasher: FileHasher) {
        self.chunks = chunks
        self.hasher = hasher
    }
}

/// A sender's prefix to hash: BLAKE2b-256 of the first `bytes` of the file, for `prefixHashed`.
public struct FilePrefixRequest: Hashable, Sendable {
    public let id: FileID
    public let bytes: UInt64
}

extension FileTransfers {
    /// For an incoming offer and a kept `.part` of `partBytes`: how many whole chunks to propose
    /// and how many bytes of the `.part` to hash for them. Always short of the last chunk, so
    /// that at least one chunk moves and the transfer ends as any other; (0, 0) when nothing can
    /// be kept (no such offer, a `.part` larger than the file, shorter than a chunk).
    public func resumePoint(_ id: FileID, partBytes: UInt64) -> (chunks: UInt64, bytes: UInt64) {
        guard let index = index(of: id, .incoming), transfers[index].phase == .offered,
              partBytes <= transfers[index].info.sizeBytes, transfers[index].chunkCount > 0 else { return (0, 0) }
        let chunkBytes = UInt64(transfers[index].chunkBytes)
        let chunks = min(partBytes / chunkBytes, transfers[index].chunkCount - 1)
        return (chunks, chunks * chunkBytes)
    }

    /// The first outgoing prefix waiting for its hash, or nil.
    public func nextPrefixCheck() -> FilePrefixRequest? {
        for transfer in transfers where transfer.direction == .outgoing {
            if case let .verifying(start, _) = transfer.phase {
                return FilePrefixRequest(id: transfer.info.id, bytes: start * UInt64(transfer.chunkBytes))
            }
        }
        return nil
    }

    /// The driver's BLAKE2b-256 of the prefix `nextPrefixCheck` named (nil: the file could not be
    /// read, the transfer fails `storage`). Equal to the receiver's: the transfer continues from
    /// there. Different: `RESTART`, and the receiver accepts again from 0.
    public mutating func prefixHashed(_ id: FileID, digest: [UInt8]?, now: Instant) {
        guard let index = index(of: id, .outgoing), case let .verifying(start, expected) = transfers[index].phase
        else { return }
        guard let digest else {
            fail(id, .outgoing, .storage)
            return
        }
        guard digest == expected else {
            statistics.prefixesRefused += 1
            transfers[index].restarted = true
            transfers[index].phase = .offered
            pending.append(.control(FileControl.restart(id).encode()))
            return
        }
        let bytes = start * UInt64(transfers[index].chunkBytes)
        transfers[index].resumedFrom = start
        transfers[index].reported = bytes
        transfers[index].phase = .moving(done: start, next: start, heardAt: now)
        pending.append(.event(.resumed(transfers[index].info, .outgoing, bytes: bytes)))
    }

    /// The receiver's `ACCEPT`: from 0 (with a zero hash), or a resume strictly inside the file,
    /// once per offer (never after a restart). Anything else is a protocol error.
    mutating func receiveAccept(_ id: FileID, startChunk: UInt64, prefixHash: [UInt8], now: Instant) {
        guard let index = index(of: id, .outgoing), transfers[index].phase == .offered else {
            statistics.messagesRejected += 1
            return
        }
        let chunkCount = transfers[index].chunkCount
        guard startChunk > 0 else {
            guard prefixHash.allSatisfy({ $0 == 0 }) else {
                fail(id, .outgoing, .protocolError)
                return
            }
            transfers[index].phase = chunkCount == 0 ? .confirming : .moving(done: 0, next: 0, heardAt: now)
            return
        }
        // Compared before any multiplication: a start past the end never becomes an offset.
        guard startChunk < chunkCount, !transfers[index].restarted else {
            fail(id, .outgoing, .protocolError)
            return
        }
        transfers[index].phase = .verifying(start: startChunk, prefixHash: prefixHash)
    }

    /// The sender's `RESTART`: valid only for a resume this receiver proposed, once. The `.part`
    /// is emptied, the hash starts over, and the receiver accepts again from 0.
    mutating func receiveRestart(_ id: FileID, now: Instant) {
        guard let index = index(of: id, .incoming), transfers[index].resumedFrom > 0, !transfers[index].restarted,
              case .moving = transfers[index].phase else {
            statistics.messagesRejected += 1
            return
        }
        transfers[index].restarted = true
        transfers[index].resumedFrom = 0
        transfers[index].hasher = FileHasher()
        transfers[index].reported = 0
        transfers[index].phase = .moving(done: 0, next: 0, heardAt: now)
        pending.append(.truncate(id))
        pending.append(.control(FileControl.accept(
            id, startChunk: 0, prefixHash: [UInt8](repeating: 0, count: FileControl.hashBytes)).encode()))
    }
}
