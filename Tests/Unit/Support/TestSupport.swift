import ChatCore
import Foundation

/// Test helpers shared by the unit tests.
enum TestVectors {
    /// The directory holding this target's vector files (found from this source file, so the tests
    /// run from any checkout without resource bundling).
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Vectors")

    static func json(_ name: String) throws -> Any {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try JSONSerialization.jsonObject(with: data)
    }

    static func hex(_ text: String) -> [UInt8] {
        guard let bytes = Hex.decode(text) else { preconditionFailure("bad hex in a vector: \(text)") }
        return bytes
    }
}

extension SecureBytes {
    /// A copy of the bytes in an ordinary array: for assertions in tests only.
    var testCopy: [UInt8] { withUnsafeBytes { Array($0) } }
}

extension Array where Element == UInt8 {
    var utf8String: String { String(decoding: self, as: UTF8.self) }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
