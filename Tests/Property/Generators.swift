import ChatCore
import PropertyBased

/// Generators for protocol values. Each is built from integer and array generators, so that
/// shrinking works on the underlying numbers: a failing message shrinks towards short rooms,
/// short payloads and the first enum cases.
enum Generators {
    static let roomAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    static let kindAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

    /// Any legal room code (1...64 characters of A-Z0-9).
    static let room = Gen<Int>.int(in: 0...35).array(of: 1...RoomCode.lengthMax)
        .map { indices in try! RoomCode(String(indices.map { roomAlphabet[$0] })) }

    /// Any well-formed SIGNAL kind: `^[A-Z][A-Z0-9_]{0,31}$`, known ones included often.
    static let kind = zip(Gen<Int>.int(in: 0...9), Gen<Int>.int(in: 0...25), Gen<Int>.int(in: 0...36).array(of: 0...31))
        .map { pick, first, rest -> SignalKind in
            if pick < SignalKind.known.count { return SignalKind.known[pick] }
            return SignalKind(String([kindAlphabet[first]] + rest.map { kindAlphabet[$0] }))!
        }

    static let bytes = Gen<UInt8>.value(in: 0...255).array(of: 0...300)

    static let signal = zip(kind, bytes.optional, bytes.optional)
        .map { kind, payload, key in Signal(kind: kind, payload: payload, key: key) }

    static let clientMessage = zip(Gen.bool, room, signal)
        .map { isJoin, room, signal -> ClientMessage in isJoin ? .join(room) : .signal(signal) }

    /// Text of up to 60 Unicode scalars from the whole range (surrogates become U+FFFD), so at
    /// most 240 UTF-8 bytes: within an ERROR message's 256-byte cap.
    static let text = Gen<UInt32>.value(in: 0...0x10FFFF).array(of: 0...60)
        .map { values in
            var scalars = String.UnicodeScalarView()
            for value in values { scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}") }
            return String(scalars)
        }

    /// Any relay message; SIGNALs carry a kind a client knows (it refuses the others).
    static let relayMessage = zip(Gen<Int>.int(in: 0...4), room, Gen<Int>.int(in: 1...2),
                                  Gen<Int>.int(in: 0...(SignalKind.known.count - 1)), bytes.optional, bytes.optional,
                                  Gen<Int>.int(in: 0...(RelayErrorCode.allCases.count - 1)), text)
        .map { which, room, peers, kind, payload, key, code, message -> RelayMessage in
            switch which {
            case 0: .joined(room: room, peers: peers)
            case 1: .peerFound
            case 2: .peerLeft
            case 3: .signal(Signal(kind: SignalKind.known[kind], payload: payload, key: key))
            default: .error(code: RelayErrorCode.allCases[code], message: message)
            }
        }

    /// Byte edits to apply to a valid frame: (position, new byte, kind of edit).
    static let edits = zip(Gen<Int>.int(in: 0...4095), Gen<UInt8>.value(in: 0...255), Gen<Int>.int(in: 0...3))
        .array(of: 1...6)
}

/// Apply byte edits (overwrite, insert, delete, truncate) to a frame.
func mutate(_ frame: [UInt8], _ edits: [(Int, UInt8, Int)]) -> [UInt8] {
    var bytes = frame
    for (position, value, kind) in edits {
        let index = bytes.isEmpty ? 0 : position % bytes.count
        switch kind {
        case 0 where !bytes.isEmpty: bytes[index] = value
        case 1: bytes.insert(value, at: index)
        case 2 where !bytes.isEmpty: bytes.remove(at: index)
        default: bytes = Array(bytes.prefix(index))
        }
    }
    return bytes
}
