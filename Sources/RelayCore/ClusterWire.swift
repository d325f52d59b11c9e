import ChatCore

/// The messages nodes send each other through their Redis pub/sub channels, sans-IO. Text headers
/// (the Lua scripts write the notices), decimal connection numbers, a node identity
/// (`ClusterNodeName.isValidIdentity`):
///
/// - `F <to> <partner-connection> <partner-node>`: `to` has a new room-mate (`peerFound`)
/// - `L <to> <partner-connection> <partner-node>`: `to`'s room-mate left (`peerLeft`)
/// - `E <to>`: `to` lost its seat to its own token's JOIN elsewhere (`evicted`)
/// - `S <to> <from-connection> <from-node>\n` then the SIGNAL frame's bytes, untouched
/// - `B <to> <from-connection> <from-node>\n` then a binary SIGNAL's bytes, untouched (the
///   receiving node converts it to text for a client that did not negotiate binary)
///
/// A payload is only ever a client's SIGNAL (ciphertext and routing fields); Redis relays it and
/// stores nothing. Anything that does not parse is dropped (and counted by the shell).
public enum ClusterWire {
    /// A SIGNAL's header is shorter than this (`parse` refuses a longer one); a pub/sub message is
    /// at most this plus a frame.
    public static let signalHeaderMaxBytes = 200

    /// A parsed message; for a signal, the frame's bytes start at `bodyOffset`.
    public enum Message: Hashable, Sendable {
        case notice(ClusterNotice)
        case signal(to: UInt64, from: ClusterPeer, bodyOffset: Int, binary: Bool)
    }

    /// The header of a SIGNAL for `to` from local connection `from` (the frame follows it);
    /// `binary`: a binary SIGNAL's.
    public static func signalHeader(to: ClusterPeer, from: ClusterPeer, binary: Bool = false) -> [UInt8] {
        let count = signalHeaderLength(to: to, from: from)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            _ = writeSignalHeader(to: to, from: from, binary: binary, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// How long `signalHeader(to:from:)` is.
    public static func signalHeaderLength(to: ClusterPeer, from: ClusterPeer) -> Int {
        5 + decimalDigits(to.connection) + decimalDigits(from.connection) + from.node.utf8.count
    }

    /// `signalHeader(to:from:)` written into the front of `out` (the shell writes it straight into
    /// the `SPUBLISH` command's buffer, no array in between); false, and nothing written, if `out`
    /// is shorter than `signalHeaderLength(to:from:)`.
    public static func writeSignalHeader(
        to: ClusterPeer, from: ClusterPeer, binary: Bool = false, into out: UnsafeMutableRawBufferPointer
    ) -> Bool {
        guard out.count >= signalHeaderLength(to: to, from: from) else { return false }
        var at = 0
        func put(_ number: UInt64) {
            let digits = decimalDigits(number)
            var rest = number
            for index in stride(from: at + digits - 1, through: at, by: -1) {
                out[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            at += digits
        }
        out[0] = binary ? UInt8(ascii: "B") : UInt8(ascii: "S")
        out[1] = UInt8(ascii: " ")
        at = 2
        put(to.connection)
        out[at] = UInt8(ascii: " ")
        at += 1
        put(from.connection)
        out[at] = UInt8(ascii: " ")
        at += 1
        for byte in from.node.utf8 {
            out[at] = byte
            at += 1
        }
        out[at] = 10
        return true
    }

    /// The number of decimal digits of `number` (1 for 0).
    static func decimalDigits(_ number: UInt64) -> Int {
        var digits = 1
        var rest = number
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }

    /// The text of a notice (the scripts write the same; tests and the shell's direct
    /// PEER_LEFT use this).
    public static func encode(_ notice: ClusterNotice) -> [UInt8] {
        switch notice {
        case let .peerFound(to, partner): Array("F \(to) \(partner.connection) \(partner.node)".utf8)
        case let .peerLeft(to, partner): Array("L \(to) \(partner.connection) \(partner.node)".utf8)
        case let .evicted(to): Array("E \(to)".utf8)
        }
    }

    /// Parse one pub/sub message; nil when it is not one of the above.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Message? {
        guard bytes.count >= 3, bytes[1] == UInt8(ascii: " ") else { return nil }
        let kind = bytes[0]
        // The header ends at the first newline (signals) or at the end (notices); it is short.
        var end = 2
        while end < bytes.count, bytes[end] != 10, end < signalHeaderMaxBytes { end += 1 }
        guard end < signalHeaderMaxBytes else { return nil }
        let fields = bytes[2..<end].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        switch kind {
        case UInt8(ascii: "E"):
            guard end == bytes.count, fields.count == 1, let to = number(fields[0]) else { return nil }
            return .notice(.evicted(to: to))
        case UInt8(ascii: "F"), UInt8(ascii: "L"), UInt8(ascii: "S"), UInt8(ascii: "B"):
            guard fields.count == 3, let to = number(fields[0]), let connection = number(fields[1]) else { return nil }
            let node = String(decoding: fields[2], as: UTF8.self)
            guard ClusterNodeName.isValidIdentity(node) else { return nil }
            let peer = ClusterPeer(node: node, connection: connection)
            if kind == UInt8(ascii: "S") || kind == UInt8(ascii: "B") {
                guard end < bytes.count else { return nil }
                return .signal(to: to, from: peer, bodyOffset: end + 1, binary: kind == UInt8(ascii: "B"))
            }
            guard end == bytes.count else { return nil }
            let found = kind == UInt8(ascii: "F")
            return .notice(found ? .peerFound(to: to, partner: peer) : .peerLeft(to: to, partner: peer))
        default:
            return nil
        }
    }

    /// Array form of `parse`.
    public static func parse(_ bytes: [UInt8]) -> Message? {
        bytes.withUnsafeBytes { parse($0) }
    }

    /// 1-20 decimal digits that fit a UInt64.
    static func number(_ digits: Slice<UnsafeRawBufferPointer>) -> UInt64? {
        guard (1...20).contains(digits.count) else { return nil }
        var value: UInt64 = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }

    /// The Redis key of a room: `sc:` and the first 64 bits of the room code's BLAKE2b in
    /// unpadded base64url (11 characters; so Redis and its operator see no room code, only a hash
    /// of it; see docs/RELAY.md for what that hides). Two rooms share a key only by a 64-bit
    /// collision (billions of rooms at once). No hash tag: a room is one key, hashed whole to its
    /// slot on a Redis Cluster. 14 bytes, not 21 as `sc:{<16 hex>}`: Redis stores a key of at
    /// most 14 bytes in a 16-byte allocation, a longer one in 32 (docs/RELAY.md, "What each holds").
    /// No `:` after the prefix, so never a node key (`sc:node:…`).
    public static func roomKey(_ room: RoomCode) -> String {
        let hash = Digest.blake2b(Array(room.value.utf8), outputByteCount: 16).prefix(8)
        return "sc:" + base64URL(Array(hash))
    }

    /// What Redis stores of a reconnect token: the first 64 bits of its BLAKE2b, as 8 raw bytes
    /// (empty for no token). Redis never holds a token that would take a seat; a seat's two tokens
    /// are compared, so 64 bits never collide in practice, and finding a 128-bit token with a given
    /// 64-bit hash within the grace period is out of reach. Raw bytes, not 16 hex digits: the
    /// scripts store them as they come (MessagePack strings are binary-safe), 16 bytes less a room.
    public static func tokenHash(_ token: ReconnectToken?) -> [UInt8] {
        guard let token else { return [] }
        return Array(Digest.blake2b(Array(token.hex.utf8), outputByteCount: 16).prefix(8))
    }

    /// The key whose presence (with a TTL) says a node is alive.
    public static func nodeKeyPrefix() -> String { "sc:node:" }
    /// The pub/sub channel of a node.
    public static func channelPrefix() -> String { "sc:ch:" }

    /// Unpadded base64url (RFC 4648 section 5): printable, no `{`, `}`, `:` or glob characters.
    static func base64URL(_ bytes: [UInt8]) -> String {
        let digits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out = [UInt8]()
        out.reserveCapacity((bytes.count * 8 + 5) / 6)
        var bits: UInt32 = 0
        var count = 0
        for byte in bytes {
            bits = bits << 8 | UInt32(byte)
            count += 8
            while count >= 6 {
                count -= 6
                out.append(digits[Int(bits >> UInt32(count) & 0x3F)])
            }
        }
        if count > 0 { out.append(digits[Int(bits << UInt32(6 - count) & 0x3F)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
