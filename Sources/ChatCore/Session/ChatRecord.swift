/// Why a decrypted record was refused (it authenticated, so only a buggy or hostile peer sends these).
public enum RecordError: Error, Hashable, Sendable, CustomStringConvertible {
    case truncated
    case unknownType(UInt8)
    case badLength
    case invalidUTF8

    public var description: String {
        switch self {
        case .truncated: "record shorter than its header"
        case let .unknownType(type): "unknown record type \(type)"
        case .badLength: "record length field exceeds the record"
        case .invalidUTF8: "record text is not valid UTF-8"
        }
    }
}

/// The plaintext inside a MSG box: type (1 byte) || text length (2 bytes, big-endian) || UTF-8
/// text || zero padding up to a multiple of `paddingBlockBytes`, so that the relay learns a
/// message's length only to within a block.
enum ChatRecord {
    static let typeText: UInt8 = 1
    /// A file control message (docs/PROTOCOL.md, "File transfer"): opaque bytes for `FileTransfers`.
    static let typeFile: UInt8 = 2
    static let headerBytes = 3
    static let paddingBlockBytes = 32

    /// The padded length of the record for a text of `textCount` bytes.
    static func paddedCount(textCount: Int) -> Int {
        let unpadded = headerBytes + textCount
        return (unpadded + paddingBlockBytes - 1) / paddingBlockBytes * paddingBlockBytes
    }

    /// Write the padded record for `text` at the start of `record` (guarded scratch memory that
    /// holds at least `paddedCount(textCount:)` bytes); returns the record's length.
    static func write(text: SecureBytes, type: UInt8 = typeText, into record: UnsafeMutableRawBufferPointer) -> Int {
        precondition(text.count <= Int(UInt16.max))
        let unpadded = headerBytes + text.count
        let padded = paddedCount(textCount: text.count)
        precondition(record.count >= padded, "record scratch too small")
        record[0] = type
        record[1] = UInt8(text.count >> 8)
        record[2] = UInt8(text.count & 0xFF)
        text.withUnsafeBytes { source in
            UnsafeMutableRawBufferPointer(rebasing: record[headerBytes..<unpadded]).copyMemory(from: source)
        }
        Sodium.memzero(UnsafeMutableRawBufferPointer(rebasing: record[unpadded..<padded]))
        return padded
    }

    /// What a decrypted record holds: text for the chat, or a file control message.
    enum Content {
        case text(String)
        case file([UInt8])
    }

    /// The content of a decrypted record of either type.
    static func content(of bytes: UnsafeRawBufferPointer) -> Result<Content, RecordError> {
        guard bytes.count >= headerBytes, bytes[0] == typeFile else { return text(of: bytes).map(Content.text) }
        let length = Int(bytes[1]) << 8 | Int(bytes[2])
        guard headerBytes + length <= bytes.count else { return .failure(.badLength) }
        return .success(.file(Array(bytes[headerBytes..<(headerBytes + length)])))
    }

    /// The text of a decrypted record.
    ///
    /// This is where a message leaves guarded memory: the terminal needs a Swift `String`.
    static func text(of bytes: UnsafeRawBufferPointer) -> Result<String, RecordError> {
        guard bytes.count >= headerBytes else { return .failure(.truncated) }
        guard bytes[0] == typeText else { return .failure(.unknownType(bytes[0])) }
        let length = Int(bytes[1]) << 8 | Int(bytes[2])
        guard headerBytes + length <= bytes.count else { return .failure(.badLength) }
        let textBytes = UnsafeRawBufferPointer(rebasing: bytes[headerBytes..<(headerBytes + length)])
        guard let text = UTF8Text.string(validating: textBytes) else { return .failure(.invalidUTF8) }
        return .success(text)
    }
}
