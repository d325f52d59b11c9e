/// A file transfer's identifier: 16 random bytes drawn by the sender for each offer. Public (it
/// travels in the clear in every chunk's header), never a key.
public struct FileID: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 16
    public let bytes: [UInt8]

    /// - Precondition: exactly 16 bytes (callers check lengths read from the wire first).
    public init(bytes: [UInt8]) {
        precondition(bytes.count == Self.byteCount, "a file id is 16 bytes")
        self.bytes = bytes
    }

    /// A fresh id from `entropy`.
    public static func random(entropy: any EntropySource) -> FileID {
        var bytes = [UInt8](repeating: 0, count: byteCount)
        bytes.withUnsafeMutableBytes { entropy.fill($0) }
        return FileID(bytes: bytes)
    }

    /// Lowercase hexadecimal, for events and logs (the id is public).
    public var description: String { FileHex.encode(bytes) }
}

/// Lowercase hexadecimal for ids and hashes in events.
public enum FileHex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Why a receiver refused an offer (one byte in `REJECT`).
public enum FileRefusal: UInt8, Hashable, Sendable, CaseIterable {
    /// The user (or, in pipe mode without `--accept-files`, the client) declined it.
    case declined = 1
    /// Larger than the receiver's `--max-file-bytes`.
    case tooLarge = 2
    /// Larger than the free space in the download directory (statvfs).
    case noSpace = 3
    /// The download directory could not take the file (not writable, no such directory).
    case storage = 4
    /// Too many transfers already under way.
    case busy = 5

    /// The stable name in `--json` (`file_failed` reasons are `rejected_<name>`).
    public var eventName: String {
        switch self {
        case .declined: "declined"
        case .tooLarge: "too_large"
        case .noSpace: "no_space"
        case .storage: "storage"
        case .busy: "busy"
        }
    }
}

/// Why a transfer ended without the file arriving. `CANCEL` carries the cases with a wire code.
public enum FileFailure: Hashable, Sendable, CustomStringConvertible {
    /// The receiver refused the offer.
    case rejected(FileRefusal)
    /// Cancelled by this side's user.
    case cancelled
    /// The peer cancelled (its user, or its own failure it had no finer word for).
    case cancelledByPeer
    /// The received file's BLAKE2b-256 differed from the offer's: deleted.
    case hashMismatch
    /// The peer sent something the protocol forbids (an authenticated chunk of the wrong length,
    /// an acknowledgement past what was sent, a malformed file message).
    case protocolError
    /// The local file could not be read or written.
    case storage
    /// The session ended, or this side began its goodbye, before the transfer did.
    case sessionEnded
    /// Outgoing: the session ended after every chunk was sent and before the receiver's `DONE`
    /// came (a goodbye's bound passed, a signal): the peer may have stored the file or not.
    case unconfirmed
    /// The peer is another instance now (it restarted): the transfer is not continued with it.
    case peerChanged
    /// The peer left the chat (its user ended it) before the transfer did: it said goodbye and
    /// then all it had to say, or its connection ended after the goodbye.
    case peerLeft
    /// The relay refused a chunk as too large (`FRAME_TOO_LARGE`): it runs with a frame cap under
    /// the 128 KiB file chunks need, and would refuse every chunk again. The sender ends; its
    /// `CANCEL` (code 5) ends the receiver's side, which keeps its `.part`: the `ERROR` is the
    /// relay's word, unauthenticated, and a lying relay must not cost the receiver what it has.
    case relayFrameLimit

    /// The stable name in `--json` `file_failed` events; scripts match on it.
    public var eventName: String {
        switch self {
        case let .rejected(refusal): "rejected_" + refusal.eventName
        case .cancelled: "cancelled"
        case .cancelledByPeer: "cancelled_by_peer"
        case .hashMismatch: "hash_mismatch"
        case .protocolError: "protocol_error"
        case .storage: "storage"
        case .sessionEnded: "session_ended"
        case .unconfirmed: "unconfirmed"
        case .peerChanged: "peer_changed"
        case .peerLeft: "peer_left"
        case .relayFrameLimit: "relay_frame_limit"
        }
    }

    public var description: String {
        switch self {
        case .rejected(.declined): "the peer declined the file"
        case .rejected(.tooLarge): "the file is larger than the peer accepts"
        case .rejected(.noSpace): "the peer has too little free space"
        case .rejected(.storage): "the peer cannot store files in its download directory"
        case .rejected(.busy): "the peer has too many transfers under way"
        case .cancelled: "cancelled"
        case .cancelledByPeer: "the peer cancelled the transfer"
        case .hashMismatch: "the received file did not match the offered hash (deleted)"
        case .protocolError: "the peer broke the file protocol"
        case .storage: "the file could not be read or written"
        case .sessionEnded: "the session ended first"
        case .unconfirmed: "every byte was sent, but the session ended before the peer confirmed it stored the file"
        case .peerChanged: "the peer restarted"
        case .peerLeft: "the peer left the chat before the transfer finished"
        case .relayFrameLimit: "the relay refuses messages as large as a file chunk (its frame cap is under 128 KiB)"
        }
    }

    /// An incoming `.part` stays on disk after this failure, for the next session to resume: the
    /// transfer was cut off (the session, or the peer's process, ended), nothing was wrong with it.
    var keepsPart: Bool {
        switch self {
        case .sessionEnded, .unconfirmed, .peerChanged, .peerLeft, .relayFrameLimit: true
        case .rejected, .cancelled, .cancelledByPeer, .hashMismatch, .protocolError, .storage: false
        }
    }

    /// The one byte a `CANCEL` carries for this failure.
    var cancelCode: UInt8 {
        switch self {
        case .hashMismatch: 2
        case .protocolError: 3
        case .storage: 4
        case .relayFrameLimit: 5
        case .rejected, .cancelled, .cancelledByPeer, .sessionEnded, .unconfirmed, .peerChanged, .peerLeft: 1
        }
    }

    /// The failure the receiver of a `CANCEL` with `code` reports.
    static func fromCancel(_ code: UInt8) -> FileFailure {
        switch code {
        case 2: .hashMismatch
        case 3: .protocolError
        case 5: .relayFrameLimit
        default: .cancelledByPeer
        }
    }
}

/// An offer as both sides see it (the key stays inside `FileTransfers`).
public struct FileOfferInfo: Hashable, Sendable {
    public let id: FileID
    /// The name as offered (raw, untrusted: renderers sanitize it, the store uses `SafeFileName`).
    public let name: String
    public let sizeBytes: UInt64
    /// BLAKE2b-256 of the whole file; empty until it is known, for an offer that went out before
    /// its sender hashed the whole file (`hashFollows`: the hash comes in `FHASH`).
    public internal(set) var hash: [UInt8]
    /// For an offer made before the whole file was hashed: BLAKE2b-256 of its first `headBytes`
    /// (0 < `headBytes` < size), hashed before the offer; it names the `.part` (`partTag`). Empty
    /// (and 0) when the offer carried the whole file's hash.
    public let headHash: [UInt8]
    public let headBytes: UInt64

    init(id: FileID, name: String, sizeBytes: UInt64, hash: [UInt8], headHash: [UInt8] = [], headBytes: UInt64 = 0) {
        self.id = id
        self.name = name
        self.sizeBytes = sizeBytes
        self.hash = hash
        self.headHash = headHash
        self.headBytes = headBytes
    }

    /// The sender offered the file before hashing all of it, so that the transfer need not wait
    /// for a whole pass over it: it hashes the rest as it sends the chunks and sends `FHASH` after.
    public var hashFollows: Bool { headBytes > 0 }

    /// The hash is here (it came with the offer, or `FHASH` did).
    public var hashKnown: Bool { !hash.isEmpty }

    /// What names this offer's `.part` (`SafeFileName.partTag`): the hash the offer carried, the
    /// whole file's or its head's. Either is known only to who knows the content it covers.
    public var partTag: String {
        SafeFileName.partTag(fileHash: hashFollows ? headHash : hash, sizeBytes: sizeBytes)
    }
}

/// The file control messages, carried as session records of type 2 (ordered, acknowledged,
/// retransmitted, sealed under the ratchet like chat text). docs/PROTOCOL.md, "File transfer".
enum FileControl: Hashable {
    case offer(FileOfferInfo, chunkBytes: Int, key: [UInt8])
    /// Start at chunk `startChunk`: 0 (with a zero prefix hash), or the chunks a `.part` kept from
    /// an earlier session holds, with the receiver's BLAKE2b-256 of them for the sender to check.
    case accept(FileID, startChunk: UInt64, prefixHash: [UInt8])
    case reject(FileID, FileRefusal)
    case cancel(FileID, code: UInt8)
    /// The receiver stored the file; the hash it computed over what it wrote.
    case done(FileID, hash: [UInt8])
    /// The sender's answer to an `ACCEPT` whose prefix hash is not its file's: start again from 0
    /// (the receiver empties its `.part` and accepts again with start 0).
    case restart(FileID)
    /// The sender's BLAKE2b-256 of the whole file, for an offer that said it follows (`FHASH`).
    case fileHash(FileID, hash: [UInt8])

    static let typeOffer: UInt8 = 1
    static let typeAccept: UInt8 = 2
    static let typeReject: UInt8 = 3
    static let typeCancel: UInt8 = 4
    static let typeDone: UInt8 = 5
    static let typeRestart: UInt8 = 6
    static let typeFileHash: UInt8 = 7
    static let hashBytes = 32
    static let keyBytes = 32
    /// An offered name is at most this many UTF-8 bytes on the wire (the receiver shortens it further).
    static let nameMaxBytes = 1024
    /// Offered chunk sizes the receiver accepts (bounds its write per chunk).
    static let chunkBytesRange = 1024...(96 * 1024)

    var fileID: FileID {
        switch self {
        case let .offer(info, _, _): info.id
        case let .accept(id, _, _), let .reject(id, _), let .cancel(id, _), let .done(id, _), let .restart(id),
             let .fileHash(id, _): id
        }
    }

    func encode() -> [UInt8] {
        var out: [UInt8] = []
        switch self {
        case let .offer(info, chunkBytes, key):
            out = [Self.typeOffer] + info.id.bytes
            BigEndian.append(info.sizeBytes, to: &out)
            BigEndian.append(UInt64(chunkBytes), to: &out)
            out += (info.hashFollows ? info.headHash : info.hash) + key
            let name = Array(info.name.utf8)
            BigEndian.append(UInt16(name.count), to: &out)
            out += name
            // The hash that follows: the 32 bytes above are the head's, of this many bytes.
            if info.hashFollows { BigEndian.append(info.headBytes, to: &out) }
        case let .accept(id, startChunk, prefixHash):
            out = [Self.typeAccept] + id.bytes
            BigEndian.append(startChunk, to: &out)
            out += prefixHash
        case let .reject(id, refusal): out = [Self.typeReject] + id.bytes + [refusal.rawValue]
        case let .cancel(id, code): out = [Self.typeCancel] + id.bytes + [code]
        case let .done(id, hash): out = [Self.typeDone] + id.bytes + hash
        case let .restart(id): out = [Self.typeRestart] + id.bytes
        case let .fileHash(id, hash): out = [Self.typeFileHash] + id.bytes + hash
        }
        return out
    }

    /// Strict: every length exact, every field in range; anything else is `nil` (a protocol error).
    static func decode(_ bytes: [UInt8]) -> FileControl? {
        guard bytes.count >= 1 + FileID.byteCount else { return nil }
        let id = FileID(bytes: Array(bytes[1..<(1 + FileID.byteCount)]))
        let body = Array(bytes[(1 + FileID.byteCount)...])
        switch bytes[0] {
        case typeOffer: return decodeOffer(id, body)
        case typeAccept:
            guard body.count == 8 + hashBytes else { return nil }
            return .accept(id, startChunk: BigEndian.uint64(body, at: 0), prefixHash: Array(body[8...]))
        case typeReject:
            guard body.count == 1, let refusal = FileRefusal(rawValue: body[0]) else { return nil }
            return .reject(id, refusal)
        case typeCancel:
            guard body.count == 1, (1...5).contains(body[0]) else { return nil }
            return .cancel(id, code: body[0])
        case typeDone:
            guard body.count == hashBytes else { return nil }
            return .done(id, hash: body)
        case typeRestart:
            return body.isEmpty ? .restart(id) : nil
        case typeFileHash:
            guard body.count == hashBytes else { return nil }
            return .fileHash(id, hash: body)
        default: return nil
        }
    }

    private static func decodeOffer(_ id: FileID, _ body: [UInt8]) -> FileControl? {
        let fixed = 8 + 8 + hashBytes + keyBytes + 2
        guard body.count >= fixed else { return nil }
        let size = BigEndian.uint64(body, at: 0)
        let chunk = BigEndian.uint64(body, at: 8)
        let hash = Array(body[16..<(16 + hashBytes)])
        let key = Array(body[(16 + hashBytes)..<(16 + hashBytes + keyBytes)])
        let nameCount = Int(body[fixed - 2]) << 8 | Int(body[fixed - 1])
        let follows = body.count == fixed + nameCount + 8
        guard body.count == fixed + nameCount || follows, nameCount > 0, nameCount <= nameMaxBytes,
              chunk <= UInt64(chunkBytesRange.upperBound), chunkBytesRange.contains(Int(chunk)),
              size <= FileTransfers.fileBytesMax else { return nil }
        let nameBytes = Array(body[fixed..<(fixed + nameCount)])
        guard let name = nameBytes.withUnsafeBytes({ UTF8Text.string(validating: $0) }) else { return nil }
        let headBytes = follows ? BigEndian.uint64(body, at: fixed + nameCount) : 0
        guard !follows || (headBytes > 0 && headBytes < size) else { return nil }
        let info = FileOfferInfo(id: id, name: name, sizeBytes: size, hash: follows ? [] : hash,
                                 headHash: follows ? hash : [], headBytes: headBytes)
        return .offer(info, chunkBytes: Int(chunk), key: key)
    }
}
