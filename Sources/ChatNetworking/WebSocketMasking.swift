import NIOCore
import NIOWebSocket

extension WebSocketFrame {
    /// The payload with the client's mask removed, eight bytes at a time.
    ///
    /// NIO's `unmaskedData` XORs one byte per iteration with a modulo and a key subscript; on the
    /// relay's forwarding path that loop was the largest single cost in a `perf` profile (6.6 % of
    /// the relay's CPU at 256-byte frames), so the relay uses this word-wise version instead.
    /// Frames with extension data (never negotiated by our relay) fall back to NIO's version.
    public var unmaskedDataWordWise: ByteBuffer {
        guard let maskKey else { return data }
        guard extensionData == nil else { return unmaskedData }
        // The payload shares its storage with the frame decoder's buffer, so unmasking it in place
        // would copy it first (a copy-on-write memmove, 2.3% of a file transfer's CPU): unmask
        // while copying instead, in one pass.
        let count = data.readableBytes
        guard count > 0 else { return ByteBuffer() }
        var unmasked = ByteBufferAllocator().buffer(capacity: count)
        data.withUnsafeReadableBytes { source in
            _ = unmasked.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { target in
                webSocketMaskCopy(source, into: target, key: maskKey)
                return count
            }
        }
        return unmasked
    }
}

/// The client's WebSocket frame encoder, in front of NIO's `WebSocketFrameEncoder` once upgraded:
/// the same bytes on the wire (RFC 6455 §5.2 header, the frame's own masking key), but the
/// payload is copied and masked in one pass, eight bytes at a time.
///
/// NIO's encoder masks one byte per iteration (with a modulo and a key subscript), after a
/// copy-on-write copy of the payload the caller still references: for a file transfer's 61 KB
/// frames that was a large share of the sender's CPU (BENCHMARKS.md, "File transfer"). NIO's
/// encoder cannot be removed from the pipeline, so this one sits on its application side and
/// writes the encoded bytes through NIO's encoder's context, that is past it, towards the socket.
/// Every frame written on the application side passes here, so their order is kept.
final class ClientFrameEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    /// NIO's encoder's context: a write there goes to the handlers between it and the socket.
    private let past: ChannelHandlerContext

    init(writingPast nioEncoder: ChannelHandlerContext) {
        past = nioEncoder
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        var payload = frame.data
        if var extensionData = frame.extensionData {
            extensionData.writeBuffer(&payload)
            payload = extensionData
        }
        var buffer = context.channel.allocator.buffer(capacity: 14 + payload.readableBytes)
        Self.writeFrame(frame, payload: payload, into: &buffer)
        past.write(wrapOutboundOut(buffer), promise: promise)
    }

    /// The frame's header then `payload` masked with the frame's key (unmasked without one).
    static func writeFrame(_ frame: WebSocketFrame, payload: ByteBuffer, into buffer: inout ByteBuffer) {
        var first = UInt8(webSocketOpcode: frame.opcode)
        if frame.fin { first |= 0x80 }
        if frame.rsv1 { first |= 0x40 }
        if frame.rsv2 { first |= 0x20 }
        if frame.rsv3 { first |= 0x10 }
        buffer.writeInteger(first)
        let maskBit: UInt8 = frame.maskKey == nil ? 0 : 0x80
        let length = payload.readableBytes
        if length <= 125 {
            buffer.writeInteger(UInt8(length) | maskBit)
        } else if length <= Int(UInt16.max) {
            buffer.writeInteger(126 | maskBit)
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(127 | maskBit)
            buffer.writeInteger(UInt64(length))
        }
        guard let maskKey = frame.maskKey else {
            buffer.writeImmutableBuffer(payload)
            return
        }
        buffer.writeBytes(maskKey)
        payload.withUnsafeReadableBytes { source in
            _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
                webSocketMaskCopy(source, into: target, key: maskKey)
                return length
            }
        }
    }
}

/// `target[i] = source[i] ^ key[i % 4]` for every byte of `source`, a word at a time.
func webSocketMaskCopy(
    _ source: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer, key: WebSocketMaskingKey
) {
    let keyWord: UInt64 = withUnsafeBytes(of: (key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3])) {
        $0.loadUnaligned(as: UInt64.self)
    }
    let count = source.count
    var index = 0
    // Bounded: `index` moves by eight, then by one, up to `count`.
    while index + 8 <= count {
        let word = source.loadUnaligned(fromByteOffset: index, as: UInt64.self)
        target.storeBytes(of: word ^ keyWord, toByteOffset: index, as: UInt64.self)
        index += 8
    }
    while index < count {
        target[index] = source[index] ^ key[index % 4]
        index += 1
    }
}
