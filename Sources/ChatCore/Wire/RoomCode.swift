/// A validated room code: `^[A-Z0-9]+$`, at most `lengthMax` characters.
///
/// Only this part of a magic-wormhole style code (`ROOM-word-word`) is ever sent to the relay.
public struct RoomCode: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The longest room code accepted.
    public static let lengthMax = 64
    /// The most peers a room holds: a chat is between two people. The relay refuses a third JOIN
    /// (`ROOM_FULL`), and a JOINED that counts this many tells a client its peer is there.
    public static let peersMax = 2

    /// Why a candidate room code was refused.
    public enum Invalid: String, Error, Hashable, Sendable {
        case empty = "empty"
        case tooLong = "longer than 64 characters"
        case badCharacter = "only A-Z and 0-9 are allowed"
    }

    /// The code's characters (ASCII `A-Z0-9` only).
    public let value: String

    /// Validate `text` as a room code.
    public init(_ text: String) throws(Invalid) {
        let utf8 = Array(text.utf8)
        let result: Result<RoomCode, Invalid> = utf8.withUnsafeBytes { buffer in
            do throws(Invalid) { return .success(try RoomCode(validating: buffer)) } catch { return .failure(error) }
        }
        self = try result.get()
    }

    /// Validate raw bytes as a room code (no allocation on failure).
    public init(validating bytes: UnsafeRawBufferPointer) throws(Invalid) {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= Self.lengthMax else { throw .tooLong }
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): continue
            default: throw .badCharacter
            }
        }
        value = String(decoding: bytes, as: UTF8.self)
    }

    public static func < (lhs: RoomCode, rhs: RoomCode) -> Bool {
        lhs.value < rhs.value
    }

    public var description: String { value }
}
