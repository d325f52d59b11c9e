import Foundation
import Testing
import TestSupport

/// The coding standard's limit on function length, checked on ChatCore (the sans-IO core): no
/// `func`, `init`, `deinit` or `subscript` body over 70 lines.
@Suite("Source limits", .cpuBound)
struct SourceLimitsTests {
    static let functionLinesMax = 70
    /// Sources/ChatCore, found from this file (Tests/Unit/SourceLimitsTests.swift).
    static let chatCore = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/ChatCore")

    @Test("No function in ChatCore is over 70 lines")
    func functionLength() throws {
        let enumerator = try #require(FileManager.default.enumerator(at: Self.chatCore, includingPropertiesForKeys: nil))
        let files = enumerator.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
        #expect(files.count >= 20, "ChatCore's sources were found at \(Self.chatCore.path)")
        var tooLong: [String] = []
        for file in files.sorted(by: { $0.path < $1.path }) {
            let bodies = SwiftFunctionScanner.bodies(in: try String(contentsOf: file, encoding: .utf8))
            for body in bodies where body.lineCount > Self.functionLinesMax {
                tooLong.append("\(file.lastPathComponent):\(body.line): \(body.lineCount) lines")
            }
        }
        #expect(tooLong.isEmpty, "split these (at most \(Self.functionLinesMax) lines): \(tooLong)")
    }

    @Test("The scanner measures bodies, whatever braces strings and comments hold")
    func scannerSelfCheck() {
        let filler = (0..<69).map { "        let x\($0) = \"}\" // }" }.joined(separator: "\n")
        let source = """
            struct S {
                func long() {
            \(filler)
                }
                init?(x: Int) { _ = S.init(x: 1) }
                func call() -> String { let c = { #"}"# + "\\"}\\(["}"].joined())" }; return c() }
                /* } /* nested } */ { */
                subscript(index: Int) -> Int {
                    let text = \"\"\"
                        }}} \\(index) "}"
                        \"\"\"
                    return text.count
                }
                deinit {}
            }
            protocol P {
                func required()
            }
            """
        let bodies = SwiftFunctionScanner.bodies(in: source)
        #expect(bodies == [
            .init(line: 2, lineCount: 71), .init(line: 73, lineCount: 1), .init(line: 74, lineCount: 1),
            .init(line: 76, lineCount: 6), .init(line: 82, lineCount: 1),
        ])
    }
}
