/// Strict UTF-8 to `String`, without the standard library's generic path.
///
/// `String(validating:as:)` over raw bytes runs unspecialized in the runtime (generic metadata
/// lookups on every call, about 1,000 instructions per wire string, 3% of a simulation:
/// BENCHMARKS.md). `UTF8Span(validating:)` applies the same rules (Unicode's well-formed UTF-8:
/// no overlong forms, surrogates or code points past U+10FFFF) on concrete types; the unit test
/// `UTF8TextTests` checks the two agree.
enum UTF8Text {
    /// The text of `bytes`, or nil when they are not well-formed UTF-8.
    static func string(validating bytes: UnsafeRawBufferPointer) -> String? {
        let codeUnits = bytes.assumingMemoryBound(to: UInt8.self)
        guard let span = try? UTF8Span(validating: codeUnits.span) else { return nil }
        return String(copying: span)
    }
}
