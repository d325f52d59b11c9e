import ChatCore
import ChatTesting

// The file transfer harness: a real sender and a real receiver (`FileTransfers`) with an accepted
// offer, and a program of operations from the fuzzer that feeds either side arbitrary control
// messages, chunks and acknowledgements, genuine chunks (possibly tampered, repeated or moved),
// reconnects and timeouts. Checked with `require` after every step, beyond "no crash":
//
// - the receiver writes only inside the offered size, only whole chunks at chunk boundaries, in
//   order, and never the same chunk twice;
// - it asks to store the file only when what it wrote is exactly the file (so its hash matched);
// - progress never goes back, on either side.
//
// A program may also end the session and start a new one that resumes from what the receiver
// wrote (possibly altered: a stale `.part`), so the `ACCEPT` fields (start chunk, prefix hash),
// `RESTART` and the sender's prefix check are fuzzed too: whatever the prefix, the receiver writes
// only from its resume point on, and stores only the file. A new session may offer the file with
// its hash to follow (`FHASH`): the sender then hashes chunks as it seals them and slices behind
// them, and the hash it sends must be the file's.

/// One operation of a file program.
public enum FileOp: UInt8, CaseIterable, Sendable {
    /// The rest of the step's bytes as a control message to the receiver.
    case controlToReceiver = 0
    /// ... to the sender.
    case controlToSender = 1
    /// As an `FCHUNK` payload to the receiver.
    case chunkToReceiver = 2
    /// As an `FACK` payload to the sender.
    case ackToSender = 3
    /// The sender's next genuine chunk, delivered (its first byte, if any, XORed into byte `n`).
    case genuineChunk = 4
    /// The last genuine chunk again (a replay).
    case replayChunk = 5
    /// The receiver's pending answers (acknowledgements, DONE) delivered to the sender.
    case answers = 6
    /// Both sides get new keys (a reconnect).
    case reconnect = 7
    /// Time passes (the step's first byte in seconds) and timers run.
    case wait = 8
    /// A new session: new sender and receiver, the same file offered again (its hash to follow
    /// when a third byte has its top bit set); the receiver resumes from what it wrote (its first
    /// byte, if any, XORed into byte `n`), its `ACCEPT` held with the other answers.
    case resume = 9
    /// The sender's driver hashes the prefixes receivers asked to resume from: its own file's,
    /// or (an odd first byte) the receiver's, as a sender that lies about the prefix would; and
    /// the slices of its file that a hash to follow needs.
    case prefixCheck = 10
}

/// The file a harness run transfers: 5,000 bytes in 1,024-byte chunks (the last one short).
let fuzzFileBytes: [UInt8] = (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

/// Run one file program.
public func fuzzFiles(_ data: UnsafeRawBufferPointer) {
    _ = fuzzFilesStored(data)
}

/// Run one file program; whether the receiver stored the file (for the tests that show the seeds
/// reach the end of a transfer, not only its start).
public func fuzzFilesStored(_ data: UnsafeRawBufferPointer) -> Bool {
    var run = FileRun()
    var reader = FuzzReader(data)
    // Bounded by the input: every step consumes at least one byte.
    while let opByte = reader.byte() {
        let op = FileOp(rawValue: opByte % UInt8(FileOp.allCases.count))!
        run.step(op, reader.chunk(maxLength: 4_096))
        run.check()
    }
    return run.stored
}

/// The two sides, the receiver's disk, and what the oracle remembers.
struct FileRun {
    var sender: FileTransfers
    var receiver: FileTransfers
    var now = Instant.zero
    var disk: [UInt8] = []
    var written: [UInt64] = []
    /// Where the receiver's next write must be (its resume point, then each chunk's end).
    var nextWrite: UInt64 = 0
    var stored = false
    var lastChunk: Signal?
    var answers: [FileAction] = []
    var progress: [FileDirection: UInt64] = [:]
    let chunkBytes = 1_024

    static var configuration: FileTransferConfiguration {
        var configuration = FileTransferConfiguration()
        configuration.chunkBytes = 1_024
        configuration.windowChunks = 3
        configuration.ackEveryChunks = 2
        return configuration
    }

    init() {
        sender = FileTransfers(configuration: Self.configuration)
        receiver = FileTransfers(configuration: Self.configuration)
        offer(seed: 16)
        for offer in receiver.awaitingAnswer { receiver.accept(offer.id, now: now) }
        deliver(receiver.drainActions(), toReceiver: false)
    }

    /// The file offered with its hash, or (`hashFollows`) with its first 1,500 bytes' hash.
    mutating func offer(seed: UInt64, hashFollows: Bool = false) {
        let head = FileHasher()
        head.update(Array(fuzzFileBytes.prefix(hashFollows ? 1_500 : fuzzFileBytes.count)))
        _ = sender.offer(name: "fuzz.bin", sizeBytes: UInt64(fuzzFileBytes.count), hashedHead: head,
                         entropy: SeededEntropy(seed: seed))
        deliver(sender.drainActions(), toReceiver: true)
    }

    /// A new session resuming from the receiver's disk (altered by `bytes`), as `FileOp.resume` says.
    mutating func resume(_ bytes: [UInt8]) {
        guard !stored else { return }
        if let flip = bytes.first, let at = bytes.dropFirst().first, !disk.isEmpty {
            disk[Int(at) % disk.count] ^= flip
        }
        sender = FileTransfers(configuration: Self.configuration)
        receiver = FileTransfers(configuration: Self.configuration)
        answers.removeAll()
        lastChunk = nil
        progress.removeAll()
        written.removeAll()
        offer(seed: 17 + UInt64(disk.count), hashFollows: bytes.count > 2 && bytes[2] & 0x80 != 0)
        guard let id = receiver.awaitingAnswer.first?.id else { return }
        let point = receiver.resumePoint(id, partBytes: UInt64(disk.count))
        let hasher = FileHasher()
        hasher.update(Array(disk.prefix(Int(point.bytes))))
        receiver.accept(id, now: now, prefix: FilePrefix(chunks: point.chunks, hasher: hasher))
        nextWrite = point.bytes
        answers += receiver.drainActions()
    }

    /// The sender's driver: hash each prefix asked for (see `FileOp.prefixCheck`).
    mutating func checkPrefixes(lying: Bool) {
        while let request = sender.nextPrefixCheck() {
            require(request.bytes < UInt64(fuzzFileBytes.count), "a prefix check of the whole file or past it")
            let hasher = FileHasher()
            hasher.update(Array((lying ? disk : fuzzFileBytes).prefix(Int(request.bytes))))
            sender.prefixHashed(request.id, digest: hasher.finish(), now: now)
        }
        // Bounded: each slice hashes at least one more byte of the file.
        while let request = sender.nextHashSlice(maxBytes: 700) {
            let start = Int(request.offset)
            require(start + request.count <= fuzzFileBytes.count, "a hash slice past the end of the file")
            sender.hashSliceRead(request, Array(fuzzFileBytes[start..<(start + request.count)]))
        }
    }

    static let fileHash: [UInt8] = {
        let hasher = FileHasher()
        hasher.update(fuzzFileBytes)
        return hasher.finish()
    }()

    mutating func step(_ op: FileOp, _ bytes: [UInt8]) {
        switch op {
        case .controlToReceiver: receiver.receiveControl(bytes, now: now)
        case .controlToSender: sender.receiveControl(bytes, now: now)
        case .chunkToReceiver: receiver.receiveSignal(Signal(kind: .fileChunk, payload: bytes), now: now)
        case .ackToSender: sender.receiveSignal(Signal(kind: .fileAck, payload: bytes), now: now)
        case .genuineChunk:
            guard let request = sender.nextChunk() else { break }
            let offset = Int(request.offset)
            guard var signal = sender.sealChunk(request, Array(fuzzFileBytes[offset..<(offset + request.length)]), now: now)
            else { break }
            if let flip = bytes.first, let at = bytes.dropFirst().first, var payload = signal.payload {
                payload[Int(at) % payload.count] ^= flip
                signal.payload = payload
            }
            lastChunk = signal
            receiver.receiveSignal(signal, now: now)
        case .replayChunk:
            if let lastChunk { receiver.receiveSignal(lastChunk, now: now) }
        case .answers:
            deliver(answers, toReceiver: false)
            answers.removeAll()
        case .reconnect:
            sender.connected(now: now)
            receiver.connected(now: now)
        case .wait:
            now = now.advanced(by: .seconds(Int64(bytes.first ?? 1)))
            sender.handleTimeout(now: now)
        case .resume: resume(bytes)
        case .prefixCheck: checkPrefixes(lying: (bytes.first ?? 0) & 1 == 1)
        }
        collect()
    }

    /// Carry out the receiver's writes and stores; keep its messages for `.answers`; deliver the
    /// sender's control messages (its offer, cancels) to the receiver at once.
    mutating func collect() {
        for action in receiver.drainActions() {
            switch action {
            case let .write(_, offset, bytes):
                require(offset % UInt64(chunkBytes) == 0, "write at \(offset), not a chunk boundary")
                require(offset + UInt64(bytes.count) <= UInt64(fuzzFileBytes.count), "write past the offered size")
                require(!written.contains(offset), "chunk at \(offset) written twice")
                require(offset == nextWrite, "write at \(offset) out of order (\(nextWrite) expected)")
                require(bytes.count == chunkBytes || offset + UInt64(bytes.count) == UInt64(fuzzFileBytes.count),
                        "a short chunk before the end")
                written.append(offset)
                let end = Int(offset) + bytes.count
                if disk.count < end { disk += [UInt8](repeating: 0, count: end - disk.count) }
                disk.replaceSubrange(Int(offset)..<end, with: bytes)
                nextWrite = UInt64(end)
            case .truncate:
                // A refused resume: the `.part` starts over (a new epoch of writes).
                disk.removeAll()
                written.removeAll()
                nextWrite = 0
            case let .store(id):
                require(disk == fuzzFileBytes, "stored a file that is not the one offered")
                stored = true
                receiver.stored(id)
            case let .event(event): track(event)
            default: answers.append(action)
            }
        }
        // Answers the receiver queued while storing (DONE) go with the others.
        answers += receiver.drainActions().filter { if case .control = $0 { true } else { false } }
        // Bounded: a verified hash adds its `FHASH` once; the second drain has no verification.
        for _ in 0..<2 {
            for action in sender.drainActions() {
                switch action {
                case let .control(bytes): receiver.receiveControl(bytes, now: now)
                case let .event(event): track(event)
                case let .verifyUnchanged(id): sender.hashVerified(id)
                default: break
                }
            }
        }
    }

    mutating func deliver(_ actions: [FileAction], toReceiver: Bool) {
        for action in actions {
            switch action {
            case let .control(bytes):
                if toReceiver { receiver.receiveControl(bytes, now: now) } else { sender.receiveControl(bytes, now: now) }
            case let .signal(signal):
                if toReceiver { receiver.receiveSignal(signal, now: now) } else { sender.receiveSignal(signal, now: now) }
            default: break
            }
        }
    }

    mutating func track(_ event: FileEvent) {
        if case let .hashed(info, .outgoing) = event { require(info.hash == Self.fileHash, "FHASH is not the file's") }
        guard case let .progress(info, direction, bytes) = event else { return }
        require(bytes <= info.sizeBytes, "progress past the size")
        require(bytes >= progress[direction, default: 0], "\(direction) progress went back")
        progress[direction] = bytes
    }

    func check() {
        require(UInt64(disk.count) <= UInt64(fuzzFileBytes.count), "more written than offered")
        require(!stored || disk == fuzzFileBytes, "stored something else")
    }
}
