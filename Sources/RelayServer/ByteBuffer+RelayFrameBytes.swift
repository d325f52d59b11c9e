import NIOCore
import RelayCore

/// The NIO relay's engine holds and forwards the very `ByteBuffer`s NIO read (zero-copy).
extension ByteBuffer: RelayFrameBytes {
    @inlinable
    public var relayByteCount: Int { readableBytes }

    @inlinable
    public func withRelayBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        withUnsafeReadableBytes(body)
    }

    public static func makeRelayFrame(count: Int, _ initialize: (UnsafeMutableRawBufferPointer) -> Void) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            initialize(UnsafeMutableRawBufferPointer(rebasing: out[..<count]))
            return count
        }
        return buffer
    }
}
