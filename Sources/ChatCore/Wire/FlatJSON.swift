/// A strict, bounded scanner for the one JSON shape the relay protocol uses: a single flat object
/// whose values are strings or small non-negative integers.
///
/// Why not Foundation's `JSONDecoder`: the relay parses every frame it forwards, so this is its
/// hot path, and the protocol needs things a general decoder does not give: duplicate keys
/// rejected (a general decoder silently keeps one of them, the classic parser-differential
/// attack), unknown keys rejected, nested values rejected without recursion (no stack-depth
/// attack), a hard field-count bound, and no allocation for the fields the relay only checks.
/// The grammar is small enough (RFC 8259 §2–7 restricted to one object level) to check by hand,
/// and the fuzz targets and property tests exercise it on arbitrary bytes.
@usableFromInline
struct FlatJSONObject {
    /// One scanned value. String values are kept as byte ranges into the input.
    enum Value {
        /// A string's contents (between the quotes) and whether it contains escapes.
        case string(Range<Int>, hasEscapes: Bool)
        case integer(UInt64)
    }

    struct Field {
        var key: [UInt8]
        var value: Value
    }

    /// The most fields any protocol message has, plus headroom; more is an error.
    static let fieldCountMax = 8
    /// The longest integer literal accepted (protocol integers are small counts).
    static let integerDigitsMax = 15

    private(set) var fields: [Field] = []

    /// Scan `input`, which must hold exactly one JSON object (surrounding whitespace allowed).
    init(scanning input: UnsafeRawBufferPointer) throws(WireError) {
        var scanner = Scanner(input)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "{") else {
            throw scanner.atEnd ? .malformedJSON(offset: scanner.offset, reason: .unexpectedEnd) : .notAnObject
        }
        scanner.advance()
        fields.reserveCapacity(4)
        scanner.skipWhitespace()
        if scanner.peek() == UInt8(ascii: "}") {
            scanner.advance()
        } else {
            // Bounded: each iteration consumes at least one field, and fields are capped.
            while true {
                guard fields.count < Self.fieldCountMax else { throw .tooManyFields(max: Self.fieldCountMax) }
                scanner.skipWhitespace()
                guard scanner.peek() == UInt8(ascii: "\"") else {
                    throw scanner.failure(.expectedKey)
                }
                let (keyRange, keyEscaped) = try scanner.scanString()
                let key = keyEscaped
                    ? try JSONString.unescape(input, keyRange)
                    : Array(UnsafeRawBufferPointer(rebasing: input[keyRange]))
                for existing in fields where existing.key == key {
                    throw .duplicateField(String(decoding: key, as: UTF8.self))
                }
                scanner.skipWhitespace()
                guard scanner.peek() == UInt8(ascii: ":") else { throw scanner.failure(.expectedColon) }
                scanner.advance()
                scanner.skipWhitespace()
                let value = try scanner.scanValue(fieldName: key)
                fields.append(Field(key: key, value: value))
                scanner.skipWhitespace()
                switch scanner.peek() {
                case UInt8(ascii: ","):
                    scanner.advance()
                    continue
                case UInt8(ascii: "}"):
                    scanner.advance()
                default:
                    throw scanner.failure(.expectedCommaOrEnd)
                }
                break
            }
        }
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw .malformedJSON(offset: scanner.offset, reason: .trailingData) }
    }

    /// The value of the field named `name`, if present.
    func value(_ name: StaticString) -> Value? {
        let nameBytes = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        for field in fields where field.key.elementsEqual(nameBytes) {
            return field.value
        }
        return nil
    }

    /// Throws `unknownField` for the first field whose name is not in `allowed`.
    func rejectUnknownFields(allowed: [StaticString]) throws(WireError) {
        fieldLoop: for field in fields {
            for name in allowed {
                let nameBytes = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
                if field.key.elementsEqual(nameBytes) { continue fieldLoop }
            }
            throw .unknownField(String(decoding: field.key, as: UTF8.self))
        }
    }
}

/// Byte-level cursor over the input. Every method is bounded by the input length.
private struct Scanner {
    let input: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ input: UnsafeRawBufferPointer) {
        self.input = input
    }

    var atEnd: Bool { offset >= input.count }

    func peek() -> UInt8? {
        offset < input.count ? input[offset] : nil
    }

    mutating func advance() {
        offset += 1
    }

    func failure(_ reason: WireError.JSONFailure) -> WireError {
        .malformedJSON(offset: offset, reason: atEnd ? .unexpectedEnd : reason)
    }

    mutating func skipWhitespace() {
        while offset < input.count {
            switch input[offset] {
            case 0x20, 0x09, 0x0A, 0x0D: offset += 1
            default: return
            }
        }
    }

    /// Scan a string starting at the opening quote; returns the range of its raw contents.
    mutating func scanString() throws(WireError) -> (Range<Int>, Bool) {
        precondition(peek() == UInt8(ascii: "\""))
        offset += 1
        let start = offset
        var hasEscapes = false
        while offset < input.count {
            // Eight bytes at a time (base64 payloads are most of a frame's strings): past them when
            // none stops the string, else straight to the first that does.
            if offset + 8 <= input.count {
                let word = UInt64(littleEndian: input.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                let stops = JSONString.stoppingBytes(word)
                if stops == 0 {
                    offset += 8
                    continue
                }
                offset += stops.trailingZeroBitCount / 8
            }
            let byte = input[offset]
            switch byte {
            case UInt8(ascii: "\""):
                let range = start..<offset
                offset += 1
                return (range, hasEscapes)
            case UInt8(ascii: "\\"):
                hasEscapes = true
                // Validate the escape now, so that unescaping later cannot fail on syntax.
                guard offset + 1 < input.count else { throw failure(.badEscape) }
                switch input[offset + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    offset += 2
                case UInt8(ascii: "u"):
                    guard offset + 5 < input.count else { offset = input.count; throw failure(.badEscape) }
                    for index in (offset + 2)...(offset + 5) where JSONString.hexValue(input[index]) == nil {
                        offset = index
                        throw failure(.badEscape)
                    }
                    offset += 6
                default:
                    offset += 1
                    throw failure(.badEscape)
                }
            case 0x00..<0x20:
                throw failure(.controlCharacterInString)
            default:
                offset += 1
            }
        }
        throw .malformedJSON(offset: offset, reason: .unexpectedEnd)
    }

    mutating func scanValue(fieldName: [UInt8]) throws(WireError) -> FlatJSONObject.Value {
        guard let byte = peek() else { throw failure(.unexpectedEnd) }
        switch byte {
        case UInt8(ascii: "\""):
            let (range, escaped) = try scanString()
            return .string(range, hasEscapes: escaped)
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = offset
            var value: UInt64 = 0
            while let digit = peek(), digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") {
                guard offset - start < FlatJSONObject.integerDigitsMax else {
                    throw .wrongFieldType(String(decoding: fieldName, as: UTF8.self), expected: .smallInteger)
                }
                value = value * 10 + UInt64(digit - UInt8(ascii: "0"))
                offset += 1
            }
            if input[start] == UInt8(ascii: "0") && offset - start > 1 {
                throw .malformedJSON(offset: start, reason: .badNumber)
            }
            if let next = peek(), next == UInt8(ascii: ".") || next == UInt8(ascii: "e") || next == UInt8(ascii: "E") {
                throw .wrongFieldType(String(decoding: fieldName, as: UTF8.self), expected: .smallInteger)
            }
            return .integer(value)
        case UInt8(ascii: "-"), UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "t"), UInt8(ascii: "f"),
             UInt8(ascii: "n"):
            // Valid JSON, but no protocol field takes a negative number, an object, an array, a
            // boolean or null. Nested values are refused without being descended into.
            throw .wrongFieldType(String(decoding: fieldName, as: UTF8.self), expected: .stringOrInteger)
        default:
            throw failure(.expectedValue)
        }
    }
}

/// JSON string escapes (RFC 8259 §7).
enum JSONString {
    /// The high bit of each byte of `word` (little-endian: byte 0 in the low bits) that stops a
    /// JSON string's plain run: a quote, a backslash or a control character (below 0x20). Zero when
    /// none does; otherwise the lowest flag marks exactly the first such byte (flags above it may
    /// be false: the usual bit tricks, `(x - n) & ~x & 0x80` per byte, borrow only upwards).
    /// About 2 instructions a byte in `scanString` instead of 7 (BENCHMARKS.md).
    @inline(__always)
    static func stoppingBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        let quotes = word ^ (ones &* UInt64(UInt8(ascii: "\"")))
        let backslashes = word ^ (ones &* UInt64(UInt8(ascii: "\\")))
        let zeroQuote = (quotes &- ones) & ~quotes
        let zeroBackslash = (backslashes &- ones) & ~backslashes
        let control = (word &- ones &* 0x20) & ~word
        return (zeroQuote | zeroBackslash | control) & highBits
    }

    static func hexValue(_ byte: UInt8) -> UInt16? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt16(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt16(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt16(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// Decode the escapes of an already-validated string body into UTF-8 bytes.
    /// Lone surrogates are refused: they have no UTF-8 encoding.
    static func unescape(_ input: UnsafeRawBufferPointer, _ range: Range<Int>) throws(WireError) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(range.count)
        var index = range.lowerBound
        func hex4(at position: Int) -> UInt16 {
            var value: UInt16 = 0
            for offset in 0..<4 { value = value << 4 | (hexValue(input[position + offset]) ?? 0) }
            return value
        }
        while index < range.upperBound {
            let byte = input[index]
            guard byte == UInt8(ascii: "\\") else {
                output.append(byte)
                index += 1
                continue
            }
            let escape = input[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0C)
            case UInt8(ascii: "n"): output.append(0x0A)
            case UInt8(ascii: "r"): output.append(0x0D)
            case UInt8(ascii: "t"): output.append(0x09)
            case UInt8(ascii: "u"):
                var scalarValue = UInt32(hex4(at: index))
                index += 4
                if (0xD800..<0xDC00).contains(scalarValue) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard index + 6 <= range.upperBound, input[index] == UInt8(ascii: "\\"),
                          input[index + 1] == UInt8(ascii: "u") else {
                        throw .malformedJSON(offset: index, reason: .badEscape)
                    }
                    let low = UInt32(hex4(at: index + 2))
                    guard (0xDC00..<0xE000).contains(low) else {
                        throw .malformedJSON(offset: index, reason: .badEscape)
                    }
                    index += 6
                    scalarValue = 0x10000 + ((scalarValue - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalarValue) {
                    throw .malformedJSON(offset: index, reason: .badEscape)
                }
                guard let scalar = Unicode.Scalar(scalarValue) else {
                    throw .malformedJSON(offset: index, reason: .badEscape)
                }
                output.append(contentsOf: UTF8.encode(scalar)!)
            default:
                output.append(escape)  // \" \\ \/
            }
        }
        return output
    }

    /// Append `text` as a JSON string literal (with quotes), escaping what RFC 8259 requires.
    static func appendQuoted(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                           hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
