@testable import ChatCore
import ChatTesting
import Testing

/// Offers made before the file is hashed (`hashFollows`, `FHASH`): the sender hashes the chunks as
/// it seals them, the receiver names the file only once the hash that follows agrees with what it
/// wrote, and a peer cannot use `FHASH` to skip or change that check.
@Suite("FileTransfers: the hash that follows an offer")
struct FileHashFollowsTests {
    typealias Pair = FileTransferTests.Pair

    static func events<T>(_ events: [FileEvent], _ pick: (FileEvent) -> T?) -> [T] { events.compactMap(pick) }

    static func hashed(_ events: [FileEvent], _ direction: FileDirection) -> [[UInt8]] {
        Self.events(events) { if case let .hashed(info, d) = $0, d == direction { info.hash } else { nil } }
    }

    @Test("The offer leaves without a hash; the chunks hash themselves; FHASH follows and the file is stored")
    func roundTrip() throws {
        let file = FileTransferTests.file(20 * 1024 + 77)
        var (pair, _) = FileTransferTests.offered(file, hashFollows: true)
        let offer = try #require(Self.events(pair.receiverEvents) {
            if case let .offered(info, .incoming) = $0 { info } else { nil }
        }.first)
        #expect(offer.hashFollows && !offer.hashKnown)
        pair.run(file)
        pair.runSender()  // The sender's events after the receiver's `DONE`.
        #expect(pair.stored && pair.disk == file)
        let hash = FileTransferTests.hash(file)
        #expect(Self.hashed(pair.senderEvents, .outgoing) == [hash])
        #expect(Self.hashed(pair.receiverEvents, .incoming) == [hash])
        #expect(pair.senderEvents.contains { if case let .done(info, .outgoing, _) = $0 { info.hash == hash } else { false } })
        // Accepted at once: every byte was hashed as its chunk was sealed, none read a second time.
        #expect(pair.hashSliceBytesRead == 0)
        #expect(pair.sender.isIdle && pair.receiver.isIdle)
    }

    @Test("While the offer waits for its answer the file is hashed in slices; FHASH may come before the accept")
    func hashedBeforeTheAnswer() {
        let file = FileTransferTests.file(9 * 1024)
        var (pair, id) = FileTransferTests.offered(file, hashFollows: true, accept: false)
        pair.answerHashSlices(file)
        #expect(pair.hashSliceBytesRead == file.count)
        pair.runSender(accept: false)
        #expect(pair.receiver.awaitingAnswer.first?.hash == FileTransferTests.hash(file))
        pair.receiver.accept(id, now: pair.now)
        pair.run(file)
        #expect(pair.stored && pair.disk == file && pair.hashSliceBytesRead == file.count)
    }

    @Test("Every chunk written and no FHASH: nothing is stored; a FHASH that disagrees deletes the .part on both sides")
    func lyingHash() throws {
        let file = FileTransferTests.file(6000)
        var (pair, id) = FileTransferTests.offered(file, hashFollows: true)
        pair.dropFileHash = true
        pair.run(file)
        #expect(pair.disk == file && !pair.stored && !pair.receiver.isIdle)
        #expect(pair.released.isEmpty)
        // The peer (it holds the session's keys; the relay cannot forge a record) names another hash.
        let wrong = FileTransferTests.hash(Array(file.dropLast()))
        pair.receiver.receiveControl(FileControl.fileHash(id, hash: wrong).encode(), now: pair.now)
        pair.runReceiver()
        pair.runSender()
        #expect(!pair.stored)
        #expect(pair.released.count == 1 && pair.released[0].deletePart)
        #expect(pair.receiverEvents.contains { if case .failed(_, .incoming, .hashMismatch) = $0 { true } else { false } })
        #expect(pair.senderEvents.contains { if case .failed(_, .outgoing, .hashMismatch) = $0 { true } else { false } })
    }

    @Test("FHASH is taken once, only where the offer said it follows; an all-zero or misshapen one is malformed")
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
        var (follows, id) = FileTransferTests.offered(file, hashFollows: true)
        follows.run(file)
        #expect(follows.stored)
        var (twice, twiceID) = FileTransferTests.offered(file, hashFollows: true, accept: false)
        twice.answerHashSlices(file)
        twice.runSender(accept: false)
        twice.receiver.receiveControl(FileControl.fileHash(twiceID, hash: other).encode(), now: twice.now)
        #expect(twice.receiver.statistics.messagesRejected == 1)
        #expect(twice.receiver.awaitingAnswer.first?.hash == FileTransferTests.hash(file))
        // The codec: exact length, never all zero (that is how an offer says the hash follows).
        let message = FileControl.fileHash(id, hash: other)
        #expect(FileControl.decode(message.encode()) == message)
        #expect(FileControl.decode(message.encode() + [0]) == nil)
        #expect(FileControl.decode(Array(message.encode().dropLast())) == nil)
        #expect(FileControl.decode(FileControl.fileHash(id, hash: [UInt8](repeating: 0, count: 32)).encode()) == nil)
    }

    @Test("A go-back and a resume past a gap: FHASH is still the file's hash, each byte hashed once")
    func goBackAndResume() {
        let file = FileTransferTests.file(12 * 1024 + 5)
        let hash = FileTransferTests.hash(file)
        // Go-back: the first window is lost, the sender goes back and seals those chunks again.
        var (lost, _) = FileTransferTests.offered(file, hashFollows: true)
        lost.runSender()
        lost.sendWindow(file)
        lost.chunksInFlight.removeAll()
        lost.sender.connected(now: lost.now)
        lost.run(file)
        #expect(lost.stored && lost.disk == file && lost.sender.statistics.chunksResent == 4)
        #expect(Self.hashed(lost.senderEvents, .outgoing) == [hash] && lost.hashSliceBytesRead == 0)
        // Resume: the receiver kept 5 chunks; the sender checks them, sends from chunk 5 and hashes the
        // first 5 in slices behind it.
        var (resumed, id) = FileTransferTests.offered(file, hashFollows: true, accept: false)
        let prefix = FileHasher()
        prefix.update(Array(file.prefix(5 * 1024)))
        resumed.disk = Array(file.prefix(5 * 1024))
        resumed.receiver.accept(id, now: resumed.now, prefix: FilePrefix(chunks: 5, hasher: prefix))
        resumed.run(file)
        #expect(resumed.stored && resumed.disk == file)
        #expect(Self.hashed(resumed.senderEvents, .outgoing) == [hash])
        #expect(resumed.hashSliceBytesRead >= 5 * 1024 && resumed.hashSliceBytesRead < file.count)
    }
}
