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
    static let relayMessage = zip(Gen<Int>.int(in: 0...5), room, Gen<Int>.int(in: 1...2),
                                  Gen<Int>.int(in: 0...(SignalKind.known.count - 1)), bytes.optional, bytes.optional,
                                  Gen<Int>.int(in: 0...(RelayErrorCode.allCases.count - 1)), text)
        .map { which, room, peers, kind, payload, key, code, message -> RelayMessage in
            switch which {
            case 0: .joined(room: room, peers: peers)
            case 1: .peerFound
            case 2: .peerLeft
            case 3: .signal(Signal(kind: SignalKind.known[kind], payload: payload, key: key))
            case 4: .joinedWithToken(room: room, peers: peers, token: ReconnectToken(
                high: UInt64(payload?.count ?? 0) << 32 | UInt64(code), low: UInt64(key?.count ?? 0) &* 0x9E37_79B9))
            default: .error(code: RelayErrorCode.allCases[code], message: message)
            }
        }

    // MARK: At and past the caps (where the fuzzers found bugs)

    /// Scalars of every UTF-8 width (1 to 4 bytes), combining marks among them (one Character
    /// can hold any number of them), none that JSON must escape.
    static let scalarPool: [Unicode.Scalar] = ["a", "Z", "7", " ", "\u{E9}", "\u{301}", "\u{308}", "\u{20AC}",
                                              "\u{FFFD}", "\u{1F600}", "\u{10FFFD}"]

    /// Text of `budget` UTF-8 bytes or up to 3 fewer, built from a repeating pick of `scalarPool`.
    static func text(bytes budget: Int, picks: [Int]) -> String {
        var scalars = String.UnicodeScalarView()
        var count = 0
        // Bounded by the budget: every pass adds at least one byte or stops.
        for index in 0..<budget {
            let scalar = scalarPool[picks[index % picks.count]]
            guard count + UTF8.width(scalar) <= budget else { break }
            count += UTF8.width(scalar)
            scalars.append(scalar)
        }
        return String(scalars)
    }

    /// ERROR message texts from 200 to 320 UTF-8 bytes: both sides of the 256-byte cap.
    static let scalarPicks = Gen<Int>.int(in: 0...(scalarPool.count - 1)).array(of: 1...6)

    static let errorText = zip(Gen<Int>.int(in: 200...320), scalarPicks)
        .map { budget, picks in text(bytes: budget, picks: picks) }

    /// Untrusted tokens (keys, types, error codes) of up to 1,200 UTF-8 bytes, combining marks
    /// and 4-byte scalars included: what the relay's error descriptions echo.
    static let longToken = zip(Gen<Int>.int(in: 1...1_200), scalarPicks)
        .map { budget, picks in text(bytes: budget, picks: picks) }

    /// A SIGNAL whose payload is within 400 bytes of filling the default frame cap (128 KiB), either side:
    /// every known kind (their lengths move the frame by a byte), payload bytes from a seed.
    static let signalNearFrameCap = zip(
        Gen<Int>.int(in: -400...400), Gen.bool, Gen<Int>.int(in: 0...(SignalKind.known.count - 1)), Gen<UInt64>.value())
        .map { wide, near, kind, seed -> Signal in
            // Half the time within 3 bytes of the cap, where an off-by-one shows.
            let offset = near ? wide % 4 : wide
            // {"type":"SIGNAL","kind":"MSG","payload":"..."} is 43 bytes around the base64 text.
            let atCap = (WireLimits.default.frameSizeMaxBytes - 43) / 4 * 3
            // Only the length matters to the cap; a few seeded bytes keep payloads apart.
            var payload = [UInt8](repeating: UInt8(truncatingIfNeeded: seed), count: atCap + offset)
            for shift in stride(from: 0, to: 64, by: 8) where !payload.isEmpty {
                let byte = seed >> UInt64(shift)
                payload[Int(byte & 0xFFFF) % payload.count] = UInt8(truncatingIfNeeded: byte)
            }
            return Signal(kind: SignalKind.known[kind], payload: payload)
        }

    /// Ratchet starting sequence numbers: the first, the 32-bit and 53-bit edges, the top of the
    /// range (the last records before `sequenceExhausted`), and any other.
    static let sequenceStart = zip(Gen<Int>.int(in: 0...8), Gen<UInt64>.value(in: 1...(UInt64.max - 3)))
        .map { pick, any -> UInt64 in
            let edges: [UInt64] = [1, 2, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 53, 1 << 63, UInt64.max - 3]
            return pick < edges.count ? edges[pick] : any
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
