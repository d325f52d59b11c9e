/// The relay's proof that a JOIN comes from the peer that held a seat: 128 random bits the relay
/// draws when a peer first takes a seat, sends in `JOINED`, and accepts back in a `JOIN` to give
/// the seat back during its grace period (docs/PROTOCOL.md, "Seat reservation").
///
/// Opaque to the client, which keeps it in memory only and presents it when it reconnects. It is
/// random, not derived from anything secret, so knowing it tells the relay (or anyone) nothing
/// about the chat; it only lets its holder take back its own seat. On the wire: 32 lowercase
/// hexadecimal digits.
public struct ReconnectToken: Hashable, Comparable, Sendable {
    /// The number of hexadecimal digits on the wire.
    public static let hexLength = 32

    /// The first and last 64 bits.
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh token from `entropy` (the relay's `SystemEntropy`; the simulator's seeded source).
    public init(entropy: any EntropySource) {
        high = entropy.nextUInt64()
        low = entropy.nextUInt64()
    }

    /// Parse exactly 32 lowercase hexadecimal digits; nil for anything else (no allocation).
    public init?(hex bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.hexLength else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            let digit: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
            default: return nil
            }
            if index < 16 { high = high << 4 | digit } else { low = low << 4 | digit }
        }
        self.high = high
        self.low = low
    }

    /// Parse a hexadecimal string (tests and tools).
    public init?(hex text: String) {
        var bytes = Array(text.utf8)
        guard let token = bytes.withUnsafeMutableBytes({ ReconnectToken(hex: UnsafeRawBufferPointer($0)) }) else {
            return nil
        }
        self = token
    }

    /// The 32 lowercase hexadecimal digits.
    public var hex: String {
        var bytes: [UInt8] = []
        appendHex(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Append the 32 lowercase hexadecimal digits to `output`.
    public func appendHex(to output: inout [UInt8]) {
        let digits = Array("0123456789abcdef".utf8)
        for word in [high, low] {
            for shift in stride(from: 60, through: 0, by: -4) {
                output.append(digits[Int((word >> UInt64(shift)) & 0xF)])
            }
        }
    }

    public static func < (lhs: ReconnectToken, rhs: ReconnectToken) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}
