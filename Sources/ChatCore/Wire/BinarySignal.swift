/// The binary form of a SIGNAL (docs/PROTOCOL.md, "Binary SIGNALs"), for connections that
/// negotiated the WebSocket subprotocol `securechat.binary`: byte 0 is the kind's length n
/// (1…32), bytes 1…n the kind (`SignalKind.isWellFormed`), the rest the payload, opaque and
/// possibly empty. No base64, no JSON: a file chunk crosses the relay a third smaller and costs
/// neither side an encoding or a scan. A SIGNAL with a `key` has no binary form (it goes as text).
///
/// Every SIGNAL has a text form too (`{"type":"SIGNAL","kind":"…","payload":"<base64>"}`): the
/// relay converts a binary SIGNAL to it for a peer that did not negotiate binary, and the
/// frame-size limit applies to that text form, so a SIGNAL fits either peer or neither.
public enum BinarySignal {
    /// The subprotocol a client offers in `Sec-WebSocket-Protocol` and a relay that speaks binary
    /// SIGNALs selects.
    public static let subprotocol = "securechat.binary"

    private static let textPrefix: StaticString = #"{"type":"SIGNAL","kind":""#
    private static let textMiddle: StaticString = #"","payload":""#
    private static let textSuffix: StaticString = #""}"#

    // MARK: Encoding

    /// The binary form of `signal`; nil when it has none (a `key`, or no payload).
    public static func encode(_ signal: Signal) -> [UInt8]? {
        guard signal.key == nil, let payload = signal.payload else { return nil }
        return payload.withUnsafeBytes { encode(kind: signal.kind, payload: $0) }
    }

    /// The binary form of a SIGNAL of `kind` carrying `payload`.
    public static func encode(kind: SignalKind, payload: UnsafeRawBufferPointer) -> [UInt8] {
        let kindBytes = kind.rawValue.utf8
        let count = 1 + kindBytes.count + payload.count
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            buffer[0] = UInt8(kindBytes.count)
            var at = 1
            for byte in kindBytes {
                buffer[at] = byte
                at += 1
            }
            if payload.count > 0 {
                UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[at...])).copyMemory(
                    from: payload)
            }
            initialized = count
        }
    }

    /// A client's own text frame in binary form: a SIGNAL with a payload and no key; nil for
    /// anything else (a JOIN, a keyed SIGNAL, bytes that do not decode), which then goes as text.
    public static func binary(fromText frame: [UInt8]) -> [UInt8]? {
        guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) else { return nil }
        return encode(signal)
    }

    // MARK: Checking and decoding

    /// The length of the kind of a well-formed binary SIGNAL, checked: `invalidKind` for a kind
    /// length of 0 or over 32 or a kind outside `^[A-Z][A-Z0-9_]{0,31}$`, `malformedBinarySignal`
    /// for an empty frame or one that ends inside its kind; `frameTooLarge` first, for a frame
    /// over the cap. Nothing is copied (the relay's check of every binary SIGNAL).
    public static func inspect(_ bytes: UnsafeRawBufferPointer, limits: WireLimits = .default)
        throws(WireError) -> Int
    {
        guard bytes.count <= limits.frameSizeMaxBytes else {
            throw .frameTooLarge(size: bytes.count, max: limits.frameSizeMaxBytes)
        }
        guard let first = bytes.first else { throw .malformedBinarySignal }
        let kindCount = Int(first)
        guard (1...SignalKind.lengthMax).contains(kindCount) else { throw .invalidKind }
        guard bytes.count > kindCount else { throw .malformedBinarySignal }
        guard SignalKind.isWellFormed(UnsafeRawBufferPointer(rebasing: bytes[1...kindCount])) else {
            throw .invalidKind
        }
        return kindCount
    }

    /// Decode a binary SIGNAL from the relay as a client does: checked as by `inspect`, and a kind
    /// this client does not know is `unknownKind`, as in a text SIGNAL.
    public static func decodeRelayMessage(_ bytes: UnsafeRawBufferPointer, limits: WireLimits = .default)
        throws(WireError) -> RelayMessage
    {
        let kindCount = try inspect(bytes, limits: limits)
        let token = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[1...kindCount]), as: UTF8.self)
        guard let kind = SignalKind(token) else { throw .invalidKind }
        guard SignalKind.known.contains(kind) else { throw .unknownKind(token) }
        return .signal(Signal(kind: kind, payload: Array(UnsafeRawBufferPointer(rebasing: bytes[(1 + kindCount)...]))))
    }

    /// Array form of `decodeRelayMessage(_:limits:)`.
    public static func decodeRelayMessage(_ bytes: [UInt8], limits: WireLimits = .default) throws(WireError)
        -> RelayMessage
    {
        let result: Result<RelayMessage, WireError> = bytes.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try decodeRelayMessage(buffer, limits: limits)) } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    // MARK: The text form

    /// The length of the text form of a binary SIGNAL; nil when `bytes` is not one (`inspect`
    /// with no cap: the text form may be over it, which is what the caller checks).
    public static func textCount(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let unlimited = WireLimits(frameSizeMaxBytes: Int.max)
        guard let kindCount = try? inspect(bytes, limits: unlimited) else { return nil }
        return textPrefix.utf8CodeUnitCount + kindCount + textMiddle.utf8CodeUnitCount
            + Base64.encodedCount(bytes.count - 1 - kindCount) + textSuffix.utf8CodeUnitCount
    }

    /// Write the text form of the binary SIGNAL `bytes` into the front of `out`; the number of
    /// bytes written, or nil (nothing usable written) when `bytes` is not a binary SIGNAL or `out`
    /// is shorter than `textCount(bytes)`.
    public static func writeText(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
        guard let count = textCount(bytes), out.count >= count else { return nil }
        let kindCount = Int(bytes[0])
        var at = 0
        func put(_ piece: UnsafeRawBufferPointer) {
            UnsafeMutableRawBufferPointer(rebasing: out[at..<(at + piece.count)]).copyMemory(from: piece)
            at += piece.count
        }
        func putText(_ piece: StaticString) {
            put(UnsafeRawBufferPointer(start: piece.utf8Start, count: piece.utf8CodeUnitCount))
        }
        putText(textPrefix)
        put(UnsafeRawBufferPointer(rebasing: bytes[1...kindCount]))
        putText(textMiddle)
        let payload = UnsafeRawBufferPointer(rebasing: bytes[(1 + kindCount)...])
        guard Base64.write(payload, into: UnsafeMutableRawBufferPointer(rebasing: out[at...])) else { return nil }
        at += Base64.encodedCount(payload.count)
        putText(textSuffix)
        return at
    }

    /// The text form of the binary SIGNAL `bytes`, or nil when it is not one.
    public static func text(_ bytes: [UInt8]) -> [UInt8]? {
        bytes.withUnsafeBytes { input -> [UInt8]? in
            guard let count = textCount(input) else { return nil }
            return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                initialized = writeText(input, into: UnsafeMutableRawBufferPointer(buffer)) ?? 0
            }
        }
    }
}
