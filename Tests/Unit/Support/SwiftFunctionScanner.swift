/// Finds the bodies of `func`, `init`, `deinit` and `subscript` declarations in Swift source and
/// their length in lines, from the line of the keyword to the line of the body's closing brace.
///
/// It is a scanner, not a parser: it blanks comments and string literals (nested comments, escapes,
/// multi-line and raw strings, interpolations with strings inside), so that braces in them do not
/// count, then matches braces. A declaration without a body (a protocol requirement) has none.
/// Good enough for our own sources, which the compiler has accepted; `SourceLimitsTests` checks it
/// on a sample with every trap it knows.
enum SwiftFunctionScanner {
    struct Body: Equatable {
        /// 1-based line of the keyword.
        let line: Int
        let lineCount: Int
    }

    static func bodies(in source: String) -> [Body] {
        let code = blankingCommentsAndStrings(Array(source.utf8))
        var lineOf = [Int](repeating: 0, count: code.count + 1)
        var line = 1
        for (index, byte) in code.enumerated() {
            lineOf[index] = line
            if byte == newline { line += 1 }
        }
        lineOf[code.count] = line
        var found: [Body] = []
        for index in code.indices where isDeclarationKeyword(code, at: index) {
            guard let open = bodyStart(code, from: index), let close = matchingBrace(code, from: open) else { continue }
            found.append(Body(line: lineOf[index], lineCount: lineOf[close] - lineOf[index] + 1))
        }
        return found
    }

    private static let newline = UInt8(ascii: "\n")
    private static let keywords = ["func", "init", "deinit", "subscript"].map { Array($0.utf8) }

    private static func isIdentifier(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "_") || (byte >= 0x30 && byte <= 0x39) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A)
    }

    /// A keyword as a whole word, not a member (`.init(`).
    private static func isDeclarationKeyword(_ code: [UInt8], at index: Int) -> Bool {
        if index > 0, isIdentifier(code[index - 1]) || code[index - 1] == UInt8(ascii: ".") { return false }
        for keyword in keywords where code[index...].starts(with: keyword) {
            let end = index + keyword.count
            if end == code.count || !isIdentifier(code[end]) { return true }
        }
        return false
    }

    /// The body's `{`: the first at bracket depth 0 after the keyword; nil if the enclosing
    /// scope closes first (no body).
    private static func bodyStart(_ code: [UInt8], from index: Int) -> Int? {
        var depth = 0
        for position in index..<code.count {
            switch code[position] {
            case UInt8(ascii: "("), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: ")"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: "{") where depth == 0: return position
            case UInt8(ascii: "}") where depth == 0: return nil
            default: break
            }
        }
        return nil
    }

    private static func matchingBrace(_ code: [UInt8], from open: Int) -> Int? {
        var depth = 0
        for position in open..<code.count {
            if code[position] == UInt8(ascii: "{") { depth += 1 }
            if code[position] == UInt8(ascii: "}") {
                depth -= 1
                if depth == 0 { return position }
            }
        }
        return nil
    }

    private enum Context {
        /// Code; `parens` counts open parentheses inside a string interpolation (nil: top level).
        case code(parens: Int?)
        case string(multiline: Bool, hashes: Int)
        case blockComment(depth: Int)
    }

    /// The source with every comment and the contents of every string literal replaced by spaces
    /// (newlines kept); interpolated code stays.
    static func blankingCommentsAndStrings(_ input: [UInt8]) -> [UInt8] {
        var output = input
        var stack: [Context] = [.code(parens: nil)]
        var index = 0
        func blank(_ count: Int) {
            for offset in index..<min(index + count, input.count) where input[offset] != newline {
                output[offset] = UInt8(ascii: " ")
            }
            index += count
        }
        func at(_ text: String) -> Bool { input[index...].starts(with: Array(text.utf8)) }
        func hashes(from start: Int) -> Int {
            var count = 0
            while start + count < input.count, input[start + count] == UInt8(ascii: "#") { count += 1 }
            return count
        }
        while index < input.count {
            switch stack[stack.count - 1] {
            case let .code(parens):
                if at("//") {
                    while index < input.count, input[index] != newline { blank(1) }
                } else if at("/*") {
                    stack.append(.blockComment(depth: 1))
                    blank(2)
                } else if input[index] == UInt8(ascii: "#") || input[index] == UInt8(ascii: "\"") {
                    let count = hashes(from: index)
                    let quote = index + count
                    guard quote < input.count, input[quote] == UInt8(ascii: "\"") else {
                        index += max(count, 1)
                        continue
                    }
                    let multiline = input[quote...].starts(with: Array("\"\"\"".utf8))
                    stack.append(.string(multiline: multiline, hashes: count))
                    index = quote + (multiline ? 3 : 1)
                } else if let parens, input[index] == UInt8(ascii: "(") {
                    stack[stack.count - 1] = .code(parens: parens + 1)
                    index += 1
                } else if let parens, input[index] == UInt8(ascii: ")") {
                    if parens == 1 { stack.removeLast() } else { stack[stack.count - 1] = .code(parens: parens - 1) }
                    index += 1
                } else {
                    index += 1
                }
            case let .blockComment(depth):
                if at("/*") {
                    stack[stack.count - 1] = .blockComment(depth: depth + 1)
                    blank(2)
                } else if at("*/") {
                    if depth == 1 { stack.removeLast() } else { stack[stack.count - 1] = .blockComment(depth: depth - 1) }
                    blank(2)
                } else {
                    blank(1)
                }
            case let .string(multiline, count):
                let pounds = String(repeating: "#", count: count)
                if at("\\" + pounds + "(") {
                    blank(1 + count)
                    stack.append(.code(parens: 1))
                    index += 1
                } else if at("\\" + pounds) {
                    blank(2 + count)  // An escape: the backslash, the pounds, the escaped character.
                } else if at((multiline ? "\"\"\"" : "\"") + pounds) {
                    stack.removeLast()
                    index += (multiline ? 3 : 1) + count
                } else {
                    blank(1)
                }
            }
        }
        return output
    }
}
