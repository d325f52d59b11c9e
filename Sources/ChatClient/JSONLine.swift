/// One JSON object on one line, built field by field in a fixed order.
///
/// Hand-written rather than Foundation's `JSONSerialization`: the field order must be stable for
/// scripts and tests, the output must never contain a raw control character, bidi override or
/// line separator (a `--json` stream printed to a terminal must be as safe as the terminal UI),
/// and the client does not otherwise need Foundation (start-up time, memory).
struct JSONLine {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var isEmpty = true

    init(event: String) {
        field("event", event)
    }

    mutating func field(_ name: String, _ value: String) {
        key(name)
        Self.appendQuoted(value, to: &bytes)
    }

    mutating func field(_ name: String, _ value: Int) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func field(_ name: String, _ value: UInt64) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func field(_ name: String, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    mutating func field(_ name: String, _ values: [UInt64]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: String(value).utf8)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// The finished line, ending in a newline.
    var line: [UInt8] {
        bytes + [UInt8(ascii: "}"), UInt8(ascii: "\n")]
    }

    private mutating func key(_ name: String) {
        if !isEmpty { bytes.append(UInt8(ascii: ",")) }
        isEmpty = false
        Self.appendQuoted(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    /// `text` as a JSON string. Controls (C0, DEL, C1), bidi controls and the line separators
    /// are written as `\uXXXX`, so decoding gives back the exact text while the stream itself
    /// stays inert on a terminal.
    static func appendQuoted(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: output.append(contentsOf: #"\""#.utf8)
            case 0x5C: output.append(contentsOf: #"\\"#.utf8)
            case 0x0A: output.append(contentsOf: #"\n"#.utf8)
            case 0x0D: output.append(contentsOf: #"\r"#.utf8)
            case 0x09: output.append(contentsOf: #"\t"#.utf8)
            case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069:
                output.append(contentsOf: "\\u".utf8)
                let hex = String(scalar.value, radix: 16)
                output.append(contentsOf: String(repeating: "0", count: 4 - hex.count).utf8)
                output.append(contentsOf: hex.utf8)
            default:
                output.append(contentsOf: String(scalar).utf8)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
