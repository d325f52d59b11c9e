/// The tunables of file transfers (docs/PROTOCOL.md, "File transfer").
public struct FileTransferConfiguration: Hashable, Sendable {
    /// Plaintext bytes per chunk: a sealed chunk's SIGNAL stays under the relay's default 128 KiB
    /// frame cap in its text form (96,296 bytes of payload → 128,442 bytes of JSON), which is what
    /// the relay checks a binary SIGNAL against. Per frame, not per byte, is where a transfer's CPU
    /// went beyond the crypto: 94 KiB chunks moved a file about 17% faster than 45 KiB ones
    /// (BENCHMARKS.md, "Bigger chunks").
    public var chunkBytes = 94 * 1024
    /// Chunks sent and not yet acknowledged, of all outgoing transfers together: 8 chunks are
    /// 770 KB, 1.03 MB as text, under the 1 MiB of frames the relay holds for the rate limit
    /// (`RelayLimits.heldBytesMax`, binary or text), so a rate-limited relay holds, rather than
    /// drops, them.
    public var windowChunks = 8
    /// The receiver acknowledges every this many chunks (and the last), so the sender has room
    /// to send again before the window's end.
    public var ackEveryChunks = 3
    /// Chunks in flight and no acknowledgement for this long: send again from the last one
    /// acknowledged (a frame lost with a connection the session did not notice).
    public var stallTimeout: Duration = .seconds(10)
    /// Transfers under way at once (both directions); more offers are refused `busy`.
    public var transfersMax = 16
    /// At most one progress event per transfer per this interval (4 a second).
    public var progressInterval: Duration = .milliseconds(250)

    public init() {}
}

/// Which way a file moves, seen from this side.
public enum FileDirection: String, Hashable, Sendable {
    case outgoing
    case incoming
}

/// What the UI hears about transfers.
public enum FileEvent: Hashable, Sendable {
    /// An offer went out (outgoing) or came in (incoming; answer with `accept` or `reject`).
    case offered(FileOfferInfo, FileDirection)
    /// Bytes acknowledged by the receiver (outgoing) or written (incoming); never goes back.
    case progress(FileOfferInfo, FileDirection, bytes: UInt64)
    /// The receiver stored the file and both sides' BLAKE2b-256 matched the offer's;
    /// `chunksResent`: chunks the sender sent again after going back (0 for incoming).
    case done(FileOfferInfo, FileDirection, chunksResent: Int)
    case failed(FileOfferInfo, FileDirection, FileFailure)
    /// The transfer continues from the `.part` an earlier session left: its first `bytes` are not
    /// sent again (the sender checked their hash; the receiver got the next chunk).
    case resumed(FileOfferInfo, FileDirection, bytes: UInt64)
    /// The hash of an offer that said it follows is known now (`info.hash`): outgoing once this
    /// side hashed the whole file, incoming when the sender's `FHASH` came.
    case hashed(FileOfferInfo, FileDirection)
}

/// What the transfers ask of the driver, in order.
public enum FileAction: Hashable, Sendable {
    /// Send this file control message as a session record (`SessionManager.sendFileControl`).
    case control([UInt8])
    /// Transmit this chunk or acknowledgement now (`SessionManager.transmitFileSignal`).
    case signal(Signal)
    /// Write these bytes at `offset` of the incoming file's `.part`.
    case write(FileID, offset: UInt64, bytes: [UInt8])
    /// Every byte arrived and the hash matched: give the `.part` its final name, then call
    /// `stored(_:)` (or `fail(_:_:)` with `.storage`).
    case store(FileID)
    /// The transfer is over: close its file; an incoming `.part` that did not become the file
    /// (`deletePart`) is deleted. A transfer cut off by the session's end keeps it (to resume).
    case release(FileID, deletePart: Bool)
    /// Empty the incoming `.part` (to zero bytes): the sender refused the prefix it held, and
    /// the file starts again from chunk 0.
    case truncate(FileID)
    /// The whole outgoing file is hashed (its hash followed the offer): check that it did not
    /// change on disk since it was opened, then call `hashVerified(_:unchanged:)`. Hashed as it
    /// was sent, a file written to meanwhile would arrive as a mix that matches its own `FHASH`.
    case verifyUnchanged(FileID)
    case event(FileEvent)
}

/// Bytes of an outgoing file to hash for its `FHASH`; read them and pass them to `hashSliceRead`.
public struct FileHashRequest: Hashable, Sendable {
    public let id: FileID
    public let offset: UInt64
    public let count: Int
}

/// A chunk the sender may send now; read its bytes and pass them to `sealChunk`.
public struct FileChunkRequest: Hashable, Sendable {
    public let id: FileID
    public let index: UInt64
    public let offset: UInt64
    public let length: Int
}

/// Every file transfer of a session, both directions: the sans-IO decisions (offers, answers,
/// the chunk window, acknowledgements, go-back on a reconnect or a stall, the hash check, typed
/// failures). The driver carries out its `FileAction`s with a file store and the session.
///
/// Chunks travel outside the session's reliable channel (SIGNAL kind `FCHUNK`), so that chat
/// records never queue behind a file: each is sealed under the file's own key, bound to its
/// index by the nonce. The receiver takes exactly the next chunk in order; an earlier one (a
/// resend or a relay's replay) or a later one (after a loss) is dropped, never written, and the
/// sender goes back to the last acknowledged chunk when the keys come back or nothing is
/// acknowledged for `stallTimeout`.
public struct FileTransfers {
    /// Largest file size an offer may state (2^50 bytes: chunk offsets never overflow).
    public static let fileBytesMax: UInt64 = 1 << 50

    /// Counters for tests and the simulator.
    public struct Statistics: Hashable, Sendable {
        /// Chunks sent again (after a go-back).
        public var chunksResent = 0
        /// Chunks that did not open under the file's key, or came out of order (never written).
        public var chunksRejected = 0
        /// Chunks already written that came again (never written twice).
        public var duplicateChunks = 0
        /// File messages refused: malformed, or for no transfer in a state to take them.
        public var messagesRejected = 0
        /// Resumes refused by this sender: the receiver's prefix was not the file's (restarted at 0).
        public var prefixesRefused = 0
        public var failedOutgoing = 0
        public var failedIncoming = 0
        public var completed = 0
    }

    enum Phase: Hashable {
        /// Outgoing: waiting for the answer. Incoming: waiting for the user (or policy).
        case offered
        /// Chunks move: `done` acknowledged (outgoing) or written (incoming); `next` the next to
        /// send (outgoing; equal to `done` incoming); `heardAt` the last acknowledgement, or when
        /// the window's first chunk went (the stall clock).
        case moving(done: UInt64, next: UInt64, heardAt: Instant)
        /// Incoming: every chunk written and the hash matched; the driver renames the `.part`.
        case storing
        /// Outgoing: every chunk acknowledged; waiting for the receiver's `DONE`.
        case confirming
        /// Outgoing: the receiver asked to resume at chunk `start` with `prefixHash`; waiting for
        /// the driver's hash of the file's first `start` chunks (`prefixHashed`).
        case verifying(start: UInt64, prefixHash: [UInt8])
        /// Incoming: every chunk written, their BLAKE2b-256 `digest`; waiting for the sender's
        /// `FHASH` to decide between storing the file and deleting it.
        case written(digest: [UInt8])
    }

    struct Transfer {
        var info: FileOfferInfo
        let direction: FileDirection
        let chunkBytes: Int
        let key: FileKey
        var phase: Phase = .offered
        /// Incoming: what was written so far. Outgoing, while the hash follows the offer: the
        /// file's first `bytesHashed` bytes (chunks as they are sealed, slices behind them).
        var hasher: FileHasher?
        /// Outgoing: the whole file's hash, until the driver says the file did not change.
        var hashToVerify: [UInt8]?
        var progressAt: Instant?
        var reported: UInt64 = 0
        /// Chunks sent again after going back (a reconnect, a stall).
        var resent = 0
        /// The chunk a resume started from (0: from the start). The receiver sets it when it
        /// proposes a resume, the sender once it checked the prefix.
        var resumedFrom: UInt64 = 0
        /// The sender refused the receiver's prefix and both started again from 0 (once per offer).
        var restarted = false

        /// Acknowledgements after a restart use their own nonce space, so that one from before
        /// (a count past what is now written) never opens again.
        var ackPurpose: UInt8 { restarted ? FileKey.purposeAckRestarted : FileKey.purposeAck }

        var chunkCount: UInt64 {
            (info.sizeBytes + UInt64(chunkBytes) - 1) / UInt64(chunkBytes)
        }

        /// Outgoing: every chunk went out at least once (acknowledged or not), and the hash (`FHASH`
        /// when it followed the offer): nothing is left to send but answers.
        var sentEveryChunk: Bool {
            guard info.hashKnown else { return false }
            switch phase {
            case .confirming: return true
            case let .moving(_, next, _): return next == chunkCount
            case .offered, .storing, .verifying, .written: return false
            }
        }

        func length(ofChunk index: UInt64) -> Int {
            Int(min(UInt64(chunkBytes), info.sizeBytes - index * UInt64(chunkBytes)))
        }
    }

    public let configuration: FileTransferConfiguration
    /// This side began its goodbye (`startLeaving`): no transfer starts any more.
    public internal(set) var isLeaving = false
    var transfers: [Transfer] = []
    var pending: [FileAction] = []
    public internal(set) var statistics = Statistics()

    public init(configuration: FileTransferConfiguration = FileTransferConfiguration()) {
        self.configuration = configuration
    }

    /// No transfer under way (nothing offered, moving or awaiting its end).
    public var isIdle: Bool { transfers.isEmpty }

    /// The transfers under way, oldest first, for the status line.
    public var active: [(info: FileOfferInfo, direction: FileDirection, bytes: UInt64)] {
        transfers.map { ($0.info, $0.direction, $0.reported) }
    }

    /// Incoming offers waiting for an answer, oldest first.
    public var awaitingAnswer: [FileOfferInfo] {
        transfers.filter { $0.direction == .incoming && $0.phase == .offered }.map(\.info)
    }

    /// Every pending action, oldest first.
    public mutating func drainActions() -> [FileAction] {
        defer { pending.removeAll(keepingCapacity: true) }
        return pending
    }

    func index(of id: FileID, _ direction: FileDirection) -> Int? {
        transfers.firstIndex { $0.info.id == id && $0.direction == direction }
    }

    // MARK: Offering (sender)

    /// Offer a file of `sizeBytes` whose BLAKE2b-256 is `hash`, under `name` (the receiver
    /// sanitizes it). Nil when too many transfers are under way or the size is out of range.
    public mutating func offer(name: String, sizeBytes: UInt64, hash: [UInt8], entropy: any EntropySource) -> FileID? {
        guard hash.count == FileHasher.digestBytes else { return nil }
        return offer(name: name, sizeBytes: sizeBytes, entropy: entropy) { id, name in
            (FileOfferInfo(id: id, name: name, sizeBytes: sizeBytes, hash: hash), nil)
        }
    }

    /// Offer a file of `sizeBytes` of which `head` hashed the first bytes before the offer: all
    /// of them (a small file), or a head, and then the offer says the hash follows: `head` goes on
    /// hashing the file as its chunks are sealed, and in slices behind them (`nextHashSlice`), and
    /// `FHASH` goes once it is whole, so that the transfer never waits for a whole pass over a
    /// large file. Nil when too many transfers are under way, or the size is out of range.
    public mutating func offer(
        name: String, sizeBytes: UInt64, hashedHead head: FileHasher, entropy: any EntropySource
    ) -> FileID? {
        guard head.bytesHashed < sizeBytes else {
            guard head.bytesHashed == sizeBytes else { return nil }
            return offer(name: name, sizeBytes: sizeBytes, hash: head.finish(), entropy: entropy)
        }
        guard head.bytesHashed > 0 else { return nil }
        return offer(name: name, sizeBytes: sizeBytes, entropy: entropy) { id, name in
            let info = FileOfferInfo(id: id, name: name, sizeBytes: sizeBytes, hash: [],
                                     headHash: head.digestSoFar(), headBytes: head.bytesHashed)
            return (info, head)
        }
    }

    private mutating func offer(
        name: String, sizeBytes: UInt64, entropy: any EntropySource,
        _ make: (FileID, String) -> (FileOfferInfo, FileHasher?)
    ) -> FileID? {
        guard !isLeaving, transfers.count < configuration.transfersMax, sizeBytes <= Self.fileBytesMax else { return nil }
        var nameBytes = Array(name.utf8.prefix(FileControl.nameMaxBytes))
        while !nameBytes.isEmpty, String(validating: nameBytes, as: UTF8.self) == nil { nameBytes.removeLast() }
        let wireName = nameBytes.isEmpty ? SafeFileName.fallback : String(decoding: nameBytes, as: UTF8.self)
        let (info, hasher) = make(.random(entropy: entropy), wireName)
        let key = FileKey.random(entropy: entropy)
        var keyBytes = key.exported()
        pending.append(.control(FileControl.offer(info, chunkBytes: configuration.chunkBytes, key: keyBytes).encode()))
        Sodium.memzero(&keyBytes)
        var transfer = Transfer(info: info, direction: .outgoing, chunkBytes: configuration.chunkBytes, key: key)
        transfer.hasher = hasher
        transfers.append(transfer)
        pending.append(.event(.offered(info, .outgoing)))
        return info.id
    }

    // MARK: Answering (receiver)

    /// Accept an incoming offer (its `.part` is open): the sender starts with chunk 0, or, with
    /// `prefix` (a `.part` kept from an earlier session, hashed by the driver: see
    /// `resumePoint`), after the prefix's chunks if the sender finds the same hash in its file.
    public mutating func accept(_ id: FileID, now: Instant, prefix: FilePrefix? = nil) {
        guard let index = index(of: id, .incoming), transfers[index].phase == .offered else { return }
        let transfer = transfers[index]
        var start: UInt64 = 0
        var hasher = FileHasher()
        var prefixHash = [UInt8](repeating: 0, count: FileControl.hashBytes)
        // A prefix counts only if it is whole chunks short of the end and its hasher saw exactly them.
        if let prefix, prefix.chunks > 0, prefix.chunks < transfer.chunkCount,
           prefix.hasher.bytesHashed == prefix.chunks * UInt64(transfer.chunkBytes)
        {
            start = prefix.chunks
            hasher = prefix.hasher
            prefixHash = hasher.digestSoFar()
        }
        pending.append(.control(FileControl.accept(id, startChunk: start, prefixHash: prefixHash).encode()))
        transfers[index].hasher = hasher
        transfers[index].resumedFrom = start
        transfers[index].reported = start * UInt64(transfer.chunkBytes)
        transfers[index].phase = .moving(done: start, next: start, heardAt: now)
        if transfers[index].chunkCount == 0 { finishReceiving(at: index) }
    }

    /// Refuse an incoming offer.
    public mutating func reject(_ id: FileID, _ refusal: FileRefusal) {
        guard let index = index(of: id, .incoming), transfers[index].phase == .offered else { return }
        pending.append(.control(FileControl.reject(id, refusal).encode()))
        end(at: index, .rejected(refusal))
    }

    /// The driver gave the `.part` its final name: tell the sender, and report the file done.
    public mutating func stored(_ id: FileID) {
        guard let index = index(of: id, .incoming), transfers[index].phase == .storing else { return }
        pending.append(.control(FileControl.done(id, hash: transfers[index].info.hash).encode()))
        succeed(at: index)
    }

    /// Cancel a transfer in either direction (the user's `/cancel`, or a local failure: the
    /// file could not be read or written).
    public mutating func fail(_ id: FileID, _ direction: FileDirection, _ failure: FileFailure) {
        guard let index = index(of: id, direction) else { return }
        pending.append(.control(FileControl.cancel(id, code: failure.cancelCode).encode()))
        end(at: index, failure)
    }

    /// The file an encoded `OFFER` control message offers; nil for any other message (the driver
    /// drops a held `OFFER`, and what follows it for its file, when the transfer ends first).
    public static func offeredFile(inControl bytes: [UInt8]) -> FileID? {
        guard case let .offer(info, _, _)? = FileControl.decode(bytes) else { return nil }
        return info.id
    }

    /// The file an encoded control message is about (nil: not one).
    public static func file(ofControl bytes: [UInt8]) -> FileID? {
        FileControl.decode(bytes)?.fileID
    }

    /// The relay refused a chunk (`FRAME_TOO_LARGE`): every outgoing transfer that sends chunks
    /// fails, its peer told (a `CANCEL` is small), since the relay would refuse each chunk again.
    public mutating func failSending(_ failure: FileFailure) {
        let sending = transfers.filter { transfer in
            guard transfer.direction == .outgoing, case .moving = transfer.phase else { return false }
            return true
        }
        for transfer in sending { fail(transfer.info.id, .outgoing, failure) }
    }

    /// The session ended or the peer changed: every transfer ends with `failure` (nothing is
    /// sent: there is no one to tell).
    /// An outgoing transfer that sent every chunk and ends with the session ends `.unconfirmed`: it
    /// waited only for the receiver's `DONE`, which may be on its way (the receiver may have stored it).
    public mutating func failAll(_ failure: FileFailure) {
        // Bounded: each round ends a transfer.
        while let transfer = transfers.first {
            let waitedForDone = failure == .sessionEnded && transfer.direction == .outgoing && transfer.sentEveryChunk
            end(at: 0, waitedForDone ? .unconfirmed : failure)
        }
    }

    /// This side says goodbye. From the peer's first reading of it the peer numbers nothing new, so
    /// an answer or a `DONE` it has not yet numbered never comes, and it ends its side of every
    /// transfer once it has all we numbered before the goodbye (`SessionManager.peerHasSaidAll`).
    /// So every transfer ends here now with `.sessionEnded` (nothing is sent; a `.part` is kept),
    /// but an outgoing one whose every chunk was sent: it waits only for the receiver's `DONE`.
    /// The chunks went out before our first `BYE`, on the same ordered link, so a receiver that got
    /// them stored the file and numbered its `DONE` before it read the goodbye, and the goodbye
    /// waits for what it numbered: the `DONE` comes, and both sides say the file is done. If the
    /// last chunks were lost (a reconnect), none is sent again (`goBack` stops): the receiver ends
    /// its side `peerLeft` without the file and ours ends with the session, so neither side says
    /// done. An offer that arrives later ends at once (`receiveOffer`), never accepted.
    public mutating func startLeaving() {
        isLeaving = true
        var index = 0
        // Bounded: each round ends a transfer or steps past one.
        while index < transfers.count {
            if transfers[index].direction == .outgoing, transfers[index].sentEveryChunk {
                index += 1
            } else {
                end(at: index, .sessionEnded)
            }
        }
    }

    /// The session reported one of this side's file control messages undeliverable because the
    /// peer left (said goodbye): the transfer it belongs to ends with `.peerLeft` (nothing is sent:
    /// the peer takes nothing new). Whether or not a message numbered before the goodbye reached
    /// the leaving peer, it waits for nothing: it ended its transfers as it began its goodbye and
    /// takes no offer after (`startLeaving`).
    public mutating func controlUndeliverable(_ bytes: [UInt8]) {
        guard let control = FileControl.decode(bytes) else { return }
        // A sender's message belongs to an outgoing transfer, a receiver's to an incoming one: the
        // peer picks the ids of its offers, so one may equal ours in the other direction.
        let direction: FileDirection
        switch control {
        case .offer, .restart, .fileHash: direction = .outgoing
        case .accept, .reject: direction = .incoming
        case .cancel, .done: return  // Sent when its transfer ended: nothing left to end.
        }
        if let index = index(of: control.fileID, direction) { end(at: index, .peerLeft) }
    }

    // MARK: Ending

    mutating func succeed(at index: Int) {
        let transfer = transfers.remove(at: index)
        statistics.completed += 1
        transfer.key.wipe()
        pending.append(.release(transfer.info.id, deletePart: false))
        pending.append(.event(.done(transfer.info, transfer.direction, chunksResent: transfer.resent)))
    }

    mutating func end(at index: Int, _ failure: FileFailure) {
        let transfer = transfers.remove(at: index)
        transfer.key.wipe()
        if transfer.direction == .outgoing {
            statistics.failedOutgoing += 1
        } else if transfer.phase != .offered {
            statistics.failedIncoming += 1  // An offer refused here is a choice, not a failure.
        }
        // A transfer cut off (not refused, failed or cancelled) keeps its `.part` to resume from.
        pending.append(.release(transfer.info.id, deletePart: transfer.direction == .incoming && !failure.keepsPart))
        pending.append(.event(.failed(transfer.info, transfer.direction, failure)))
    }

    /// A progress event, at most one per `progressInterval` (the `done` event says 100%).
    mutating func reportProgress(at index: Int, bytes: UInt64, now: Instant) {
        transfers[index].reported = bytes
        if let last = transfers[index].progressAt, now < last.advanced(by: configuration.progressInterval) { return }
        transfers[index].progressAt = now
        pending.append(.event(.progress(transfers[index].info, transfers[index].direction, bytes: bytes)))
    }
}
