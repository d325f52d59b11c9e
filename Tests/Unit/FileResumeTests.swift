@testable import ChatCore
import ChatTesting
import Testing

/// Resume in a new session from a kept `.part`: the receiver proposes whole chunks and their
/// hash, the sender checks them against its file; a wrong or hostile proposal never makes
/// anything written out of place or a wrong file stored.
extension FileTransferTests {
    /// A new session's offer of `file` to a receiver whose `.part` holds `kept`; the receiver
    /// proposes what `resumePoint` allows (its hasher fed from `kept`). Nothing delivered yet
    /// beyond the offer and the receiver's answer (in its actions).
    static func resuming(_ file: [UInt8], kept: [UInt8], hash: [UInt8]? = nil) -> (Pair, FileID) {
        var pair = Pair(configuration: small)
        pair.disk = kept
        let id = pair.sender.offer(
            name: "report.pdf", sizeBytes: UInt64(file.count), hash: hash ?? Self.hash(file),
            entropy: SeededEntropy(seed: 9))!
        pair.runSender(accept: false)
        let point = pair.receiver.resumePoint(id, partBytes: UInt64(kept.count))
        let hasher = FileHasher()
        hasher.update(Array(kept.prefix(Int(point.bytes))))
        pair.receiver.accept(id, now: pair.now, prefix: FilePrefix(chunks: point.chunks, hasher: hasher))
        return (pair, id)
    }

    static func failed(_ events: [FileEvent], _ direction: FileDirection, _ failure: FileFailure) -> Bool {
        events.contains { if case .failed(_, direction, failure) = $0 { true } else { false } }
    }

    @Test("Resume: a kept prefix of 5½ chunks is checked by the sender; chunks 5… move, the file is whole and stored")
    func resumeAccepted() {
        let file = Self.file(10 * 1024 + 333)
        var (pair, id) = Self.resuming(file, kept: Array(file.prefix(5 * 1024 + 500)))
        pair.run(file)
        #expect(pair.stored && pair.disk == file)
        // Whole chunks from the 6th: the half chunk kept is written again, nothing before it.
        #expect(pair.writes.map(\.offset) == (5..<11).map { UInt64($0 * 1024) })
        let info = FileOfferInfo(id: id, name: "report.pdf", sizeBytes: UInt64(file.count), hash: Self.hash(file))
        #expect(pair.senderEvents.contains(.resumed(info, .outgoing, bytes: 5 * 1024)))
        #expect(pair.receiverEvents.contains(.resumed(info, .incoming, bytes: 5 * 1024)))
        #expect(pair.senderEvents.contains(.done(info, .outgoing, chunksResent: 0)))
        #expect(pair.sender.statistics.prefixesRefused == 0 && pair.truncated == 0)
        // Progress starts where the resume did and never goes back.
        let progress = pair.senderEvents.compactMap { if case let .progress(_, _, bytes) = $0 { bytes } else { nil } }
        #expect(!progress.isEmpty && progress == progress.sorted() && progress[0] > 5 * 1024)
    }

    @Test("Resume: a prefix that is not the file's is refused; the .part is emptied and the file sent from 0")
    func resumeWrongPrefix() {
        let file = Self.file(10 * 1024 + 333)
        let other = Self.file(6 * 1024, seed: 2)
        var (pair, _) = Self.resuming(file, kept: other)
        pair.run(file)  // Stops once the answer (RESTART) is out and no chunk moves yet.
        pair.run(file)
        #expect(pair.sender.statistics.prefixesRefused == 1 && pair.truncated == 1)
        #expect(pair.stored && pair.disk == file)
        #expect(pair.writes.map(\.offset) == (0..<11).map { UInt64($0 * 1024) })
        #expect(!pair.senderEvents.contains { if case .resumed = $0 { true } else { false } })
        #expect(!pair.receiverEvents.contains { if case .resumed = $0 { true } else { false } })
    }

    @Test("Resume: a sender that lies about the prefix cannot get a wrong file stored (the end check covers the prefix)")
    func resumeLyingSender() {
        let file = Self.file(8 * 1024)
        var kept = Array(file.prefix(4 * 1024))
        kept[100] ^= 0xFF
        var (pair, _) = Self.resuming(file, kept: kept)
        pair.runReceiver()
        // The sender's driver "finds" the receiver's hash, whatever its file says.
        let request = pair.sender.nextPrefixCheck()!
        #expect(request.bytes == 4 * 1024)
        pair.sender.prefixHashed(request.id, digest: Self.hash(Array(kept.prefix(4 * 1024))), now: pair.now)
        pair.run(file)
        #expect(!pair.stored)
        #expect(pair.released.count == 1 && pair.released[0].deletePart)
        #expect(Self.failed(pair.receiverEvents, .incoming, .hashMismatch))
    }

    @Test("resumePoint: whole chunks only, always short of the last, nothing from a .part larger than the file")
    func resumePoints() {
        let file = Self.file(10 * 1024 + 333)  // 11 chunks
        var (pair, id) = Self.offered(file, accept: false)
        let cases: [(UInt64, UInt64)] = [
            (0, 0), (1023, 0), (1024, 1), (5 * 1024 + 500, 5), (10 * 1024, 10), (UInt64(file.count), 10),
            (UInt64(file.count) + 1, 0), (UInt64.max, 0),
        ]
        for (partBytes, chunks) in cases {
            let point = pair.receiver.resumePoint(id, partBytes: partBytes)
            #expect(point.chunks == chunks && point.bytes == chunks * 1024, "\(partBytes)")
        }
        #expect(pair.receiver.resumePoint(FileID(bytes: [UInt8](repeating: 1, count: 16)), partBytes: 4096).chunks == 0)
        // A prefix whose hasher did not see exactly its chunks, or past the last chunk: from 0.
        let wrongCount = FileHasher()
        wrongCount.update(Array(file.prefix(3000)))
        pair.receiver.accept(id, now: pair.now, prefix: FilePrefix(chunks: 3, hasher: wrongCount))
        pair.runReceiver()
        pair.runSender(accept: false)
        pair.sendWindow(file)
        #expect(pair.chunksInFlight.count == 4 && pair.sender.nextPrefixCheck() == nil)
        var (whole, wholeID) = Self.offered(file, accept: false)
        let all = FileHasher()
        all.update(Array(file.prefix(11 * 1024)))
        whole.receiver.accept(wholeID, now: whole.now, prefix: FilePrefix(chunks: 11, hasher: all))
        whole.run(file)
        #expect(whole.stored && whole.writes.first?.offset == 0)
    }

    @Test("Hostile ACCEPTs: a start at or past the end, huge, after a restart, or 0 with a hash: protocol error, nothing sent")
    func hostileAccepts() {
        let file = Self.file(10 * 1024 + 333)
        let hash = [UInt8](repeating: 0xAB, count: 32)
        let starts: [(UInt64, [UInt8])] = [
            (11, hash), (12, hash), (UInt64.max, hash), (1 << 54, hash), (UInt64.max / 1024 + 1, hash),
            (0, hash),
        ]
        for (start, prefixHash) in starts {
            var (pair, id) = Self.offered(file, accept: false)
            pair.sender.receiveControl(FileControl.accept(id, startChunk: start, prefixHash: prefixHash).encode(),
                                       now: pair.now)
            #expect(pair.sender.nextPrefixCheck() == nil && pair.sender.nextChunk() == nil, "\(start)")
            pair.runSender(accept: false)
            #expect(Self.failed(pair.senderEvents, .outgoing, .protocolError), "\(start)")
        }
        // Once refused, a second resume is a protocol error; and an ACCEPT while checking is dropped.
        var (pair, id) = Self.offered(file, accept: false)
        pair.sender.receiveControl(FileControl.accept(id, startChunk: 3, prefixHash: hash).encode(), now: pair.now)
        pair.sender.receiveControl(FileControl.accept(id, startChunk: 0, prefixHash: []).encode(), now: pair.now)
        pair.sender.receiveControl(FileControl.accept(id, startChunk: 2, prefixHash: hash).encode(), now: pair.now)
        #expect(pair.sender.statistics.messagesRejected == 2)  // A short hash; a second ACCEPT.
        pair.answerPrefixChecks(file)
        #expect(pair.sender.statistics.prefixesRefused == 1)
        pair.sender.receiveControl(FileControl.accept(id, startChunk: 2, prefixHash: hash).encode(), now: pair.now)
        pair.runSender(accept: false)
        #expect(Self.failed(pair.senderEvents, .outgoing, .protocolError))
    }

    @Test("Hostile RESTARTs: for a transfer that did not resume, or twice, are dropped; nothing emptied")
    func hostileRestarts() {
        let file = Self.file(6 * 1024)
        var (pair, id) = Self.offered(file)
        pair.runSender()
        pair.receiver.receiveControl(FileControl.restart(id).encode(), now: pair.now)
        pair.runReceiver()
        #expect(pair.receiver.statistics.messagesRejected == 1 && pair.truncated == 0)
        var (resumed, resumedID) = Self.resuming(file, kept: Self.file(3 * 1024, seed: 5))
        resumed.runReceiver()
        resumed.answerPrefixChecks(file)
        resumed.runSender(accept: false)
        resumed.runReceiver()
        #expect(resumed.truncated == 1)
        resumed.receiver.receiveControl(FileControl.restart(resumedID).encode(), now: resumed.now)
        resumed.runReceiver()
        #expect(resumed.truncated == 1 && resumed.receiver.statistics.messagesRejected == 1)
        resumed.run(file)
        #expect(resumed.stored && resumed.disk == file)
    }

    @Test("After a restart an acknowledgement from before it (count past what is written) does not open")
    func staleAckAfterRestart() {
        let file = Self.file(10 * 1024)
        var (pair, _) = Self.resuming(file, kept: Self.file(6 * 1024, seed: 3))
        pair.runReceiver()
        // A reconnect while the receiver still holds its prefix: it acknowledges 6 chunks.
        pair.receiver.connected(now: pair.now)
        let stale = pair.receiver.drainActions().compactMap { if case let .signal(signal) = $0 { signal } else { nil } }
        #expect(stale.count == 1)
        pair.answerPrefixChecks(file)
        pair.runSender(accept: false)
        pair.runReceiver()
        pair.runSender(accept: false)
        let rejected = pair.sender.statistics.chunksRejected
        pair.sender.receiveSignal(stale[0], now: pair.now)
        #expect(pair.sender.statistics.chunksRejected == rejected + 1)
        #expect(pair.sender.nextChunk()?.index == 0)
        pair.run(file)
        #expect(pair.stored && pair.disk == file)
    }

    @Test("A hostile sender's chunks before the resume point or past the end are never written")
    func chunksOutsideResume() {
        let file = Self.file(8 * 1024)
        var (pair, id) = Self.resuming(file, kept: Array(file.prefix(4 * 1024)))
        pair.runReceiver()
        pair.answerPrefixChecks(file)
        let index = pair.sender.transfers.firstIndex { $0.info.id == id }!
        for chunk: UInt64 in [0, 3, 8, 9, UInt64.max] {
            let box = pair.sender.transfers[index].key.seal(purpose: FileKey.purposeChunk, counter: chunk,
                                                            [UInt8](repeating: 1, count: 1024))
            var payload = id.bytes
            BigEndian.append(chunk, to: &payload)
            pair.receiver.receiveSignal(Signal(kind: .fileChunk, payload: payload + box), now: pair.now)
        }
        pair.runReceiver()
        #expect(pair.writes.isEmpty)
        #expect(pair.receiver.statistics.duplicateChunks == 2 && pair.receiver.statistics.chunksRejected == 3)
        pair.run(file)
        #expect(pair.stored && pair.disk == file && pair.writes.allSatisfy { $0.offset >= 4 * 1024 })
    }

    @Test("A .part is kept when the session ends or the peer changes, deleted on cancel or a protocol error")
    func keptParts() {
        let file = Self.file(8 * 1024)
        for (failure, deleted) in [(FileFailure.sessionEnded, false), (.peerChanged, false), (.cancelled, true),
                                   (.protocolError, true), (.storage, true)]
        {
            var (pair, id) = Self.offered(file)
            pair.runSender()
            pair.sendWindow(file)
            pair.deliverChunks()
            if failure == .sessionEnded || failure == .peerChanged {
                pair.receiver.failAll(failure)
            } else {
                pair.receiver.fail(id, .incoming, failure)
            }
            pair.runReceiver()
            #expect(pair.released.count == 1 && pair.released[0].deletePart == deleted, "\(failure)")
        }
    }
}
