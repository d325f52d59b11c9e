/// The hash that follows an offer (docs/PROTOCOL.md, "File transfer", "The hash that follows"). A
/// large file is offered with its head's hash only, so that the transfer never waits for a whole
/// pass over it (about 1.7 s per GiB here): the sender feeds the hash each chunk's bytes as it
/// seals them, hashes in slices through the driver only what no chunk covers (while the offer waits
/// for its answer, or behind a resume's start), has the driver check the file did not change on
/// disk meanwhile, and sends `FHASH`. The receiver writes chunks as they come but gives the file
/// its name only once `FHASH` agrees with what it wrote; the head's hash names its `.part`
/// (`FileOfferInfo.partTag`).
extension FileTransfers {
    /// The next bytes of an outgoing file to hash, at most `maxBytes`, or nil when none waits:
    /// while chunks move, a chunk sent hashes its own bytes, so a slice only catches up to the
    /// next chunk to send; otherwise (waiting for the answer, a prefix check, `DONE`) to the end.
    public func nextHashSlice(maxBytes: Int) -> FileHashRequest? {
        for transfer in transfers where transfer.direction == .outgoing {
            guard let hasher = transfer.hasher else { continue }
            var end = transfer.info.sizeBytes
            if case let .moving(_, next, _) = transfer.phase { end = min(end, next * UInt64(transfer.chunkBytes)) }
            guard hasher.bytesHashed < end else { continue }
            let count = Int(min(UInt64(max(1, maxBytes)), end - hasher.bytesHashed))
            return FileHashRequest(id: transfer.info.id, offset: hasher.bytesHashed, count: count)
        }
        return nil
    }

    /// The bytes `nextHashSlice` asked for (nil: the file could not be read; fewer: it shrank):
    /// the transfer fails `storage` unless they are exactly the bytes asked for.
    public mutating func hashSliceRead(_ request: FileHashRequest, _ bytes: [UInt8]?) {
        guard let index = index(of: request.id, .outgoing), let hasher = transfers[index].hasher,
              hasher.bytesHashed == request.offset else { return }  // Moved on meanwhile (a chunk hashed it).
        guard let bytes, bytes.count == request.count else {
            fail(request.id, .outgoing, .storage)
            return
        }
        hasher.update(bytes)
        if hasher.bytesHashed == transfers[index].info.sizeBytes { finishHash(at: index) }
    }

    /// A chunk at `offset` is being sealed: the part of it the hash has not seen yet, if the hash
    /// has reached it (a chunk past a gap is left to the slices; one sent again adds nothing).
    mutating func hashInline(at index: Int, offset: UInt64, _ plaintext: [UInt8]) {
        guard let hasher = transfers[index].hasher, hasher.bytesHashed >= offset,
              hasher.bytesHashed < offset + UInt64(plaintext.count) else { return }
        let seen = Int(hasher.bytesHashed - offset)
        hasher.update(seen == 0 ? plaintext : Array(plaintext[seen...]))
        if hasher.bytesHashed == transfers[index].info.sizeBytes { finishHash(at: index) }
    }

    /// The whole outgoing file is hashed: the driver checks it did not change meanwhile.
    private mutating func finishHash(at index: Int) {
        guard let hasher = transfers[index].hasher else { return }
        transfers[index].hasher = nil
        transfers[index].hashToVerify = hasher.finish()
        pending.append(.verifyUnchanged(transfers[index].info.id))
    }

    /// The driver's answer to `verifyUnchanged`: the file is unchanged on disk since it was opened.
    public mutating func hashVerified(_ id: FileID) {
        guard let index = index(of: id, .outgoing), let hash = transfers[index].hashToVerify else { return }
        sendFileHash(at: index, hash)
    }

    /// The driver's other answer: the file changed on disk, and `digest` is its offered bytes hashed
    /// again (nil: they could not be read). Equal to what was sent (a file appended to, or only
    /// touched), `FHASH` goes; else the transfer fails `storage` and the receiver deletes its
    /// `.part`. Whether `FHASH` went.
    @discardableResult
    public mutating func hashRechecked(_ id: FileID, digest: [UInt8]?) -> Bool {
        guard let index = index(of: id, .outgoing), let hash = transfers[index].hashToVerify else { return false }
        guard digest == hash else {
            transfers[index].hashToVerify = nil
            fail(id, .outgoing, .storage)
            return false
        }
        sendFileHash(at: index, hash)
        return true
    }

    private mutating func sendFileHash(at index: Int, _ hash: [UInt8]) {
        transfers[index].hashToVerify = nil
        transfers[index].info.hash = hash
        let info = transfers[index].info
        pending.append(.control(FileControl.fileHash(info.id, hash: info.hash).encode()))
        pending.append(.event(.hashed(info, .outgoing)))
    }

    /// The sender's `FHASH`: only for an incoming offer that said the hash follows, once. Every
    /// chunk already written: the file is checked now.
    mutating func receiveFileHash(_ id: FileID, hash: [UInt8]) {
        guard let index = index(of: id, .incoming), transfers[index].info.hashFollows,
              !transfers[index].info.hashKnown else {
            statistics.messagesRejected += 1
            return
        }
        transfers[index].info.hash = hash
        pending.append(.event(.hashed(transfers[index].info, .incoming)))
        if case let .written(digest) = transfers[index].phase { check(at: index, digest: digest) }
    }
}
