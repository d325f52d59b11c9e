/// A RESP2/RESP3 value (the Redis serialization protocol), as the cluster relay reads Redis's
/// replies and pub/sub messages.
///
/// Why a hand-written codec: no Swift Redis client is available to this build (no package
/// registry access; the offline package set has none, docs: /work/.library/env/machines), and
/// the relay needs a small, bounded subset: commands out (arrays of bulk strings) and replies in.
/// The parser is sans-IO (bytes in, value and length out), bounded in depth, element count and
/// bulk size, never traps on input, and is fuzzed (`FuzzRESP`).
///
/// Not `indirect`: the aggregates hold their elements in an array (already on the heap), and an
/// indirect enum would box every value, an integer reply included (one allocation each).
public enum RESPValue: Hashable, Sendable {
    case simpleString([UInt8])
    case error([UInt8])
    case integer(Int64)
    case bulkString([UInt8])
    /// RESP2's null bulk string or null array, RESP3's `_`.
    case null
    case array([RESPValue])
    /// RESP3 `,` (kept as its text: the relay never computes with one).
    case double([UInt8])
    case boolean(Bool)
    /// RESP3 `(` (kept as its text).
    case bigNumber([UInt8])
    /// RESP3 `=`: the format (three bytes) and the text.
    case verbatim(format: [UInt8], text: [UInt8])
    /// RESP3 `%`, pairs in wire order.
    case map([RESPValue])
    /// RESP3 `~`.
    case set([RESPValue])
    /// RESP3 `>`: an out-of-band message (pub/sub on a RESP3 connection).
    case push([RESPValue])

    /// The text of a simple string, bulk string or verbatim string.
    public var bytes: [UInt8]? {
        switch self {
        case let .simpleString(bytes), let .bulkString(bytes): bytes
        case let .verbatim(_, text): text
        default: nil
        }
    }

    /// The elements of an array, set or push.
    public var elements: [RESPValue]? {
        switch self {
        case let .array(values), let .set(values), let .push(values): values
        default: nil
        }
    }
}

/// The outcome of parsing the front of a byte stream.
public enum RESPParse: Hashable, Sendable {
    /// One complete value, `length` bytes long.
    case value(RESPValue, length: Int)
    /// The bytes so far are a valid beginning: read more.
    case incomplete
    /// Not RESP, or over a bound: the connection must be dropped.
    case invalid(RESPParser.Failure)
}

/// Where a sharded pub/sub message (`RESPParser.pubSubMessage`) lies in the bytes it was read
/// from: its channel's and payload's bytes, and its whole length.
public struct RESPPubSubMessage: Hashable, Sendable {
    public var channel: Range<Int>
    public var payload: Range<Int>
    public var length: Int
}

/// RESP2/RESP3 parser over a byte buffer, sans-IO.
public struct RESPParser: Sendable {
    /// Why bytes are not acceptable RESP.
    public enum Failure: Error, Hashable, Sendable {
        case unknownType(UInt8)
        case badLength
        case badInteger
        case badLineEnding
        case tooDeep
        case tooLarge
        case badBoolean
    }

    /// Bounds on what one value may hold.
    public var bulkMaxBytes: Int
    public var elementsMax: Int
    public var depthMax: Int
    /// The longest simple line (`+`, `-`, `:`, ...) before its CRLF.
    public var lineMaxBytes: Int

    public init(bulkMaxBytes: Int = 1 << 20, elementsMax: Int = 1 << 16, depthMax: Int = 8, lineMaxBytes: Int = 4096) {
        self.bulkMaxBytes = bulkMaxBytes
        self.elementsMax = elementsMax
        self.depthMax = depthMax
        self.lineMaxBytes = lineMaxBytes
    }

    /// Parse one value from the front of `bytes`.
    public func parse(_ bytes: UnsafeRawBufferPointer) -> RESPParse {
        var cursor = 0
        do {
            guard let value = try value(bytes, &cursor, depth: 0) else { return .incomplete }
            return .value(value, length: cursor)
        } catch {
            return .invalid(error)
        }
    }

    /// Array form of `parse`.
    public func parse(_ bytes: [UInt8]) -> RESPParse {
        bytes.withUnsafeBytes { parse($0) }
    }

    /// The front of `bytes` when it is a complete `smessage` (a sharded pub/sub message: an array
    /// `*3` or push `>3` of the bulk strings `smessage`, channel, payload), found without building
    /// `RESPValue`s or copying the payload: the subscriber reads every cross-node SIGNAL this way.
    /// Nil for anything else, including an incomplete or invalid one: `parse` reads those (and
    /// refuses what is not RESP). Whenever this answers, `parse` reads the same three bulk strings
    /// with the same length, and every array or push of them it reads, this reads too (the fuzz
    /// target, `FuzzRESP`, checks both).
    public func pubSubMessage(_ bytes: UnsafeRawBufferPointer) -> RESPPubSubMessage? {
        guard bytes.count >= 4, bytes[0] == UInt8(ascii: "*") || bytes[0] == UInt8(ascii: ">"),
            depthMax >= 1, elementsMax >= 3
        else { return nil }
        var at = 1
        guard let count = try? lineRange(bytes, &at), Self.number(bytes, count) == 3,
            let kind = bulkRange(bytes, &at), kind.count == 8,
            UnsafeRawBufferPointer(rebasing: bytes[kind]).elementsEqual("smessage".utf8),
            let channel = bulkRange(bytes, &at), let payload = bulkRange(bytes, &at)
        else { return nil }
        return RESPPubSubMessage(channel: channel, payload: payload, length: at)
    }

    /// A complete bulk string (`$`, not null) at `at`: its body's range; nil when it is anything
    /// else, incomplete or invalid.
    private func bulkRange(_ bytes: UnsafeRawBufferPointer, _ at: inout Int) -> Range<Int>? {
        guard at < bytes.count, bytes[at] == UInt8(ascii: "$") else { return nil }
        var cursor = at + 1
        guard let line = try? lineRange(bytes, &cursor), let length = Self.number(bytes, line),
            length >= 0, length <= bulkMaxBytes, bytes.count - cursor >= Int(length) + 2
        else { return nil }
        let end = cursor + Int(length)
        guard bytes[end] == 13, bytes[end + 1] == 10 else { return nil }
        at = end + 2
        return cursor..<end
    }

    /// `integer` of `bytes[range]`, nil if it is not one.
    private static func number(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        try? integer(UnsafeRawBufferPointer(rebasing: bytes[range]))
    }

    private func value(_ bytes: UnsafeRawBufferPointer, _ cursor: inout Int, depth: Int) throws(Failure) -> RESPValue? {
        guard depth <= depthMax else { throw .tooDeep }
        guard cursor < bytes.count else { return nil }
        let type = bytes[cursor]
        var at = cursor + 1
        // A view of the line: only the text types copy it (a reply's integer or a length does not).
        guard let range = try lineRange(bytes, &at) else { return nil }
        let line = UnsafeRawBufferPointer(rebasing: bytes[range])
        let result: RESPValue?
        switch type {
        case UInt8(ascii: "+"): result = .simpleString(Array(line))
        case UInt8(ascii: "-"): result = .error(Array(line))
        case UInt8(ascii: ":"): result = .integer(try Self.integer(line))
        case UInt8(ascii: ","): result = .double(Array(line))
        case UInt8(ascii: "("): result = .bigNumber(Array(line))
        case UInt8(ascii: "_"):
            guard line.isEmpty else { throw .badLength }
            result = .null
        case UInt8(ascii: "#"):
            guard line.count == 1, line[0] == UInt8(ascii: "t") || line[0] == UInt8(ascii: "f") else {
                throw .badBoolean
            }
            result = .boolean(line[0] == UInt8(ascii: "t"))
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            result = try blob(type, length: Self.integer(line), bytes, &at)
        case UInt8(ascii: "*"), UInt8(ascii: "%"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "|"):
            result = try aggregate(type, count: Self.integer(line), bytes, &at, depth: depth)
        default:
            throw .unknownType(type)
        }
        if result != nil { cursor = at }
        return result
    }

    /// A bulk string (`$`), blob error (`!`) or verbatim string (`=`) of `length` bytes.
    private func blob(
        _ type: UInt8, length: Int64, _ bytes: UnsafeRawBufferPointer, _ at: inout Int
    ) throws(Failure) -> RESPValue? {
        if length == -1 && type == UInt8(ascii: "$") { return .null }
        guard length >= 0 else { throw .badLength }
        guard length <= bulkMaxBytes else { throw .tooLarge }
        let count = Int(length)
        guard bytes.count - at >= count + 2 else { return nil }
        guard bytes[at + count] == 13, bytes[at + count + 1] == 10 else { throw .badLineEnding }
        let body = Array(bytes[at..<(at + count)])
        at += count + 2
        switch type {
        case UInt8(ascii: "!"): return .error(body)
        case UInt8(ascii: "="):
            guard body.count >= 4, body[3] == UInt8(ascii: ":") else { throw .badLength }
            return .verbatim(format: Array(body[0..<3]), text: Array(body[4...]))
        default: return .bulkString(body)
        }
    }

    /// An array (`*`), map (`%`, `count` pairs), set (`~`), push (`>`) or attribute (`|`: its
    /// pairs are read and dropped, and the value it annotates is returned).
    private func aggregate(
        _ type: UInt8, count: Int64, _ bytes: UnsafeRawBufferPointer, _ at: inout Int, depth: Int
    ) throws(Failure) -> RESPValue? {
        if count == -1 && type == UInt8(ascii: "*") { return .null }
        guard count >= 0 else { throw .badLength }
        let paired = type == UInt8(ascii: "%") || type == UInt8(ascii: "|")
        guard count <= Int64(paired ? elementsMax / 2 : elementsMax) else { throw .tooLarge }
        let total = Int(count) * (paired ? 2 : 1)
        // Each element takes at least three bytes: a count past what is buffered is incomplete,
        // and reserving for it would let a header alone claim memory.
        var elements: [RESPValue] = []
        elements.reserveCapacity(min(total, (bytes.count - at) / 3))
        for _ in 0..<total {
            guard let element = try value(bytes, &at, depth: depth + 1) else { return nil }
            elements.append(element)
        }
        switch type {
        case UInt8(ascii: "%"): return .map(elements)
        case UInt8(ascii: "~"): return .set(elements)
        case UInt8(ascii: ">"): return .push(elements)
        case UInt8(ascii: "|"): return try value(bytes, &at, depth: depth + 1)
        default: return .array(elements)
        }
    }

    /// Where the bytes up to the next CRLF are (the CRLF is consumed); nil when no CRLF is
    /// buffered yet.
    private func lineRange(_ bytes: UnsafeRawBufferPointer, _ at: inout Int) throws(Failure) -> Range<Int>? {
        var index = at
        while index < bytes.count {
            if bytes[index] == 10 { throw .badLineEnding }
            if bytes[index] == 13 {
                guard index + 1 < bytes.count else { return nil }
                guard bytes[index + 1] == 10 else { throw .badLineEnding }
                let line = at..<index
                at = index + 2
                return line
            }
            guard index - at < lineMaxBytes else { throw .tooLarge }
            index += 1
        }
        return nil
    }

    /// A decimal integer as RESP writes it: an optional minus sign and 1-19 digits.
    static func integer(_ line: some Collection<UInt8>) throws(Failure) -> Int64 {
        var digits = line[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard (1...19).contains(digits.count) else { throw .badInteger }
        var value: Int64 = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { throw .badInteger }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(Int64(digit - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { throw .badInteger }
            value = sum
        }
        return negative ? -value : value
    }
}

/// RESP encoding: commands (arrays of bulk strings), and any value (for tests and the fuzzer's
/// round trip).
public enum RESPEncoding {
    /// A command as Redis reads it: an array of bulk strings.
    public static func command(_ arguments: [[UInt8]]) -> [UInt8] {
        var out = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            out += Array("$\(argument.count)\r\n".utf8)
            out += argument
            out += [13, 10]
        }
        return out
    }

    /// `value` in RESP3 (RESP2 for the RESP2 types).
    public static func encode(_ value: RESPValue) -> [UInt8] {
        func line(_ type: Character, _ body: [UInt8]) -> [UInt8] { Array(String(type).utf8) + body + [13, 10] }
        func blob(_ type: Character, _ body: [UInt8]) -> [UInt8] {
            Array("\(type)\(body.count)\r\n".utf8) + body + [13, 10]
        }
        func aggregate(_ type: Character, _ values: [RESPValue], pairs: Bool = false) -> [UInt8] {
            Array("\(type)\(pairs ? values.count / 2 : values.count)\r\n".utf8) + values.flatMap(encode)
        }
        switch value {
        case let .simpleString(bytes): return line("+", bytes)
        case let .error(bytes): return line("-", bytes)
        case let .integer(number): return line(":", Array(String(number).utf8))
        case let .bulkString(bytes): return blob("$", bytes)
        case .null: return Array("$-1\r\n".utf8)
        case let .array(values): return aggregate("*", values)
        case let .double(text): return line(",", text)
        case let .boolean(flag): return line("#", [flag ? UInt8(ascii: "t") : UInt8(ascii: "f")])
        case let .bigNumber(text): return line("(", text)
        case let .verbatim(format, text): return blob("=", format + [UInt8(ascii: ":")] + text)
        case let .map(values): return aggregate("%", values, pairs: true)
        case let .set(values): return aggregate("~", values)
        case let .push(values): return aggregate(">", values)
        }
    }
}
