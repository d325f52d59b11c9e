/// Reads structured values from fuzzer bytes, the way LLVM's `FuzzedDataProvider` does.
///
/// Every read is bounded by the input: at the end of the input a read returns nil (or a shorter
/// chunk), so a harness driven by a reader always terminates. Nothing is ever read twice.
public struct FuzzReader {
    private let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = Array(bytes)
    }

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var isAtEnd: Bool { offset >= bytes.count }

    /// The next byte, or nil at the end.
    public mutating func byte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// A big-endian 16-bit value; missing bytes read as zero (so a truncated input still decodes).
    public mutating func uint16() -> UInt16 {
        let high = UInt16(byte() ?? 0)
        let low = UInt16(byte() ?? 0)
        return high << 8 | low
    }

    /// A chunk prefixed by its 16-bit length, at most `maxLength` bytes, and never more than remain.
    public mutating func chunk(maxLength: Int) -> [UInt8] {
        precondition(maxLength >= 0)
        let wanted = min(Int(uint16()), maxLength, bytes.count - min(offset, bytes.count))
        defer { offset += wanted }
        return Array(bytes[offset..<(offset + wanted)])
    }
}

/// Builds inputs in the format `FuzzReader` reads (seed corpora and tests write inputs with it).
public struct FuzzWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func byte(_ value: UInt8) {
        bytes.append(value)
    }

    public mutating func uint16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    public mutating func chunk(_ value: [UInt8]) {
        precondition(value.count <= Int(UInt16.max))
        uint16(UInt16(value.count))
        bytes.append(contentsOf: value)
    }
}

/// `precondition` that keeps its message in optimized builds (at -O Swift drops precondition
/// messages), so that a fuzzer crash names the invariant that broke. It traps in every build.
package func require(
    _ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line
) {
    if !condition { fatalError(message(), file: file, line: line) }
}
