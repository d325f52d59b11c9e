import ChatCore

/// A frame a session transmitted, as the relay takes it: decoded, and in the canonical form the
/// codec writes. Both the world checker and the one-session fuzz oracle judge frames this way.
package enum TransmittedFrame {
    /// The message (nil when the relay would refuse the frame), and what is wrong with the frame:
    /// the relay's refusal, or a form the codec would not write (the message is still returned, so
    /// that the caller goes on checking it).
    package static func check(_ frame: [UInt8]) -> (message: ClientMessage?, problem: String?) {
        let message: ClientMessage
        let inspected: ClientFrame
        do {
            inspected = try WireCodec.inspectClientFrame(frame)
            message = try WireCodec.decodeClientMessage(frame)
        } catch {
            return (nil, "transmitted a frame the relay refuses: \(error)")
        }
        // A JOIN may carry the reconnect token, which `ClientMessage` does not hold.
        let canonical = if case let .join(room, token) = inspected {
            WireCodec.encodeJoin(room, token: token)
        } else {
            WireCodec.encode(message)
        }
        return (message, canonical == frame ? nil : "transmitted a non-canonical frame")
    }
}

extension Result where Failure == WireError {
    /// `Result(catching:)` for a typed-throwing body (the standard one is untyped here).
    package init(_ body: () throws(WireError) -> Success) {
        do { self = .success(try body()) } catch { self = .failure(error) }
    }
}

extension WireCodec {
    /// `inspectClientFrame` for an array (the codec only offers the zero-copy buffer form).
    package static func inspectClientFrame(_ bytes: [UInt8]) throws(WireError) -> ClientFrame {
        let result: Result<ClientFrame, WireError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(WireError) in try WireCodec.inspectClientFrame(buffer) }
        }
        return try result.get()
    }
}
