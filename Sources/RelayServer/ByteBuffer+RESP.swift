import NIOCore

/// RESP commands written straight into the `ByteBuffer` that goes to Redis: the same bytes as
/// `RESPEncoding.command` (RESPWriterTests compares them), without its intermediate arrays.
extension ByteBuffer {
    /// `RESPEncoding.command(arguments)`.
    mutating func writeRESPCommand(_ arguments: [[UInt8]]) {
        writeRESPLength(UInt8(ascii: "*"), arguments.count)
        for argument in arguments {
            writeRESPLength(UInt8(ascii: "$"), argument.count)
            writeBytes(argument)
            writeRESPLineEnd()
        }
    }

    /// What `writeRESPCommand` will write for arguments of these byte counts.
    static func respCommandBytes(argumentBytes counts: some Sequence<Int>) -> Int {
        var total = 0
        var arguments = 0
        for count in counts {
            total += 1 + Self.decimalDigits(count) + 2 + count + 2
            arguments += 1
        }
        return total + 1 + Self.decimalDigits(arguments) + 2
    }

    /// `*3`, `$8 SPUBLISH`, `$n` and the channel `prefix` + `name`, then the payload's `$m`
    /// header: the caller writes the payload's `payloadBytes` bytes and `writeRESPLineEnd()`.
    mutating func writeSPUBLISHHeader(channelPrefix prefix: String, name: String, payloadBytes: Int) {
        writeStaticString("*3\r\n$8\r\nSPUBLISH\r\n")
        writeRESPLength(UInt8(ascii: "$"), prefix.utf8.count + name.utf8.count)
        writeString(prefix)
        writeString(name)
        writeRESPLineEnd()
        writeRESPLength(UInt8(ascii: "$"), payloadBytes)
    }

    /// A type byte, a non-negative decimal count, CRLF (`*3\r\n`, `$8\r\n`).
    mutating func writeRESPLength(_ type: UInt8, _ count: Int) {
        let digits = Self.decimalDigits(count)
        writeInteger(type)
        writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { out in
            var rest = max(0, count)
            for index in stride(from: digits - 1, through: 0, by: -1) {
                out[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            return digits
        }
        writeRESPLineEnd()
    }

    mutating func writeRESPLineEnd() {
        writeInteger(UInt16(0x0D0A))
    }

    /// Decimal digits of a count (1 for 0).
    static func decimalDigits(_ count: Int) -> Int {
        var digits = 1
        var rest = count
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }
}
