/// Chunks and their acknowledgements (SIGNAL kinds `FCHUNK` and `FACK`), the window, go-back.
///
/// `FCHUNK` payload: file id (16) ‖ chunk index (8) ‖ box(file key, nonce 5 ‖ 0¹⁵ ‖ index, chunk).
/// `FACK` payload: file id (16) ‖ count (8) ‖ box(file key, nonce 6 ‖ 0¹⁵ ‖ count, empty): the
/// receiver has written chunks 0 ..< count.
extension FileTransfers {
    static let headerBytes = FileID.byteCount + 8
    static let macBytes = 16

    // MARK: Sending chunks

    /// The next chunk the window lets the sender send, or nil. The window holds the chunks in flight
    /// of all outgoing transfers together: what the relay may have to hold for this connection, and
    /// what this side may queue over its socket's watermark, is one window whatever their number.
    public func nextChunk() -> FileChunkRequest? {
        var inFlight: UInt64 = 0
        for transfer in transfers where transfer.direction == .outgoing {
            if case let .moving(done, next, _) = transfer.phase, next > done { inFlight += next - done }
        }
        guard inFlight < UInt64(configuration.windowChunks) else { return nil }
        for transfer in transfers where transfer.direction == .outgoing {
            guard case let .moving(_, next, _) = transfer.phase, next < transfer.chunkCount else { continue }
            return FileChunkRequest(
                id: transfer.info.id, index: next, offset: next * UInt64(transfer.chunkBytes),
                length: transfer.length(ofChunk: next))
        }
        return nil
    }

    /// Seal the chunk `request` names with its bytes, read from the file; the SIGNAL to send.
    /// Nil when the transfer moved on meanwhile, or the bytes are not the chunk's length (the file
    /// changed under us: the transfer fails, `storage`).
    public mutating func sealChunk(_ request: FileChunkRequest, _ plaintext: [UInt8], now: Instant) -> Signal? {
        guard let index = index(of: request.id, .outgoing),
              case let .moving(done, next, heardAt) = transfers[index].phase, next == request.index else { return nil }
        guard plaintext.count == request.length else {
            fail(request.id, .outgoing, .storage)
            return nil
        }
        hashInline(at: index, offset: request.offset, plaintext)
        var payload = request.id.bytes
        payload.reserveCapacity(Self.headerBytes + plaintext.count + Self.macBytes)
        BigEndian.append(request.index, to: &payload)
        transfers[index].key.seal(
            purpose: FileKey.purposeChunk, counter: request.index, plaintext, appendingTo: &payload)
        // A window that starts now starts its stall clock now: a transfer that waited behind
        // another's chunks in the shared window has lost nothing.
        transfers[index].phase = .moving(done: done, next: next + 1, heardAt: next == done ? now : heardAt)
        return Signal(kind: .fileChunk, payload: payload)
    }

    /// The session has (new) keys: chunks sent since the last acknowledgement may be lost, so the
    /// sender goes back to it; the receiver says where it stands.
    public mutating func connected(now: Instant) {
        for index in transfers.indices {
            if case .written = transfers[index].phase { acknowledge(at: index, count: transfers[index].chunkCount) }
            guard case let .moving(done, _, _) = transfers[index].phase else { continue }
            if transfers[index].direction == .outgoing {
                goBack(at: index, now: now)
            } else {
                acknowledge(at: index, count: done)
            }
        }
    }

    /// When a stalled window is next due to go back.
    public func pollTimeout() -> Instant? {
        guard !isLeaving else { return nil }  // Leaving: nothing goes back (`goBack`), nothing is due.
        var earliest: Instant?
        for transfer in transfers where transfer.direction == .outgoing {
            guard case let .moving(done, next, heardAt) = transfer.phase, next > done else { continue }
            let due = heardAt.advanced(by: configuration.stallTimeout)
            earliest = min(earliest ?? due, due)
        }
        return earliest
    }

    /// Go back to the last acknowledged chunk in every window stalled at `now`.
    public mutating func handleTimeout(now: Instant) {
        for index in transfers.indices where transfers[index].direction == .outgoing {
            guard case let .moving(done, next, heardAt) = transfers[index].phase, next > done,
                  heardAt.advanced(by: configuration.stallTimeout) <= now else { continue }
            goBack(at: index, now: now)
        }
    }

    /// Send again from the last acknowledged chunk; never while leaving (`startLeaving`: a chunk
    /// the receiver takes after our goodbye would store a file whose `DONE` never reaches us).
    private mutating func goBack(at index: Int, now: Instant) {
        guard !isLeaving, case let .moving(done, next, _) = transfers[index].phase else { return }
        statistics.chunksResent += Int(next - done)
        transfers[index].resent += Int(next - done)
        transfers[index].phase = .moving(done: done, next: done, heardAt: now)
    }

    // MARK: Receiving

    /// An `FCHUNK` or `FACK` from the peer (the session checked it is CONNECTED).
    public mutating func receiveSignal(_ signal: Signal, now: Instant) {
        guard let payload = signal.payload, payload.count >= Self.headerBytes + Self.macBytes else {
            statistics.chunksRejected += 1
            return
        }
        let id = FileID(bytes: Array(payload[0..<FileID.byteCount]))
        let counter = BigEndian.uint64(payload, at: FileID.byteCount)
        let box = payload[Self.headerBytes...]
        switch signal.kind {
        case .fileChunk: receiveChunk(id, index: counter, box: box, now: now)
        case .fileAck: receiveAck(id, count: counter, box: box, now: now)
        default: statistics.messagesRejected += 1
        }
    }

    private mutating func receiveChunk(_ id: FileID, index chunk: UInt64, box: ArraySlice<UInt8>, now: Instant) {
        guard let index = index(of: id, .incoming), case let .moving(done, _, _) = transfers[index].phase else {
            if let index = index(of: id, .incoming), case .written = transfers[index].phase {
                // Every chunk is written and `FHASH` is awaited: say so again, or the sender, its last
                // acknowledgement lost, would send its window again every stall timeout meanwhile.
                statistics.duplicateChunks += 1
                acknowledge(at: index, count: transfers[index].chunkCount)
            } else {
                statistics.chunksRejected += 1
            }
            return
        }
        guard chunk == done else {
            if chunk < done {
                // Written already (a resend after a go-back, or a replay): never written twice.
                statistics.duplicateChunks += 1
                acknowledge(at: index, count: done)
            } else {
                statistics.chunksRejected += 1  // Past a gap (or past the end): never written.
            }
            return
        }
        guard let plaintext = transfers[index].key.open(purpose: FileKey.purposeChunk, counter: chunk, box) else {
            statistics.chunksRejected += 1  // Tampered, or another file's: dropped.
            return
        }
        guard plaintext.count == transfers[index].length(ofChunk: chunk) else {
            fail(id, .incoming, .protocolError)  // Authenticated, so the peer itself broke the rules.
            return
        }
        if chunk == transfers[index].resumedFrom && chunk > 0 {
            // The first chunk after the kept prefix: the sender accepted the resume.
            let bytes = chunk * UInt64(transfers[index].chunkBytes)
            pending.append(.event(.resumed(transfers[index].info, .incoming, bytes: bytes)))
        }
        pending.append(.write(id, offset: chunk * UInt64(transfers[index].chunkBytes), bytes: plaintext))
        transfers[index].hasher?.update(plaintext)
        let count = chunk + 1
        transfers[index].phase = .moving(done: count, next: count, heardAt: now)
        reportProgress(at: index, bytes: min(count * UInt64(transfers[index].chunkBytes), transfers[index].info.sizeBytes),
                       now: now)
        if count == transfers[index].chunkCount {
            acknowledge(at: index, count: count)
            finishReceiving(at: index)
        } else if count % UInt64(configuration.ackEveryChunks) == 0 {
            acknowledge(at: index, count: count)
        }
    }

    /// Every chunk is written: the hash decides between storing the file and deleting it (once
    /// `FHASH` came, when the hash followed the offer).
    mutating func finishReceiving(at index: Int) {
        let digest = transfers[index].hasher?.finish() ?? []
        transfers[index].hasher = nil
        guard transfers[index].info.hashKnown else {
            transfers[index].phase = .written(digest: digest)
            return
        }
        check(at: index, digest: digest)
    }

    /// The receiver's digest of every byte it wrote against the sender's hash.
    mutating func check(at index: Int, digest: [UInt8]) {
        guard digest == transfers[index].info.hash else {
            fail(transfers[index].info.id, .incoming, .hashMismatch)
            return
        }
        transfers[index].phase = .storing
        pending.append(.store(transfers[index].info.id))
    }

    private mutating func acknowledge(at index: Int, count: UInt64) {
        let transfer = transfers[index]
        var payload = transfer.info.id.bytes
        BigEndian.append(count, to: &payload)
        payload += transfer.key.seal(purpose: transfer.ackPurpose, counter: count, [])
        pending.append(.signal(Signal(kind: .fileAck, payload: payload)))
    }

    private mutating func receiveAck(_ id: FileID, count: UInt64, box: ArraySlice<UInt8>, now: Instant) {
        guard let index = index(of: id, .outgoing), case let .moving(done, next, _) = transfers[index].phase,
              let opened = transfers[index].key.open(purpose: transfers[index].ackPurpose, counter: count, box),
              opened.isEmpty else {
            statistics.chunksRejected += 1
            return
        }
        guard count <= transfers[index].chunkCount else {
            fail(id, .outgoing, .protocolError)
            return
        }
        guard count > done else { return }  // An older acknowledgement (or a replay of one).
        transfers[index].phase = .moving(done: count, next: max(next, count), heardAt: now)
        let bytes = min(count * UInt64(transfers[index].chunkBytes), transfers[index].info.sizeBytes)
        reportProgress(at: index, bytes: bytes, now: now)
        if count == transfers[index].chunkCount { transfers[index].phase = .confirming }
    }
}
