extension Array where Element == UInt8 {
    /// `withUnsafeBytes` that keeps a typed error typed (the standard one is `rethrows`, which
    /// erases `throws(E)` to `any Error`).
    @inlinable
    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = withUnsafeBytes { buffer in
            do throws(E) { return .success(try body(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
