import ChatCore

/// A frame a session transmitted, as the relay takes it: decoded, and in the canonical form the
/// codec writes. Both the world checker and the one-session fuzz oracle judge frames this way.
enum TransmittedFrame {
    /// The message (nil when the relay would refuse the frame), and what is wrong with the frame:
    /// the relay's refusal, or a form the codec would not write (the message is still returned, so
    /// that the caller goes on checking it).
    static func check(_ frame: [UInt8]) -> (message: ClientMessage?, problem: String?) {
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
