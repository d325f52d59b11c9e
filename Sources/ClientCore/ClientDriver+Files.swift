import ChatCore

/// File transfers: the driver carries out `FileTransfers`' actions with the session and the
/// file store, and decides what to do with an incoming offer (`FilePolicy`, or the user).
extension ClientDriver {
    /// The most actions carried out per pump (each transfer's window bounds the chunks; this
    /// bounds the loop whatever happens).
    static let fileActionsPerPumpMax = 4_096
    /// File control messages held for room in the session's queue: a transfer makes a few, and
    /// at most `FileTransferConfiguration.transfersMax` run (a peer's surplus offers are refused,
    /// one message each, so this bounds what a peer that never acknowledges can make us hold).
    static let heldFileControlsMax = 256

    /// Offer the file at `path` (`--send`, `/send`). Its first hash slice is hashed now: a file of
    /// at most one slice is offered with its hash; a larger one with its head's, the whole file's
    /// to follow: the transfers go on hashing it as its chunks are sealed, and a slice per turn of
    /// the shell's loop behind them (`hashFileSlice`), so that neither chat nor the transfer waits
    /// for a whole pass over it (about 1.7 s per GiB here).
    func offerFile(path: String, now: Instant) {
        guard let store = fileStore else {
            notify(.fileProblem("file transfers are not available here"))
            return
        }
        guard !files.isLeaving else {
            notify(.fileProblem("cannot send \(path): the session is ending"))
            return
        }
        let opened: (file: StoredFile, name: String, sizeBytes: UInt64)
        switch store.openForReading(path: path) {
        case let .success(file): opened = file
        case let .failure(error):
            fileFailuresLocal += 1
            notify(error.kind == .notRegularFile
                ? .fileNotRegular(path, error.reason) : .fileProblem("cannot send \(path): \(error)"))
            return
        }
        var head: FileHasher?
        let problem: String?
        if opened.sizeBytes > FileTransfers.fileBytesMax {
            problem = "it is larger than a transfer can carry"
        } else {
            let bytes = Int(min(opened.sizeBytes, UInt64(max(1, configuration.files.hashSliceBytes))))
            head = hashHead(opened.file, bytes: bytes, store: store)
            problem = head == nil ? "it could not be read" : nil
        }
        guard problem == nil, let head, let id = files.offer(
            name: opened.name, sizeBytes: opened.sizeBytes, hashedHead: head, entropy: entropy)
        else {
            store.release(opened.file, deletePart: false)
            fileFailuresLocal += 1
            notify(.fileProblem("cannot send \(path): \(problem ?? "too many transfers under way")"))
            return
        }
        storedFiles.append((id, .outgoing, opened.file))
    }

    /// A hasher fed the file's first `bytes` (at most one hash slice), or nil if they cannot be read.
    private func hashHead(_ file: StoredFile, bytes: Int, store: any FileStore) -> FileHasher? {
        guard case let .success(read) = store.readToHash(file, offset: 0, count: bytes), read.count == bytes
        else { return nil }
        let hasher = FileHasher()
        hasher.update(read)
        return hasher
    }

    /// One slice of an outgoing file whose hash follows its offer, where no chunk hashes it.
    private func hashFileSlice(now: Instant) {
        guard let store = fileStore,
              let request = files.nextHashSlice(maxBytes: configuration.files.hashSliceBytes) else { return }
        let read = storedFile(request.id, .outgoing).flatMap {
            try? store.readToHash($0, offset: request.offset, count: request.count).get()
        }
        files.hashSliceRead(request, read)
        extendDrain(now: now)
    }

    /// One slice of each kind of hash waiting.
    private func hashSlices(now: Instant) {
        hashPrefixSlice(now: now)
        hashFileSlice(now: now)
    }

    /// A slice is due at once while a prefix or a file waits to be hashed.
    private func scheduleHashSlices(now: Instant) {
        let waiting = !prefixJobs.isEmpty || files.nextPrefixCheck() != nil
            || files.nextHashSlice(maxBytes: configuration.files.hashSliceBytes) != nil
        hashSliceDue = waiting ? now : nil
    }

    /// At start: the `.part`s transfers cut off earlier left in `--accept-files DIR`, if any (they
    /// never expire on their own: a kept GiB is the user's to keep or delete).
    func reportKeptParts() {
        guard let directory = configuration.files.acceptDirectory,
              let kept = fileStore?.keptParts(directory: directory), kept.count > 0 else { return }
        notify(.fileKeptParts(kept, directory: directory))
    }

    /// Accept the incoming offer `info` into `directory`, unless the policy refuses it. A `.part`
    /// an earlier session left for the same name is resumed if the sender finds its prefix is
    /// the file's (the free space then needs to hold only the rest).
    func acceptOffer(_ info: FileOfferInfo, into directory: String, now: Instant) {
        guard let store = fileStore else {
            files.reject(info.id, .storage)
            return
        }
        guard !isAccepting(info.id) else {
            notify(.fileProblem("\(SafeFileName.make(info.name)) is already being accepted"))
            return
        }
        let name = SafeFileName.make(info.name)
        let tag = info.partTag
        let kept = info.sizeBytes > configuration.files.maxFileBytes
            ? nil : store.resumablePart(directory: directory, name: name, tag: tag, maxBytes: info.sizeBytes)
        if info.sizeBytes > configuration.files.maxFileBytes {
            files.reject(info.id, .tooLarge)
        } else if let free = store.freeBytes(directory: directory), free < info.sizeBytes - (kept?.sizeBytes ?? 0) {
            if let kept { store.release(kept.file, deletePart: false) }
            files.reject(info.id, .noSpace)
        } else if let kept {
            storedFiles.append((info.id, .incoming, kept.file))
            // The whole chunks worth proposing are hashed a slice at a time (`hashPrefixSlice`),
            // then accepted; none (a `.part` shorter than a chunk): accepted from 0 at once.
            let point = files.resumePoint(info.id, partBytes: kept.sizeBytes)
            if point.chunks > 0 {
                prefixJobs.append(PrefixHashJob(id: info.id, direction: .incoming, file: kept.file,
                                                bytes: point.bytes, chunks: point.chunks))
            } else {
                files.accept(info.id, now: now)
            }
        } else {
            switch store.createPart(directory: directory, name: name, tag: tag) {
            case let .success(file):
                storedFiles.append((info.id, .incoming, file))
                files.accept(info.id, now: now)
            case let .failure(error):
                let why = error.kind == .partInUse ? "its .part is in use by another securechat process" : "\(error)"
                notify(.fileProblem("cannot store \(name) in \(directory): \(why)"))
                files.reject(info.id, .storage)
            }
        }
        pumpFiles(now: now)
    }

    /// An incoming offer whose kept `.part` is being hashed before it is accepted.
    func isAccepting(_ id: FileID) -> Bool {
        storedFile(id, .incoming) != nil
    }

    /// One slice of the first prefix waiting for its hash (starting the sender's check of the
    /// first resume asked for, if none is under way); when it is whole, the transfer is told:
    /// the receiver accepts with it, the sender compares it. A job whose transfer ended meanwhile
    /// (its file was released) is dropped. One slice per call: the shell's loop turns in between.
    private func hashPrefixSlice(now: Instant) {
        if !prefixJobs.contains(where: { $0.direction == .outgoing }), let request = files.nextPrefixCheck() {
            if let file = storedFile(request.id, .outgoing) {
                prefixJobs.append(PrefixHashJob(id: request.id, direction: .outgoing, file: file,
                                                bytes: request.bytes, chunks: 0))
            } else {
                files.prefixHashed(request.id, digest: nil, now: now)
            }
        }
        guard let job = prefixJobs.first else { return }
        guard let store = fileStore, storedFile(job.id, job.direction) == job.file else {
            prefixJobs.removeFirst()
            return
        }
        let count = Int(min(UInt64(configuration.files.hashSliceBytes), job.bytes - job.hasher.bytesHashed))
        let read = count == 0 ? nil : try? store.readToHash(job.file, offset: job.hasher.bytesHashed, count: count).get()
        if let read, read.count == count { job.hasher.update(read) }
        let whole = job.hasher.bytesHashed == job.bytes
        guard whole || read?.count != count else { return }  // More slices to come.
        prefixJobs.removeFirst()
        switch job.direction {
        case .incoming:
            // Unreadable: nothing proposed, the transfer starts from 0 (the `.part` is rewritten).
            files.accept(job.id, now: now, prefix: whole ? FilePrefix(chunks: job.chunks, hasher: job.hasher) : nil)
        case .outgoing where job.recheck:
            if !files.hashRechecked(job.id, digest: whole ? job.hasher.finish() : nil) {
                notify(.fileProblem("a file changed on disk while it was being sent: not confirmed to the peer"))
            }
        case .outgoing:
            files.prefixHashed(job.id, digest: whole ? job.hasher.finish() : nil, now: now)
        }
    }

    /// The whole outgoing file is hashed as it was sent: unchanged on disk since it was opened, its
    /// `FHASH` goes; else (a log appended to, a file touched or torn) the offered bytes are hashed
    /// again, a slice per turn, and it goes only if they still are what was sent.
    private func verifyUnchanged(_ id: FileID) {
        guard let file = storedFile(id, .outgoing), let store = fileStore,
              let size = files.active.first(where: { $0.info.id == id && $0.direction == .outgoing })?.info.sizeBytes
        else {
            _ = files.hashRechecked(id, digest: nil)
            return
        }
        if store.changedSinceOpened(file) {
            prefixJobs.append(PrefixHashJob(id: id, direction: .outgoing, file: file, bytes: size, chunks: 0,
                                            recheck: true))
        } else {
            files.hashVerified(id)
        }
    }

    /// What the session handed on for the transfers.
    func receiveFileMessage(_ message: FileSessionMessage, now: Instant) {
        switch message {
        case let .control(bytes): files.receiveControl(bytes, now: now)
        case let .signal(signal): files.receiveSignal(signal, now: now)
        }
    }

    /// The session has keys (again): a new peer instance ends every transfer; otherwise the
    /// transfers go on from the last acknowledged chunk. (Not `resumed`: the same instance does
    /// not resume a conversation it never confirmed, and our offers to it are still on their way;
    /// the simulator's `file-liveness` found that.)
    func filesSecured(now: Instant) {
        let peer = session.confirmedPeerInstance
        if let previous = securedPeer, previous != peer {
            dropHeldFileControls { _ in true }  // Their transfers end here; the new instance never knew them.
            files.failAll(.peerChanged)
        }
        securedPeer = peer
        files.connected(now: now)
    }

    /// Forget held file messages, zeroed first (an `OFFER` carries its file's key).
    func dropHeldFileControls(_ dropped: ([UInt8]) -> Bool) {
        var kept: [[UInt8]] = []
        for index in heldFileControls.indices {
            // Zeroed where it lies: a copy taken first would be zeroed instead of the bytes held.
            if dropped(heldFileControls[index]) {
                Sodium.memzero(&heldFileControls[index])
            } else {
                kept.append(heldFileControls[index])
            }
        }
        heldFileControls = kept
    }

    /// File control messages waiting for room in the session's queue, in order. A refused one
    /// used to be lost: a lost `FHASH`, `DONE` or `ACCEPT` left both sides waiting for ever.
    private func sendHeldFileControls(now: Instant) {
        while let bytes = heldFileControls.first {  // Bounded: each round sends or drops one.
            switch session.sendFileControl(bytes, now: now) {
            case let .success(id): fileControls[id] = bytes
            case .failure(.queueFull): return  // Sent again at the next turn, once the queue has room.
            case let .failure(refusal): notify(.fileProblem("file message not sent: \(refusal)"))
            }
            heldFileControls.removeFirst()
            process(session.drainOutputs(), now: now)
        }
    }

    /// Carry out what the transfers ask, then send the chunks the windows allow.
    func pumpFiles(now: Instant) {
        sendHeldFileControls(now: now)
        hashSlices(now: now)
        var budget = Self.fileActionsPerPumpMax
        while budget > 0 {
            let actions = files.drainActions()
            if actions.isEmpty {
                guard sendNextChunk(now: now) else { break }
            }
            for action in actions { perform(action, now: now) }
            budget -= max(1, actions.count)
        }
        scheduleHashSlices(now: now)
    }

    /// Read, seal and send the next chunk a window allows; false when there is none to send now.
    private func sendNextChunk(now: Instant) -> Bool {
        guard session.state == .connected, case let .up(id, _, _) = link, unwritableLink != id,
              let store = fileStore, let request = files.nextChunk(),
              let file = storedFile(request.id, .outgoing) else { return false }
        let bytes: [UInt8]
        switch store.read(file, offset: request.offset, count: request.length) {
        case let .success(read): bytes = read
        case .failure: bytes = []  // Not the chunk's length: the transfer fails (storage).
        }
        guard let signal = files.sealChunk(request, bytes, now: now) else { return true }
        return transmitFileSignal(signal, now: now)
    }

    private func perform(_ action: FileAction, now: Instant) {
        switch action {
        case let .control(bytes):
            guard heldFileControls.count < Self.heldFileControlsMax else {
                notify(.fileProblem("file message not sent: \(heldFileControls.count) are already waiting"))
                return
            }
            heldFileControls.append(bytes)
            sendHeldFileControls(now: now)
        case let .signal(signal):
            _ = transmitFileSignal(signal, now: now)
        case let .write(id, offset, bytes):
            guard let file = storedFile(id, .incoming), let store = fileStore else { return }
            if case .failure = store.write(file, offset: offset, bytes: bytes) { files.fail(id, .incoming, .storage) }
        case let .store(id):
            guard let file = storedFile(id, .incoming), let store = fileStore else { return }
            switch store.commit(file) {
            case let .success(path):
                savedPaths.append((id, path))
                files.stored(id)
            case .failure:
                files.fail(id, .incoming, .storage)
            }
        case let .truncate(id):
            guard let file = storedFile(id, .incoming), let store = fileStore else { return }
            if case .failure = store.truncate(file) { files.fail(id, .incoming, .storage) }
        case let .verifyUnchanged(id):
            verifyUnchanged(id)
        case let .release(id, deletePart):
            // Ended before its OFFER left: the peer never hears of it, nor of what followed.
            if heldFileControls.contains(where: { FileTransfers.offeredFile(inControl: $0) == id }) {
                dropHeldFileControls { FileTransfers.file(ofControl: $0) == id }
            }
            guard let index = storedFiles.firstIndex(where: { $0.id == id }) else { return }
            fileStore?.release(storedFiles.remove(at: index).file, deletePart: deletePart)
        case let .event(event):
            fileEvent(event, now: now)
        }
    }

    /// A transfer moving (or a file being hashed for its offer) is not a peer that went silent:
    /// the drain waits while it moves.
    private func extendDrain(now: Instant) {
        if case let .draining(deadline) = phase {
            phase = .draining(deadline: max(deadline, now.advanced(by: configuration.drainTimeout)))
        }
    }

    private func fileEvent(_ event: FileEvent, now: Instant) {
        extendDrain(now: now)
        var savedAs: String?
        if case let .done(info, .incoming, _) = event, let index = savedPaths.firstIndex(where: { $0.id == info.id }) {
            savedAs = savedPaths.remove(at: index).path
        }
        show(.file(event, savedAs: savedAs))
        guard case let .offered(info, .incoming) = event else { return }
        if let directory = configuration.files.acceptDirectory {
            acceptOffer(info, into: directory, now: now)
        } else if !configuration.interactive {
            files.reject(info.id, .declined)
        } else {
            notify(.fileOffered)
        }
    }

    private func storedFile(_ id: FileID, _ direction: FileDirection) -> StoredFile? {
        storedFiles.first { $0.id == id && $0.direction == direction }?.file
    }

    /// Transfers that failed or were refused, here or at the peer (exit 8 when any).
    var fileFailures: Int {
        fileFailuresLocal + files.statistics.failedOutgoing + files.statistics.failedIncoming
    }

    // MARK: Commands

    /// `/accept [DIR]`: the oldest offer waiting, into DIR (else `--accept-files`, else `.`).
    func acceptCommand(_ directory: String?, now: Instant) {
        guard let offer = files.awaitingAnswer.first(where: { !isAccepting($0.id) }) else {
            notify(.fileProblem("no file offer is waiting"))
            return
        }
        acceptOffer(offer, into: directory ?? configuration.files.acceptDirectory ?? ".", now: now)
    }

    /// `/reject`: the oldest offer waiting.
    func rejectCommand(now: Instant) {
        guard let offer = files.awaitingAnswer.first(where: { !isAccepting($0.id) }) else {
            notify(.fileProblem("no file offer is waiting"))
            return
        }
        files.reject(offer.id, .declined)
        pumpFiles(now: now)
    }

    /// `/cancel`: the oldest transfer under way, either direction.
    func cancelCommand(now: Instant) {
        guard let transfer = files.active.first else {
            notify(.fileProblem("no transfer is under way"))
            return
        }
        files.fail(transfer.info.id, transfer.direction, .cancelled)
        pumpFiles(now: now)
    }
}

/// A prefix being hashed a slice at a time: a kept `.part`'s first `bytes` (incoming: `chunks`
/// whole chunks, to propose) or our file's (outgoing: to compare with a peer's resume).
final class PrefixHashJob {
    let id: FileID
    let direction: FileDirection
    let file: StoredFile
    let bytes: UInt64
    let chunks: UInt64
    /// Outgoing: the whole file again, after it changed on disk while it was sent (`verifyUnchanged`).
    let recheck: Bool
    let hasher = FileHasher()

    init(id: FileID, direction: FileDirection, file: StoredFile, bytes: UInt64, chunks: UInt64, recheck: Bool = false) {
        self.id = id
        self.direction = direction
        self.file = file
        self.bytes = bytes
        self.chunks = chunks
        self.recheck = recheck
    }
}
