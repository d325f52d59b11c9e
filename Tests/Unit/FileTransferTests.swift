@testable import ChatCore
import ChatTesting
import Testing

/// The sans-IO file transfer machine, two of them wired back to back in memory: offers and
/// answers, the window, go-back, the hash check, and what a hostile relay or peer can and cannot
/// make the receiver write.
@Suite("FileTransfers: offers, chunks, acknowledgements, hostile chunks")
struct FileTransferTests {
    /// A sender and a receiver, the receiver's "disk" an array, and the frames between them.
    struct Pair {
        var sender: FileTransfers
        var receiver: FileTransfers
        var disk: [UInt8] = []
        var writes: [(offset: UInt64, count: Int)] = []
        var senderEvents: [FileEvent] = []
        var receiverEvents: [FileEvent] = []
        var released: [(FileID, deletePart: Bool)] = []
        var stored = false
        /// Times the receiver emptied its `.part` (a refused resume).
        var truncated = 0
        /// Chunk SIGNALs sent and not yet delivered (a test may drop, alter or repeat them).
        var chunksInFlight: [Signal] = []
        var now = Instant.zero
        /// The sender's `FHASH`es are dropped (a test delivers its own).
        var dropFileHash = false
        /// Bytes the sender read to hash in slices (the rest it hashed as it sealed chunks).
        var hashSliceBytesRead = 0
        /// The sender's driver finds its file changed on disk once it is hashed.
        var fileChanged = false
        /// The sender's driver does not answer `verifyUnchanged` (yet).
        var holdVerification = false

        init(configuration: FileTransferConfiguration) {
            sender = FileTransfers(configuration: configuration)
            receiver = FileTransfers(configuration: configuration)
        }

        /// Carry the receiver's actions out: write, store, answer the sender.
        mutating func runReceiver() {
            for action in receiver.drainActions() {
                switch action {
                case let .control(bytes): sender.receiveControl(bytes, now: now)
                case let .signal(signal): sender.receiveSignal(signal, now: now)
                case let .write(_, offset, bytes):
                    writes.append((offset, bytes.count))
                    let end = Int(offset) + bytes.count
                    if disk.count < end { disk += [UInt8](repeating: 0, count: end - disk.count) }
                    disk.replaceSubrange(Int(offset)..<end, with: bytes)
                case let .store(id):
                    stored = true
                    receiver.stored(id)
                case let .release(id, deletePart): released.append((id, deletePart))
                case .truncate:
                    truncated += 1
                    disk.removeAll()
                case let .event(event): receiverEvents.append(event)
                case .verifyUnchanged: break  // Only a sender asks it.
                }
            }
        }

        /// Carry the sender's actions out; offers are accepted when `accept`.
        mutating func runSender(accept: Bool = true) {
            // Twice: a hash verified in the first round adds its `FHASH` (and events) for the second.
            for _ in 0..<2 {
                for action in sender.drainActions() {
                    switch action {
                    case let .control(bytes) where dropFileHash && bytes.first == FileControl.typeFileHash: break
                    case let .control(bytes): receiver.receiveControl(bytes, now: now)
                    case let .signal(signal): receiver.receiveSignal(signal, now: now)
                    case let .event(event): senderEvents.append(event)
                    case .verifyUnchanged where holdVerification: break
                    case let .verifyUnchanged(id):
                        // Changed: hashed again, the bytes differ from what was sent (a torn file).
                        if fileChanged { sender.hashRechecked(id, digest: []) } else { sender.hashVerified(id) }
                    case .release, .write, .store, .truncate: break
                    }
                }
            }
            for offer in receiver.awaitingAnswer where accept { receiver.accept(offer.id, now: now) }
        }

        /// Send what the window allows, reading from `file`; the chunks wait in `chunksInFlight`.
        mutating func sendWindow(_ file: [UInt8]) {
            while let request = sender.nextChunk() {
                let bytes = Array(file[Int(request.offset)..<(Int(request.offset) + request.length)])
                guard let signal = sender.sealChunk(request, bytes, now: now) else { break }
                chunksInFlight.append(signal)
            }
        }

        /// The sender driver's part of a resume: hash the prefix of `file` each request names.
        mutating func answerPrefixChecks(_ file: [UInt8]) {
            while let request = sender.nextPrefixCheck() {
                sender.prefixHashed(request.id, digest: FileTransferTests.hash(Array(file.prefix(Int(request.bytes)))),
                                    now: now)
            }
        }

        /// The sender driver's part of a hash that follows its offer: slices of 1,500 bytes (not a
        /// multiple of the chunk) where no chunk hashes the file.
        mutating func answerHashSlices(_ file: [UInt8]) {
            while let request = sender.nextHashSlice(maxBytes: 1500) {
                hashSliceBytesRead += request.count
                sender.hashSliceRead(request, Array(file[Int(request.offset)..<(Int(request.offset) + request.count)]))
            }
        }

        mutating func deliverChunks() {
            for signal in chunksInFlight { receiver.receiveSignal(signal, now: now) }
            chunksInFlight.removeAll()
            runReceiver()
        }

        /// Run until nothing moves (bounded).
        mutating func run(_ file: [UInt8], rounds: Int = 10_000) {
            for _ in 0..<rounds {
                runSender()
                runReceiver()
                answerPrefixChecks(file)
                sendWindow(file)
                answerHashSlices(file)
                if chunksInFlight.isEmpty { runSender(); runReceiver(); return }
                now = now.advanced(by: .milliseconds(10))
                deliverChunks()
            }
        }
    }

    static var small: FileTransferConfiguration {
        var configuration = FileTransferConfiguration()
        configuration.chunkBytes = 1024
        configuration.windowChunks = 4
        configuration.ackEveryChunks = 2
        return configuration
    }

    static func file(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { SeededEntropy(seed: seed).fill($0) }
        return bytes
    }

    static func hash(_ bytes: [UInt8]) -> [UInt8] {
        let hasher = FileHasher()
        hasher.update(bytes)
        return hasher.finish()
    }

    /// `file` offered with `hash` (default: its own), or with the hash of its first `headBytes`,
    /// the whole file's to follow.
    static func offered(_ file: [UInt8], name: String = "report.pdf", hash: [UInt8]? = nil, headBytes: Int? = nil,
                        accept: Bool = true, configuration: FileTransferConfiguration = small) -> (Pair, FileID) {
        var pair = Pair(configuration: configuration)
        let id: FileID
        if let headBytes {
            let head = FileHasher()
            head.update(Array(file.prefix(headBytes)))
            id = pair.sender.offer(name: name, sizeBytes: UInt64(file.count), hashedHead: head,
                                   entropy: SeededEntropy(seed: 9))!
        } else {
            id = pair.sender.offer(name: name, sizeBytes: UInt64(file.count), hash: hash ?? Self.hash(file),
                                   entropy: SeededEntropy(seed: 9))!
        }
        pair.runSender(accept: accept)
        pair.runReceiver()
        return (pair, id)
    }

    @Test("A file arrives whole, each chunk written once in order, and both sides report it done")
    func roundTrip() {
        let file = Self.file(10 * 1024 + 333)
        var (pair, id) = Self.offered(file)
        pair.run(file)
        #expect(pair.disk == file)
        #expect(pair.stored)
        #expect(pair.writes.map(\.offset) == (0..<11).map { UInt64($0 * 1024) })
        #expect(pair.senderEvents.contains(.done(FileOfferInfo(id: id, name: "report.pdf", sizeBytes: UInt64(file.count),
                                                              hash: Self.hash(file)), .outgoing, chunksResent: 0)))
        #expect(pair.receiverEvents.contains { if case .done = $0 { true } else { false } })
        #expect(pair.sender.isIdle && pair.receiver.isIdle)
        #expect(pair.released.count == 1 && pair.released[0].deletePart == false)
    }

    @Test("An empty file is offered, accepted and stored without a chunk")
    func emptyFile() {
        var (pair, _) = Self.offered([])
        pair.run([])
        #expect(pair.stored && pair.writes.isEmpty)
        #expect(pair.senderEvents.contains { if case .done = $0 { true } else { false } })
    }

    @Test("A tampered chunk is dropped unwritten; the genuine one is taken after it")
    func tamperedChunk() {
        let file = Self.file(3000)
        var (pair, _) = Self.offered(file)
        pair.runSender()
        pair.sendWindow(file)
        var forged = pair.chunksInFlight[0]
        forged.payload![40] ^= 0x01
        pair.receiver.receiveSignal(forged, now: pair.now)
        pair.runReceiver()
        #expect(pair.writes.isEmpty)
        #expect(pair.receiver.statistics.chunksRejected == 1)
        pair.deliverChunks()
        pair.run(file)
        #expect(pair.disk == file)
    }

    @Test("A second copy of a chunk is never written twice (a replay is a duplicate, not a failure)")
    func duplicateChunk() {
        let file = Self.file(5000)
        var (pair, _) = Self.offered(file)
        pair.runSender()
        pair.sendWindow(file)
        let first = pair.chunksInFlight[0]
        pair.deliverChunks()
        pair.receiver.receiveSignal(first, now: pair.now)
        pair.runReceiver()
        #expect(pair.writes.count == 4)
        #expect(pair.receiver.statistics.duplicateChunks == 1)
        pair.run(file)
        #expect(pair.writes.count == 5)
        #expect(pair.disk == file)
    }

    @Test("A transfer that waited behind another in the shared window starts its stall clock when its chunks go")
    func waitedNotResent() {
        let file = Self.file(12 * 1024)  // Three windows of the first transfer before the second's turn.
        var (pair, _) = Self.offered(file)
        _ = pair.sender.offer(name: "b", sizeBytes: UInt64(file.count), hash: Self.hash(file),
                              entropy: SeededEntropy(seed: 4))!
        for _ in 0..<40 where !(pair.senderEvents.filter { if case .done = $0 { true } else { false } }.count == 2) {
            pair.runSender()
            pair.runReceiver()
            pair.sendWindow(file)
            // 4 s a round: the second transfer's first chunks go 12 s after its acceptance, and its
            // window's timer runs before their acknowledgements come.
            pair.sender.handleTimeout(now: pair.now)
            pair.deliverChunks()
            pair.now = pair.now.advanced(by: .seconds(4))
        }
        let resent = pair.senderEvents.compactMap { if case let .done(_, .outgoing, resent) = $0 { resent } else { nil } }
        #expect(resent == [0, 0], "\(pair.senderEvents)")
        #expect(pair.sender.statistics.chunksResent == 0)
    }

    @Test("A chunk moved to another offset, out of order, or to another file is never written")
    func movedChunks() {
        let file = Self.file(5000)
        var (pair, id) = Self.offered(file)
        // A second transfer between the same two.
        let other = pair.sender.offer(name: "b", sizeBytes: 5000, hash: Self.hash(file), entropy: SeededEntropy(seed: 4))!
        pair.runSender()
        pair.runReceiver()
        pair.runSender()
        pair.sendWindow(file)
        let chunks = pair.chunksInFlight
        pair.chunksInFlight.removeAll()
        // One window of four for both transfers together, all of it the first's.
        #expect(chunks.count == 4 && chunks.allSatisfy { Array($0.payload![0..<16]) == id.bytes })
        // Chunk 1 presented as chunk 0 (its index rewritten): the nonce differs, it does not open.
        var moved = chunks[1]
        moved.payload!.replaceSubrange(16..<24, with: [0, 0, 0, 0, 0, 0, 0, 0])
        // Chunk 0 of file A presented as chunk 0 of file B: the key differs.
        var crossed = chunks[0]
        #expect(Array(crossed.payload![0..<16]) == id.bytes)
        crossed.payload!.replaceSubrange(0..<16, with: other.bytes)
        for signal in [moved, crossed, chunks[2]] { pair.receiver.receiveSignal(signal, now: pair.now) }
        pair.runReceiver()
        #expect(pair.writes.isEmpty)
        #expect(pair.receiver.statistics.chunksRejected == 3)
    }

    @Test("An authenticated chunk of the wrong length is a protocol error: the transfer fails, the .part deleted")
    func wrongLengthChunk() {
        let file = Self.file(3000)
        var (pair, id) = Self.offered(file)
        pair.runSender()
        // The sender itself (a hostile peer holds the key) seals 10 bytes as chunk 0.
        let index = pair.sender.transfers.firstIndex { $0.info.id == id }!
        let box = pair.sender.transfers[index].key.seal(purpose: FileKey.purposeChunk, counter: 0, [UInt8](repeating: 7, count: 10))
        var payload = id.bytes
        BigEndian.append(UInt64(0), to: &payload)
        pair.receiver.receiveSignal(Signal(kind: .fileChunk, payload: payload + box), now: pair.now)
        pair.runReceiver()
        pair.runSender()
        #expect(pair.writes.isEmpty)
        #expect(pair.released.count == 1 && pair.released[0].deletePart)
        #expect(pair.receiverEvents.contains { if case .failed(_, .incoming, .protocolError) = $0 { true } else { false } })
        #expect(pair.senderEvents.contains { if case .failed(_, .outgoing, .protocolError) = $0 { true } else { false } })
    }

    @Test("A file that does not match the offered hash is deleted and reported on both sides")
    func hashMismatch() {
        let file = Self.file(3000)
        var (pair, _) = Self.offered(file, hash: Self.hash(Self.file(3000, seed: 2)))
        pair.run(file)
        #expect(!pair.stored)
        #expect(pair.released.count == 1 && pair.released[0].deletePart)
        #expect(pair.receiverEvents.contains { if case .failed(_, .incoming, .hashMismatch) = $0 { true } else { false } })
        #expect(pair.senderEvents.contains { if case .failed(_, .outgoing, .hashMismatch) = $0 { true } else { false } })
        #expect(pair.sender.statistics.failedOutgoing == 1)
    }

    @Test("A refusal reaches the sender with its reason; nothing is sent")
    func refusal() {
        let file = Self.file(3000)
        var (pair, id) = Self.offered(file, accept: false)
        pair.receiver.reject(id, .tooLarge)
        pair.runReceiver()
        pair.runSender(accept: false)
        #expect(pair.sender.nextChunk() == nil && pair.sender.isIdle)
        #expect(pair.senderEvents.contains { if case .failed(_, .outgoing, .rejected(.tooLarge)) = $0 { true } else { false } })
        // Refusing is a choice, not a failure of the receiver.
        #expect(pair.receiver.statistics.failedIncoming == 0)
    }

    @Test("Chunks lost with a connection are sent again from the last acknowledged one, not from zero")
    func goBackOnReconnect() {
        let file = Self.file(20 * 1024)
        var (pair, _) = Self.offered(file)
        for _ in 0..<3 {
            pair.runSender()
            pair.sendWindow(file)
            pair.deliverChunks()
        }
        let written = pair.writes.count
        #expect(written > 4)
        pair.runSender()
        pair.sendWindow(file)
        pair.chunksInFlight.removeAll()  // Lost with the relay.
        pair.sender.connected(now: pair.now)
        pair.receiver.connected(now: pair.now)
        pair.runReceiver()
        #expect(pair.sender.nextChunk()?.index == UInt64(written))
        pair.run(file)
        #expect(pair.disk == file)
        #expect(pair.sender.statistics.chunksResent == 4)
        #expect(pair.senderEvents.contains { if case .done(_, .outgoing, 4) = $0 { true } else { false } })
        #expect(Set(pair.writes.map(\.offset)).count == pair.writes.count)  // Never a chunk written twice.
    }

    @Test("The last acknowledgement lost: the receiver's DONE (a record) still completes the transfer")
    func lostLastAck() {
        let file = Self.file(1000)
        var (lossy, _) = Self.offered(file)
        lossy.runSender()
        lossy.runReceiver()
        lossy.sendWindow(file)
        for signal in lossy.chunksInFlight { lossy.receiver.receiveSignal(signal, now: lossy.now) }
        lossy.chunksInFlight.removeAll()
        for action in lossy.receiver.drainActions() {
            switch action {
            case .signal: break  // The FACK, lost.
            case let .store(id): lossy.receiver.stored(id)
            default: break
            }
        }
        for action in lossy.receiver.drainActions() {
            if case let .control(bytes) = action { lossy.sender.receiveControl(bytes, now: lossy.now) }
        }
        lossy.runSender()
        #expect(lossy.sender.isIdle)
        #expect(lossy.senderEvents.contains { if case .done = $0 { true } else { false } })
    }

    @Test("Leaving ends every transfer but one waiting only for DONE; a later offer ends at once, never accepted")
    func startLeaving() {
        let file = Self.file(10 * 1024)
        // Chunks moving: both sides' transfers end as each begins its goodbye, the .part kept.
        var (moving, _) = Self.offered(file)
        moving.runSender()
        moving.sendWindow(file)
        moving.deliverChunks()
        moving.receiver.startLeaving()
        moving.sender.startLeaving()
        moving.runReceiver()
        moving.runSender()
        #expect(moving.receiver.isIdle && moving.sender.isIdle)
        #expect(moving.receiverEvents.contains {
            if case .failed(_, .incoming, .sessionEnded) = $0 { true } else { false }
        })
        #expect(moving.senderEvents.contains {
            if case .failed(_, .outgoing, .sessionEnded) = $0 { true } else { false }
        })
        #expect(moving.released.count == 1 && moving.released[0].deletePart == false)

        // Every chunk acknowledged: the receiver's DONE is on its way, so the sender still takes it.
        let small = Self.file(1000)
        var (confirming, _) = Self.offered(small)
        confirming.runSender()
        confirming.sendWindow(small)
        for signal in confirming.chunksInFlight { confirming.receiver.receiveSignal(signal, now: confirming.now) }
        confirming.chunksInFlight.removeAll()
        var done: [[UInt8]] = []
        for action in confirming.receiver.drainActions() {
            switch action {
            case let .signal(signal): confirming.sender.receiveSignal(signal, now: confirming.now)
            case let .store(id): confirming.receiver.stored(id)
            default: break
            }
        }
        for action in confirming.receiver.drainActions() { if case let .control(bytes) = action { done.append(bytes) } }
        confirming.sender.startLeaving()
        #expect(!confirming.sender.isIdle)
        for bytes in done { confirming.sender.receiveControl(bytes, now: confirming.now) }
        confirming.runSender()
        #expect(confirming.sender.isIdle)
        #expect(confirming.senderEvents.contains { if case .done(_, .outgoing, _) = $0 { true } else { false } })

        // An offer that comes after the goodbye began: reported, never accepted; none is made either.
        var late = Pair(configuration: Self.small)
        late.receiver.startLeaving()
        _ = late.sender.offer(
            name: "late.bin", sizeBytes: 10, hash: Self.hash(Self.file(10)), entropy: SeededEntropy(seed: 3))
        late.runSender()
        late.runReceiver()
        #expect(late.receiver.isIdle && late.receiver.awaitingAnswer.isEmpty)
        #expect(late.receiverEvents.contains {
            if case .failed(_, .incoming, .sessionEnded) = $0 { true } else { false }
        })
        let refused = late.receiver.offer(
            name: "x", sizeBytes: 1, hash: Self.hash([1]), entropy: SeededEntropy(seed: 4))
        #expect(refused == nil)
    }

    @Test("Leaving with every chunk sent and none acknowledged: the sender waits for DONE, never goes back, else ends unconfirmed")
    func leavingAfterLastChunk() {
        let file = Self.file(3 * 1024)  // 3 chunks, a window of 4: all sent at once.
        var (pair, _) = Self.offered(file)
        pair.runSender()
        pair.sendWindow(file)
        #expect(pair.chunksInFlight.count == 3)
        pair.sender.startLeaving()
        #expect(!pair.sender.isIdle, "it waits for the receiver's DONE")
        #expect(pair.sender.pollTimeout() == nil)
        pair.now = pair.now.advanced(by: .seconds(60))
        pair.sender.handleTimeout(now: pair.now)
        pair.sender.connected(now: pair.now)  // New keys: no go-back either.
        #expect(pair.sender.nextChunk() == nil && pair.sender.statistics.chunksResent == 0)
        // The chunks arrive: the receiver stores the file and its DONE completes the sender's side.
        var waiting = pair
        waiting.deliverChunks()
        waiting.runReceiver()
        waiting.runSender()
        #expect(waiting.stored && waiting.sender.isIdle)
        #expect(waiting.senderEvents.contains { if case .done(_, .outgoing, _) = $0 { true } else { false } })
        // The session ends first: unconfirmed, not "session ended" (the receiver may have it).
        pair.sender.failAll(.sessionEnded)
        pair.runSender()
        #expect(pair.senderEvents.contains { if case .failed(_, .outgoing, .unconfirmed) = $0 { true } else { false } })
    }

    @Test("A window with no acknowledgement for the stall timeout goes back")
    func stall() {
        let file = Self.file(8 * 1024)
        var (pair, _) = Self.offered(file)
        pair.runSender()
        pair.sendWindow(file)
        pair.chunksInFlight.removeAll()
        #expect(pair.sender.nextChunk() == nil)
        let due = pair.sender.pollTimeout()!
        #expect(due == pair.now.advanced(by: Self.small.stallTimeout))
        pair.sender.handleTimeout(now: due)
        #expect(pair.sender.nextChunk()?.index == 0)
    }

    @Test("Progress events come at most once per 250 ms per transfer and never go back")
    func progressRate() {
        let file = Self.file(200 * 1024)
        var (pair, _) = Self.offered(file)
        pair.run(file)  // 10 ms per round of four chunks: ~500 ms in all.
        for events in [pair.senderEvents, pair.receiverEvents] {
            let progress = events.compactMap { if case let .progress(_, _, bytes) = $0 { bytes } else { nil } }
            #expect(progress == progress.sorted())
            #expect(progress.count >= 1 && progress.count <= Int(pair.now.milliseconds / 250) + 1)
        }
        #expect(pair.disk == file)
    }

    @Test("File control messages are strict: every length exact, fields in range")
    func controlCodec() {
        let id = FileID(bytes: Array(repeating: 3, count: 16))
        let info = FileOfferInfo(id: id, name: "a.txt", sizeBytes: 10, hash: Array(repeating: 1, count: 32))
        let offer = FileControl.offer(info, chunkBytes: 2048, key: Array(repeating: 2, count: 32))
        #expect(FileControl.decode(offer.encode()) == offer)
        #expect(FileControl.decode(offer.encode() + [0]) == nil)
        #expect(FileControl.decode(Array(offer.encode().dropLast())) == nil)
        let huge = FileControl.offer(info, chunkBytes: 96 * 1024 + 1, key: Array(repeating: 2, count: 32))
        #expect(FileControl.decode(huge.encode()) == nil)
        let badName = FileControl.offer(FileOfferInfo(id: id, name: "", sizeBytes: 1, hash: info.hash),
                                        chunkBytes: 2048, key: Array(repeating: 2, count: 32))
        #expect(FileControl.decode(badName.encode()) == nil)
        for message in [FileControl.accept(id, startChunk: 0, prefixHash: info.hash), .reject(id, .busy),
                        .cancel(id, code: 3), .done(id, hash: info.hash)] {
            #expect(FileControl.decode(message.encode()) == message)
            #expect(FileControl.decode(message.encode() + [1]) == nil)
        }
        #expect(FileControl.decode([9] + id.bytes) == nil)
        #expect(FileControl.decode(FileControl.reject(id, .busy).encode().dropLast() + [77]) == nil)
        var pair = Pair(configuration: Self.small)
        pair.receiver.receiveControl([1, 2, 3], now: .zero)
        #expect(pair.receiver.statistics.messagesRejected == 1 && pair.receiver.isIdle)
    }

    @Test("Offered names become one safe basename")
    func safeNames() {
        #expect(SafeFileName.make("../../x") == "x")
        #expect(SafeFileName.make("a/b") == "b")
        #expect(SafeFileName.make("..\\..\\win.ini") == "win.ini")
        #expect(SafeFileName.make("..") == "file")
        #expect(SafeFileName.make("/") == "file")
        #expect(SafeFileName.make("") == "file")
        #expect(SafeFileName.make(".bashrc") == "bashrc")
        #expect(SafeFileName.make("-rf") == "rf")
        #expect(SafeFileName.make("e\u{1B}[2Jvil\u{07}\n.txt") == "e[2Jvil.txt")
        #expect(SafeFileName.make("invoice\u{202E}fdp.exe") == "invoicefdp.exe")
        #expect(SafeFileName.make("zero\u{200B}width\u{2066}.txt") == "zerowidth.txt")
        #expect(SafeFileName.make("trailing. . ") == "trailing")
        let long = String(repeating: "é", count: 300) + ".tar.gz"
        let made = SafeFileName.make(long)
        #expect(made.utf8.count <= SafeFileName.bytesMax && made.hasSuffix(".gz") && made.hasPrefix("éé"))
        #expect(SafeFileName.alternative("photo.jpg", index: 2) == "photo (2).jpg")
        #expect(SafeFileName.alternative("README", index: 1) == "README (1)")
    }

    @Test("Offers beyond the transfer cap are refused busy; an id offered twice is not a second transfer")
    func offerBounds() {
        var configuration = Self.small
        configuration.transfersMax = 1
        var pair = Pair(configuration: configuration)
        let hash = Self.hash([1])
        _ = pair.sender.offer(name: "one", sizeBytes: 1, hash: hash, entropy: SeededEntropy(seed: 1))
        let actions = pair.sender.drainActions()
        guard case let .control(offer) = actions[0] else {
            Issue.record("no offer")
            return
        }
        pair.receiver.receiveControl(offer, now: .zero)
        pair.receiver.receiveControl(offer, now: .zero)
        #expect(pair.receiver.awaitingAnswer.count == 1 && pair.receiver.statistics.messagesRejected == 1)
        var second = offer
        second[1] ^= 0xFF  // Another id.
        pair.receiver.receiveControl(second, now: .zero)
        #expect(pair.receiver.drainActions().contains { if case let .control(bytes) = $0 { bytes.first == 3 } else { false } })
        #expect(pair.sender.offer(name: "two", sizeBytes: 1, hash: hash, entropy: SeededEntropy(seed: 2)) == nil)
    }
}
