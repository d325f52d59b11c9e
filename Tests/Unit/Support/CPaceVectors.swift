import Foundation
import Testing

/// The draft's ristretto255 vectors, from both copies in `Vectors/`: the JSON (key
/// `G_Coffee25519`, plus `G_Coffee25519_points`) and the Markdown appendix, which alone has the
/// intermediate values (generator string, its hash, DSI_ISK, the ISK hash inputs).
struct CPaceVectors {
    let json: [String: String]
    let points: [String: Any]
    let markdown: String

    static func load() throws -> CPaceVectors {
        let root = try #require(TestVectors.json("cpace-testvectors.json") as? [String: Any])
        let json = try #require(root["G_Coffee25519"] as? [String: String])
        let points = try #require(root["G_Coffee25519_points"] as? [String: Any])
        let markdown = try String(
            contentsOf: TestVectors.directory.appendingPathComponent("cpace-ristretto255-vectors.md"), encoding: .utf8)
        return CPaceVectors(json: json, points: points, markdown: markdown)
    }

    /// A value of the JSON vector, decoded from hex.
    func value(_ key: String) throws -> [UInt8] {
        TestVectors.hex(try #require(json[key], "vector has no \(key)"))
    }

    /// A value of `G_Coffee25519_points` (a nested key path such as ["Valid", "s"]).
    func point(_ path: String...) throws -> [UInt8] {
        var node: Any = points
        for key in path {
            node = try #require((node as? [String: Any])?[key], "points vector has no \(path)")
        }
        return TestVectors.hex(try #require(node as? String))
    }

    /// The hex value printed under `label` in the Markdown, searching from the heading `section`.
    ///
    /// The appendix prints a label, a "(length: N bytes)" note (on the label's line or the next)
    /// and then the hex in lines of up to 56 digits; the stated length is checked too.
    func markdownValue(section: String, label: String) throws -> [UInt8] {
        let sectionRange = try #require(markdown.range(of: section), "no section \(section)")
        let labelRange = try #require(
            markdown.range(of: label, range: sectionRange.upperBound..<markdown.endIndex), "no \(label) in \(section)")
        let lines = markdown[labelRange.upperBound...].split(separator: "\n", omittingEmptySubsequences: false)
        var statedLength: Int?
        var hex = ""
        for line in lines.prefix(12) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let isHex = !trimmed.isEmpty && trimmed.allSatisfy(\.isHexDigit)
            if isHex {
                hex += trimmed
            } else if !hex.isEmpty {
                break  // The value ended; whatever follows belongs to the next label.
            } else if let match = trimmed.range(of: #"\(length: (\d+) bytes\)"#, options: .regularExpression) {
                statedLength = Int(trimmed[match].filter(\.isNumber))
            }
        }
        let bytes = TestVectors.hex(hex)
        #expect(!bytes.isEmpty, "no hex under \(label)")
        if let statedLength { #expect(bytes.count == statedLength, "\(label): stated length") }
        return bytes
    }
}
