import CSodium

/// A file's key: 32 random bytes drawn by the sender for each offer, carried to the receiver
/// inside the sealed `OFFER` record, used only for that file's chunks and acknowledgements
/// (docs/PROTOCOL.md, "File transfer"). Kept in guarded memory and wiped when the transfer ends.
///
/// Chunks and acknowledgements are XSalsa20-Poly1305 (`crypto_secretbox_easy`) boxes whose nonce
/// is a purpose byte ‖ 15 zero bytes ‖ a 64-bit counter: the chunk's index for a chunk (5), the
/// acknowledged count for an acknowledgement (6). A key belongs to one file, so a chunk cannot
/// be moved to another file; its nonce is its index, so it cannot be moved to another offset.
final class FileKey {
    static let byteCount = 32
    static let purposeChunk: UInt8 = 5
    static let purposeAck: UInt8 = 6
    /// Acknowledgements of a transfer restarted from 0 (the receiver's prefix was refused).
    static let purposeAckRestarted: UInt8 = 7
    private let key: SecureBytes

    init(copying bytes: [UInt8]) {
        precondition(bytes.count == Self.byteCount, "a file key is 32 bytes")
        key = bytes.withUnsafeBytes { SecureBytes(copying: $0) }
    }

    static func random(entropy: any EntropySource) -> FileKey {
        var bytes = [UInt8](repeating: 0, count: byteCount)
        bytes.withUnsafeMutableBytes { entropy.fill($0) }
        defer { Sodium.memzero(&bytes) }
        return FileKey(copying: bytes)
    }

    /// A copy of the key for the `OFFER` record (the caller wipes it once encoded).
    func exported() -> [UInt8] {
        key.withUnsafeBytes { Array($0) }
    }

    func wipe() {
        key.wipe()
    }

    func seal(purpose: UInt8, counter: UInt64, _ plaintext: [UInt8]) -> [UInt8] {
        var box: [UInt8] = []
        seal(purpose: purpose, counter: counter, plaintext, appendingTo: &box)
        return box
    }

    /// Append the box of `plaintext` to `output`, sealed in place there: a chunk's SIGNAL payload
    /// is its header and its box in one array, without a copy of the box or a zero fill first.
    func seal(purpose: UInt8, counter: UInt64, _ plaintext: [UInt8], appendingTo output: inout [UInt8]) {
        let start = output.count
        let boxCount = plaintext.count + Int(crypto_secretbox_MACBYTES)
        let nonce = Self.nonce(purpose: purpose, counter: counter)
        output.reserveCapacity(start + boxCount)
        output.append(contentsOf: repeatElement(0, count: boxCount))
        let status = output.withUnsafeMutableBufferPointer { whole in
            key.withUnsafeBytes { keyBytes in
                crypto_secretbox_easy(
                    whole.baseAddress! + start, plaintext, UInt64(plaintext.count), nonce,
                    keyBytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        precondition(status == 0, "crypto_secretbox_easy cannot fail for in-range lengths")
    }

    /// The plaintext, or nil when the box does not authenticate under this key and nonce.
    func open(purpose: UInt8, counter: UInt64, _ box: ArraySlice<UInt8>) -> [UInt8]? {
        let mac = Int(crypto_secretbox_MACBYTES)
        guard box.count >= mac else { return nil }
        let nonce = Self.nonce(purpose: purpose, counter: counter)
        var status: Int32 = -1
        // Uninitialized, not zero-filled first: libsodium writes every byte, or fails (then the
        // array is never returned). At least one byte of capacity, so that an acknowledgement's
        // empty plaintext still has an address to be written to.
        let count = box.count - mac
        let plaintext = [UInt8](unsafeUninitializedCapacity: max(count, 1)) { output, initializedCount in
            status = key.withUnsafeBytes { keyBytes in
                box.withUnsafeBufferPointer { boxBytes in
                    crypto_secretbox_open_easy(
                        output.baseAddress!, boxBytes.baseAddress!, UInt64(box.count), nonce,
                        keyBytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            initializedCount = count
        }
        return status == 0 ? plaintext : nil
    }

    private static func nonce(purpose: UInt8, counter: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: Int(crypto_secretbox_NONCEBYTES) - 8)
        nonce[0] = purpose
        BigEndian.append(counter, to: &nonce)
        return nonce
    }
}

/// BLAKE2b-256 (`crypto_generichash`, unkeyed) over a file fed in pieces: the sender hashes the
/// file before offering it, the receiver hashes what it writes, in order, as it writes it.
public final class FileHasher {
    public static let digestBytes = 32
    /// libsodium's state is an aligned struct Swift imports as opaque: its own allocation.
    private let state: UnsafeMutableRawPointer
    private var finished = false
    /// Bytes fed so far (a resumed transfer checks its prefix's hasher saw exactly the prefix).
    public private(set) var bytesHashed: UInt64 = 0

    public init() {
        Sodium.ensureInitialized()
        state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        _ = crypto_generichash_init(OpaquePointer(state), nil, 0, Self.digestBytes)
    }

    deinit {
        state.deallocate()
    }

    public func update(_ bytes: [UInt8]) {
        precondition(!finished, "a finished hasher takes no more input")
        _ = crypto_generichash_update(OpaquePointer(state), bytes, UInt64(bytes.count))
        bytesHashed += UInt64(bytes.count)
    }

    /// The digest of what was fed so far, while this hasher goes on taking input: a resumed
    /// receiver proves its prefix with it and keeps hashing the rest of the file on top.
    public func digestSoFar() -> [UInt8] {
        precondition(!finished, "a finished hasher has no state left")
        let size = crypto_generichash_statebytes()
        // BLAKE2b's state is plain bytes (no pointers): a copy finishes independently.
        let copy = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer {
            copy.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            copy.deallocate()
        }
        copy.copyMemory(from: state, byteCount: size)
        var digest = [UInt8](repeating: 0, count: Self.digestBytes)
        _ = crypto_generichash_final(OpaquePointer(copy), &digest, Self.digestBytes)
        return digest
    }

    /// The digest; the hasher takes no more input afterwards.
    public func finish() -> [UInt8] {
        precondition(!finished, "finished twice")
        finished = true
        var digest = [UInt8](repeating: 0, count: Self.digestBytes)
        _ = crypto_generichash_final(OpaquePointer(state), &digest, Self.digestBytes)
        return digest
    }
}
