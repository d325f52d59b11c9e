import ChatCore
import RelayCore
import Testing

/// What a cluster node stores in Redis per room: the room key and the token hash (Redis memory per
/// room, docs/RELAY.md "What each holds"), against the 64 bits they carried before.
@Suite("Cluster: room keys and token hashes as Redis stores them")
struct ClusterEncodingTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test("A room key is sc: and 64 bits of the code's BLAKE2b in 11 base64url characters: 14 bytes, never a node key")
    func roomKey() throws {
        let room = try RoomCode("7GUITARIST")
        let key = ClusterWire.roomKey(room)
        #expect(key.utf8.count == 14, "\(key)")
        #expect(key.hasPrefix("sc:") && !key.dropFirst(3).contains(":") && !key.contains("{"), "\(key)")
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        #expect(key.dropFirst(3).allSatisfy(alphabet.contains), "\(key)")
        // The same 64 bits as before (`sc:{<16 hex>}`), in base64url: 66 bits, the last 2 zero.
        let hash = Digest.blake2b(Self.bytes(room.value), outputByteCount: 16).prefix(8)
        let bits = hash.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        var decoded: UInt128 = 0
        for character in key.dropFirst(3).utf8 { decoded = decoded << 6 | UInt128(Self.base64URLValue(character)) }
        #expect(decoded & 0b11 == 0)
        #expect(decoded >> 2 == UInt128(bits))
        #expect(ClusterWire.roomKey(try RoomCode("7GUITARISTS")) != key)
        #expect(ClusterWire.roomKey(room) == key)
    }

    static func base64URLValue(_ character: UInt8) -> Int {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): Int(character - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): Int(character - UInt8(ascii: "a")) + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(character - UInt8(ascii: "0")) + 52
        case UInt8(ascii: "-"): 62
        default: 63
        }
    }

    @Test("A token hash is the first 8 bytes of the token's BLAKE2b, raw; no token is empty")
    func tokenHash() {
        let token = ReconnectToken(high: 0x0123_4567_89AB_CDEF, low: 42)
        let hash = ClusterWire.tokenHash(token)
        #expect(hash == Array(Digest.blake2b(Self.bytes(token.hex), outputByteCount: 16).prefix(8)))
        #expect(hash.count == 8)
        #expect(ClusterWire.tokenHash(nil).isEmpty)
        #expect(ClusterWire.tokenHash(ReconnectToken(high: 0x0123_4567_89AB_CDEF, low: 43)) != hash)
    }
}
