import NIOCore

/// The load generator's messages: original-protocol SIGNAL frames whose payload starts with a
/// 24-character base64 header (sequence number and intended send time) followed by filler.
///
/// Nothing here depends on our relay: JOIN and SIGNAL are the original design's §5.2 frames, and
/// received frames are searched for `"payload"` rather than parsed at fixed offsets, so a relay
/// that re-serializes JSON (spaces, key order) is measured just as well.
enum BenchWire {
    /// `{"type":"SIGNAL","kind":"MSG","payload":"` … `"}`
    static let prefix = Array(#"{"type":"SIGNAL","kind":"MSG","payload":""#.utf8)
    static let suffix = Array(#""}"#.utf8)
    /// 18 header bytes encode to exactly 24 base64 characters, so no padding sits mid-payload.
    static let headerBytes = 18
    static let headerCharacters = 24
    /// The smallest frame that carries a header.
    static var frameBytesMin: Int { prefix.count + headerCharacters + suffix.count }

    /// The filler characters that bring a frame to `frameBytes` (rounded down to whole base64 quads).
    static func filler(frameBytes: Int) -> [UInt8] {
        precondition(frameBytes >= frameBytesMin, "frames are at least \(frameBytesMin) bytes")
        let fillerCharacters = (frameBytes - frameBytesMin) / 4 * 4
        return [UInt8](repeating: UInt8(ascii: "A"), count: fillerCharacters)
    }

    /// The JOIN frame for `room` (§5.2).
    static func join(room: String) -> ByteBuffer {
        ByteBuffer(string: #"{"type":"JOIN","room":"\#(room)"}"#)
    }

    /// One SIGNAL frame with `sequence` and `intendedNanoseconds` in its header.
    static func signal(
        sequence: UInt64, intendedNanoseconds: UInt64, filler: [UInt8], allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: prefix.count + headerCharacters + filler.count + suffix.count)
        buffer.writeBytes(prefix)
        var header = [UInt8](repeating: 0, count: headerBytes)
        for index in 0..<8 {
            header[index] = UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(index)))
            header[8 + index] = UInt8(truncatingIfNeeded: intendedNanoseconds >> (8 * UInt64(index)))
        }
        appendBase64(header, to: &buffer)
        buffer.writeBytes(filler)
        buffer.writeBytes(suffix)
        return buffer
    }

    /// What a received text frame is, as far as the load generator cares.
    enum Inbound: Equatable {
        case signal(sequence: UInt64, intendedNanoseconds: UInt64)
        case peerFound
        case error
        case other
    }

    static func classify(_ frame: ByteBuffer) -> Inbound {
        frame.withUnsafeReadableBytes { bytes in
            if let payloadStart = valueStart(of: payloadKey, in: bytes) {
                guard payloadStart + headerCharacters <= bytes.count,
                    let header = decodeBase64(
                        UnsafeRawBufferPointer(rebasing: bytes[payloadStart..<(payloadStart + headerCharacters)]))
                else { return .other }
                var sequence: UInt64 = 0
                var intended: UInt64 = 0
                for index in 0..<8 {
                    sequence |= UInt64(header[index]) << (8 * UInt64(index))
                    intended |= UInt64(header[8 + index]) << (8 * UInt64(index))
                }
                return .signal(sequence: sequence, intendedNanoseconds: intended)
            }
            if contains(peerFound, in: bytes) { return .peerFound }
            if contains(errorType, in: bytes) { return .error }
            return .other
        }
    }

    private static let payloadKey = Array(#""payload""#.utf8)
    private static let peerFound = Array("PEER_FOUND".utf8)
    private static let errorType = Array(#""ERROR""#.utf8)

    /// The offset just after the opening quote of `key`'s string value.
    private static func valueStart(of key: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let keyStart = find(key, in: bytes) else { return nil }
        var index = keyStart + key.count
        // Skip whitespace and the colon (bounded by the frame).
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: ":") {
            index += 1
        }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        return index + 1
    }

    private static func contains(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer) -> Bool {
        find(needle, in: bytes) != nil
    }

    private static func find(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= needle.count, let first = needle.first else { return nil }
        var index = 0
        while index <= bytes.count - needle.count {
            if bytes[index] == first {
                var matched = true
                for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                    matched = false
                    break
                }
                if matched { return index }
            }
            index += 1
        }
        return nil
    }

    // Hand-written base64 for 18 bytes: the load generator must not allocate per message more
    // than it has to, and ChatCore's codec is not a dependency a protocol-only tool should need.
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static func appendBase64(_ bytes: [UInt8], to buffer: inout ByteBuffer) {
        precondition(bytes.count % 3 == 0)
        var index = 0
        while index < bytes.count {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            buffer.writeInteger(alphabet[Int(value >> 18 & 63)])
            buffer.writeInteger(alphabet[Int(value >> 12 & 63)])
            buffer.writeInteger(alphabet[Int(value >> 6 & 63)])
            buffer.writeInteger(alphabet[Int(value & 63)])
            index += 3
        }
    }

    private static func decodeBase64(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(text.count / 4 * 3)
        var index = 0
        while index < text.count {
            var value: UInt32 = 0
            for offset in 0..<4 {
                guard let sextet = sextet(text[index + offset]) else { return nil }
                value = value << 6 | UInt32(sextet)
            }
            output.append(UInt8(truncatingIfNeeded: value >> 16))
            output.append(UInt8(truncatingIfNeeded: value >> 8))
            output.append(UInt8(truncatingIfNeeded: value))
            index += 4
        }
        return output
    }

    private static func sextet(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}
