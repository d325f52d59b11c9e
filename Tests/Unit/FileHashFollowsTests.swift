@testable import ChatCore
import ChatTesting
import Testing

/// Offers made before the whole file is hashed (`FHASH`): the offer carries its head's hash, the
/// sender hashes the rest as it seals chunks, the receiver names the file only once the hash that
/// follows agrees with what it wrote, and a peer cannot use `FHASH` to skip or change that check.
@Suite("FileTransfers: the hash that follows an offer")
struct FileHashFollowsTests {
    typealias Pair = FileTransferTests.Pair

    static func events<T>(_ events: [FileEvent], _ pick: (FileEvent) -> T?) -> [T] { events.compactMap(pick) }

    static func hashed(_ events: [FileEvent], _ direction: FileDirection) -> [[UInt8]] {
        Self.events(events) { if case let .hashed(info, d) = $0, d == direction { info.hash } else { nil } }
    }

    static func failed(_ events: [FileEvent], _ direction: FileDirection) -> [FileFailure] {
        Self.events(events) { if case let .failed(_, d, failure) = $0, d == direction { failure } else { nil } }
    }

    @Test("The offer carries its head's hash; the chunks hash the rest; FHASH follows and the file is stored")
    func roundTrip() throws {
        let file = FileTransferTests.file(20 * 1024 + 77)
        var (pair, _) = FileTransferTests.offered(file, headBytes: 1500)
        let offer = try #require(Self.events(pair.receiverEvents) {
            if case let .offered(info, .incoming) = $0 { info } else { nil }
        }.first)
        #expect(offer.hashFollows && !offer.hashKnown && offer.headBytes == 1500)
        #expect(offer.headHash == FileTransferTests.hash(Array(file.prefix(1500))))
        pair.run(file)
        pair.runSender()  // The sender's events after the receiver's `DONE`.
        #expect(pair.stored && pair.disk == file)
        let hash = FileTransferTests.hash(file)
        #expect(Self.hashed(pair.senderEvents, .outgoing) == [hash])
        #expect(Self.hashed(pair.receiverEvents, .incoming) == [hash])
        #expect(pair.senderEvents.contains { if case let .done(info, .outgoing, _) = $0 { info.hash == hash } else { false } })
        // Accepted at once: past the head every byte was hashed as its chunk was sealed, none read twice.
        #expect(pair.hashSliceBytesRead == 0)
        #expect(pair.sender.isIdle && pair.receiver.isIdle)
    }

    @Test("While the offer waits for its answer the rest is hashed in slices; FHASH may come before the accept")
    func hashedBeforeTheAnswer() {
        let file = FileTransferTests.file(9 * 1024)
        var (pair, id) = FileTransferTests.offered(file, headBytes: 1024, accept: false)
        pair.answerHashSlices(file)
        #expect(pair.hashSliceBytesRead == file.count - 1024)
        pair.runSender(accept: false)
        #expect(pair.receiver.awaitingAnswer.first?.hash == FileTransferTests.hash(file))
        pair.receiver.accept(id, now: pair.now)
        pair.run(file)
        #expect(pair.stored && pair.disk == file && pair.hashSliceBytesRead == file.count - 1024)
    }

    @Test("Every chunk written and no FHASH: nothing stored, chunks sent again re-acknowledged; a lying FHASH deletes")
    func lyingHash() throws {
        let file = FileTransferTests.file(6000)
        var (pair, id) = FileTransferTests.offered(file, headBytes: 1024)
        pair.dropFileHash = true
        pair.runSender()
        pair.sendWindow(file)
        let first = pair.chunksInFlight[0]
        pair.run(file)
        #expect(pair.disk == file && !pair.stored && !pair.receiver.isIdle)
        #expect(pair.released.isEmpty)
        // A chunk sent again (the sender's last acknowledgement was lost), and new keys: the receiver,
        // every chunk written, acknowledges them all each time, so that the sender stops resending.
        pair.receiver.receiveSignal(first, now: pair.now)
        pair.receiver.connected(now: pair.now)
        let acks = pair.receiver.drainActions().compactMap { action -> UInt64? in
            guard case let .signal(signal) = action, signal.kind == .fileAck, let payload = signal.payload else { return nil }
            return BigEndian.uint64(payload, at: FileID.byteCount)
        }
        #expect(acks == [6, 6] && pair.receiver.statistics.duplicateChunks == 1)
        #expect(pair.writes.count == 6)
        // They open at the sender: after a stall timeout it sends nothing again.
        for count in acks {
            var payload = id.bytes
            BigEndian.append(count, to: &payload)
            let index = pair.receiver.transfers.firstIndex { $0.info.id == id }!
            payload += pair.receiver.transfers[index].key.seal(purpose: FileKey.purposeAck, counter: count, [])
            pair.sender.receiveSignal(Signal(kind: .fileAck, payload: payload), now: pair.now)
        }
        pair.sender.handleTimeout(now: pair.now.advanced(by: .seconds(11)))
        #expect(pair.sender.nextChunk() == nil && pair.sender.statistics.chunksResent == 0)
        // The peer (it holds the session's keys; the relay cannot forge a record) names another hash.
        let wrong = FileTransferTests.hash(Array(file.dropLast()))
        pair.receiver.receiveControl(FileControl.fileHash(id, hash: wrong).encode(), now: pair.now)
        pair.runReceiver()
        pair.runSender()
        #expect(!pair.stored)
        #expect(pair.released.count == 1 && pair.released[0].deletePart)
        #expect(Self.failed(pair.receiverEvents, .incoming) == [.hashMismatch])
        #expect(Self.failed(pair.senderEvents, .outgoing) == [.hashMismatch])
    }

    @Test("FHASH is taken once, only for an incoming offer that said it follows; a DONE before it is no match")
    func fileHashRefused() {
        let file = FileTransferTests.file(3000)
        let other = FileTransferTests.hash([1, 2, 3])
        // An offer that carried its hash: a FHASH cannot replace it.
        var (known, knownID) = FileTransferTests.offered(file)
        known.receiver.receiveControl(FileControl.fileHash(knownID, hash: other).encode(), now: known.now)
        #expect(known.receiver.statistics.messagesRejected == 1)
        known.run(file)
        #expect(known.stored && known.disk == file)
        // One that said it follows: the first FHASH counts, a second is refused.
        var (twice, twiceID) = FileTransferTests.offered(file, headBytes: 1024, accept: false)
        twice.answerHashSlices(file)
        twice.runSender(accept: false)
        twice.receiver.receiveControl(FileControl.fileHash(twiceID, hash: other).encode(), now: twice.now)
        #expect(twice.receiver.statistics.messagesRejected == 1)
        #expect(twice.receiver.awaitingAnswer.first?.hash == FileTransferTests.hash(file))
        // Sent to the sender of that id (our own outgoing transfer): refused, its hash unchanged.
        twice.sender.receiveControl(FileControl.fileHash(twiceID, hash: other).encode(), now: twice.now)
        #expect(twice.sender.statistics.messagesRejected == 1)
        // A receiver's DONE, even with the right hash, while the sender has not yet confirmed its own
        // (every chunk sent and hashed, its check of the file on disk pending): a mismatch.
        var (early, earlyID) = FileTransferTests.offered(file, headBytes: 1024)
        early.holdVerification = true
        early.run(file)
        #expect(!early.stored && early.sender.nextChunk() == nil)
        early.sender.receiveControl(FileControl.done(earlyID, hash: FileTransferTests.hash(file)).encode(), now: early.now)
        early.runSender()
        #expect(Self.failed(early.senderEvents, .outgoing) == [.hashMismatch])
        // The codec: exact length.
        let message = FileControl.fileHash(earlyID, hash: other)
        #expect(FileControl.decode(message.encode()) == message)
        #expect(FileControl.decode(message.encode() + [0]) == nil)
        #expect(FileControl.decode(Array(message.encode().dropLast())) == nil)
    }

    @Test("An offer's head: its length strictly inside the file, exact; its hash names the .part with the size")
    func headCodecAndTag() {
        let id = FileID(bytes: Array(repeating: 3, count: 16))
        let key = [UInt8](repeating: 2, count: 32)
        let head = FileTransferTests.hash([9])
        func offer(_ headBytes: UInt64, size: UInt64 = 10) -> FileControl {
            .offer(FileOfferInfo(id: id, name: "a.bin", sizeBytes: size, hash: [], headHash: head, headBytes: headBytes),
                   chunkBytes: 2048, key: key)
        }
        #expect(FileControl.decode(offer(4).encode()) == offer(4))
        #expect(FileControl.decode(offer(9).encode()) == offer(9))
        for bad in [offer(10), offer(11), offer(.max)] { #expect(FileControl.decode(bad.encode()) == nil) }
        // A head of 0 bytes (encoded by hand: `offer` writes no trailer for it) is malformed.
        #expect(FileControl.decode(Array(offer(4).encode().dropLast(8)) + [UInt8](repeating: 0, count: 8)) == nil)
        #expect(FileControl.decode(offer(4).encode() + [0]) == nil)
        #expect(FileControl.decode(Array(offer(4).encode().dropLast())) == nil)
        // Two large files of one name and size with different heads never share a `.part`.
        let one = FileOfferInfo(id: id, name: "a.bin", sizeBytes: 10, hash: [], headHash: head, headBytes: 4)
        let two = FileOfferInfo(id: id, name: "a.bin", sizeBytes: 10, hash: [], headHash: FileTransferTests.hash([8]),
                                headBytes: 4)
        #expect(one.partTag != two.partTag)
        #expect(one.partTag == SafeFileName.partTag(fileHash: head, sizeBytes: 10))
    }

    @Test("A go-back and a resume past a gap: FHASH is still the file's hash, each byte hashed once")
    func goBackAndResume() {
        let file = FileTransferTests.file(12 * 1024 + 5)
        let hash = FileTransferTests.hash(file)
        // Go-back: the first window is lost, the sender goes back and seals those chunks again.
        var (lost, _) = FileTransferTests.offered(file, headBytes: 1024)
        lost.runSender()
        lost.sendWindow(file)
        lost.chunksInFlight.removeAll()
        lost.sender.connected(now: lost.now)
        lost.run(file)
        #expect(lost.stored && lost.disk == file && lost.sender.statistics.chunksResent == 4)
        #expect(Self.hashed(lost.senderEvents, .outgoing) == [hash] && lost.hashSliceBytesRead == 0)
        // Resume: the receiver kept 5 chunks; the sender checks them, sends from chunk 5 and hashes
        // chunks 1 to 4 in slices behind it (chunk 0 is the head).
        var (resumed, id) = FileTransferTests.offered(file, headBytes: 1024, accept: false)
        let prefix = FileHasher()
        prefix.update(Array(file.prefix(5 * 1024)))
        resumed.disk = Array(file.prefix(5 * 1024))
        resumed.receiver.accept(id, now: resumed.now, prefix: FilePrefix(chunks: 5, hasher: prefix))
        resumed.run(file)
        #expect(resumed.stored && resumed.disk == file)
        // The FHASH equal to the file's hash says each byte was hashed once, in order: the slices
        // covered at least chunks 1 to 4, and the window sent past the gap before they caught up.
        #expect(Self.hashed(resumed.senderEvents, .outgoing) == [hash])
        #expect(resumed.hashSliceBytesRead >= 4 * 1024 && resumed.hashSliceBytesRead < file.count - 1024)
    }

    @Test("Leaving with every chunk sent but the hash still to follow: it ends session_ended, not unconfirmed")
    func leavingBeforeTheHash() {
        let file = FileTransferTests.file(12 * 1024)
        var (pair, id) = FileTransferTests.offered(file, headBytes: 1024, accept: false)
        let prefix = FileHasher()
        prefix.update(Array(file.prefix(11 * 1024)))
        pair.receiver.accept(id, now: pair.now, prefix: FilePrefix(chunks: 11, hasher: prefix))
        pair.runReceiver()
        pair.answerPrefixChecks(file)
        pair.sendWindow(file)  // The last chunk, sent; chunks 1 to 10 not yet hashed.
        #expect(pair.sender.nextChunk() == nil && pair.sender.nextHashSlice(maxBytes: 1500) != nil)
        pair.sender.startLeaving()
        pair.runSender()
        #expect(Self.failed(pair.senderEvents, .outgoing) == [.sessionEnded])
    }
}

extension FileHashFollowsTests {
    @Test("A file that changed on disk while it was sent: no FHASH, the transfer fails storage, nothing stored")
    func changedWhileSent() {
        let file = FileTransferTests.file(6000)
        var (pair, _) = FileTransferTests.offered(file, headBytes: 1024)
        pair.fileChanged = true
        pair.run(file)
        pair.runSender()
        #expect(!pair.stored && pair.disk == file)
        #expect(Self.hashed(pair.senderEvents, .outgoing).isEmpty && Self.hashed(pair.receiverEvents, .incoming).isEmpty)
        #expect(Self.failed(pair.senderEvents, .outgoing) == [.storage])
        #expect(Self.failed(pair.receiverEvents, .incoming) == [.cancelledByPeer])
        #expect(pair.released.count == 1 && pair.released[0].deletePart)
    }
}
