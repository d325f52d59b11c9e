import ChatCore

/// One operation of a `fuzzSession` program: what happens next to the one real session under
/// test (the victim). Its peer is not run: its frames were recorded once (`SessionFixture`) and
/// are replayed, altered or forged, so only the victim's own crypto runs per input.
public enum SessionOp: Hashable, Sendable, CustomStringConvertible {
    /// Deliver recorded peer frame `index` (modulo the recording).
    case deliverPeer(index: UInt8)
    /// Deliver the next recorded peer frame (a cursor): a run of these is the honest exchange.
    case deliverNext
    /// The user types a message: a canary naming it, then `body`.
    case send(body: [UInt8])
    /// Let `tenths` × 100 ms pass, running every timer when it is due.
    case advance(tenths: UInt8)
    /// Something from the relay or the transport (`RelayEvent`).
    case relay(RelayEvent)
    /// A peer opening with fields chosen from extremes (see `ForgedHello`).
    case forgeHello(ForgedHello)
    /// A KEY_CONFIRM for forged opening `opening` (of this input's, modulo) answering the
    /// victim's latest opening, with the run id and proof computed as a peer holding the password
    /// would (with a password; without one only the public parts are right), then `variant`.
    case forgeConfirm(opening: UInt8, variant: ConfirmVariant)
    /// Deliver the last frame delivered again.
    case repeatLast
    /// Deliver the victim's own `back`-th latest SIGNAL back to it.
    case reflect(back: UInt8)
    /// Recorded peer frame `index` with one byte of its payload (or key) XORed with `mask`.
    case tamper(index: UInt8, position: UInt16, mask: UInt8, key: Bool)
    /// Arbitrary bytes as a frame from the relay.
    case raw([UInt8])
    /// The user leaves (goodbye) or quits.
    case leave(quit: Bool)

    public enum RelayEvent: UInt8, Hashable, Sendable, CaseIterable {
        case transportDown, transportUp, joinedWithPeer, joinedAlone, peerFound, peerLeft, roomFull, seatReserved
    }

    public enum ConfirmVariant: UInt8, Hashable, Sendable, CaseIterable {
        /// Exactly what the peer would send.
        case valid
        /// The proof with its first byte flipped.
        case badProof
        /// Another run id.
        case badRunID
        /// Naming a later opening of the victim's (epoch + 1).
        case laterReceiver
        /// Naming an earlier opening of the victim's (epoch - 1).
        case earlierReceiver
        /// The sender named with epoch UInt64.max.
        case hugeSenderEpoch
    }

    static let opcodeCount: UInt8 = 13

    public var description: String {
        switch self {
        case let .deliverPeer(index): "deliverPeer(\(index))"
        case .deliverNext: "deliverNext"
        case let .send(body): "send(\(String(decoding: body, as: UTF8.self).debugDescription))"
        case let .advance(tenths): "advance(\(Int(tenths) * 100)ms)"
        case let .relay(event): "relay(\(event))"
        case let .forgeHello(hello): "forgeHello(\(hello))"
        case let .forgeConfirm(opening, variant): "forgeConfirm(\(opening), \(variant))"
        case .repeatLast: "repeatLast"
        case let .reflect(back): "reflect(\(back))"
        case let .tamper(index, position, mask, key): "tamper(\(index), \(key ? "key" : "payload")@\(position) ^\(mask))"
        case let .raw(bytes): "raw(\(String(decoding: bytes.prefix(120), as: UTF8.self).debugDescription))"
        case let .leave(quit): quit ? "quit" : "leave"
        }
    }

    /// Read one operation; nil at the end of the input. Every opcode byte means some operation.
    public static func read(from reader: inout FuzzReader) -> SessionOp? {
        guard let op = reader.byte() else { return nil }
        switch op % opcodeCount {
        case 0: return .deliverPeer(index: reader.byte() ?? 0)
        case 1: return .deliverNext
        case 2: return .send(body: reader.chunk(maxLength: 200))
        case 3: return .advance(tenths: reader.byte() ?? 0)
        case 4:
            let events = RelayEvent.allCases
            return .relay(events[Int(reader.byte() ?? 0) % events.count])
        case 5: return .forgeHello(ForgedHello.read(from: &reader))
        case 6:
            let opening = reader.byte() ?? 0
            let variants = ConfirmVariant.allCases
            return .forgeConfirm(opening: opening, variant: variants[Int(reader.byte() ?? 0) % variants.count])
        case 7: return .repeatLast
        case 8: return .reflect(back: reader.byte() ?? 0)
        case 9:
            let index = reader.byte() ?? 0
            let position = reader.uint16()
            let mask = max(reader.byte() ?? 1, 1)
            return .tamper(index: index, position: position, mask: mask, key: (reader.byte() ?? 0) & 1 == 1)
        case 10: return .raw(reader.chunk(maxLength: 2048))
        case 11: return .leave(quit: (reader.byte() ?? 0) & 1 == 1)
        default: return .deliverNext
        }
    }

    /// Write the operation in the format `read(from:)` reads.
    public func write(to writer: inout FuzzWriter) {
        switch self {
        case let .deliverPeer(index): writer.byte(0); writer.byte(index)
        case .deliverNext: writer.byte(1)
        case let .send(body): writer.byte(2); writer.chunk(body)
        case let .advance(tenths): writer.byte(3); writer.byte(tenths)
        case let .relay(event): writer.byte(4); writer.byte(event.rawValue)
        case let .forgeHello(hello): writer.byte(5); hello.write(to: &writer)
        case let .forgeConfirm(opening, variant): writer.byte(6); writer.byte(opening); writer.byte(variant.rawValue)
        case .repeatLast: writer.byte(7)
        case let .reflect(back): writer.byte(8); writer.byte(back)
        case let .tamper(index, position, mask, key):
            writer.byte(9); writer.byte(index); writer.uint16(position); writer.byte(mask); writer.byte(key ? 1 : 0)
        case let .raw(bytes): writer.byte(10); writer.chunk(bytes)
        case let .leave(quit): writer.byte(11); writer.byte(quit ? 1 : 0)
        }
    }
}

/// A peer opening (hello) built field by field, each field picked from a table of extremes or
/// taken from the input: the peer instance (a stranger, the recorded peer, the victim itself, all
/// zeros), the epoch, the conversation it claims to remember and where it stands (nextExpected,
/// up to UInt64.max), and the key (a share made with the password or a wrong one, the recorded
/// peer's, the victim's own).
public struct ForgedHello: Hashable, Sendable, CustomStringConvertible {
    public enum Instance: Hashable, Sendable {
        case stranger(UInt8), recordedPeer, victim, zero, bytes([UInt8])
    }

    public enum Key: UInt8, Hashable, Sendable, CaseIterable {
        /// A fresh share made with the right password (no password: a fresh X25519 key).
        case fresh
        /// A share made with another password (no password: the same as `fresh`).
        case wrongPassword
        case recordedPeer
        case victim
    }

    public var instance: Instance
    public var epoch: UInt64
    public var knownPeer: Instance
    public var nextExpected: UInt64
    public var key: Key
    /// The hello's protocol version byte: the victim's own, unless set.
    public var version: UInt8?

    public init(instance: Instance, epoch: UInt64, knownPeer: Instance, nextExpected: UInt64, key: Key = .fresh,
                version: UInt8? = nil) {
        (self.instance, self.epoch, self.knownPeer, self.nextExpected) = (instance, epoch, knownPeer, nextExpected)
        (self.key, self.version) = (key, version)
    }

    /// The numbers a peer may pick that break arithmetic: edges of the counters (a selector byte
    /// picks one of these, or, past the table, eight bytes of the input). Nothing in the session
    /// compares with the top of the range when it forgets to, so coverage cannot lead the fuzzer
    /// there: the table does, a quarter of the picks near 2^64.
    static let extremes: [UInt64] = [1, 2, 5, 0, 1 << 32, UInt64.max - 1, UInt64.max]

    public var description: String {
        "instance \(instance), epoch \(epoch), knows \(knownPeer), next \(nextExpected), key \(key)"
            + (version.map { ", version \($0)" } ?? "")
    }

    static func readNumber(from reader: inout FuzzReader) -> UInt64 {
        let selector = Int(reader.byte() ?? 0)
        guard selector % 8 >= extremes.count else { return extremes[selector % 8] }
        return (0..<8).reduce(UInt64(0)) { value, _ in value << 8 | UInt64(reader.byte() ?? 0) }
    }

    static func readInstance(from reader: inout FuzzReader) -> Instance {
        let selector = reader.byte() ?? 0
        switch selector % 8 {
        case 0, 4: return .stranger(selector >> 3)
        case 1, 5: return .recordedPeer
        case 2, 6: return .victim
        case 3: return .zero
        default: return .bytes((0..<InstanceID.byteCount).map { _ in reader.byte() ?? 0 })
        }
    }

    static func read(from reader: inout FuzzReader) -> ForgedHello {
        let instance = readInstance(from: &reader)
        let epoch = readNumber(from: &reader)
        let knownPeer = readInstance(from: &reader)
        let nextExpected = readNumber(from: &reader)
        let flags = reader.byte() ?? 0
        let key = Key.allCases[Int(flags & 3)]
        // Rarely another version: the victim must refuse it with a typed reason.
        let version: UInt8? = flags & 0xF0 == 0xF0 ? (reader.byte() ?? 0) : nil
        return ForgedHello(instance: instance, epoch: epoch, knownPeer: knownPeer, nextExpected: nextExpected,
                           key: key, version: version)
    }

    func write(to writer: inout FuzzWriter) {
        func instance(_ value: Instance) {
            switch value {
            case let .stranger(tag): writer.byte(tag << 3)
            case .recordedPeer: writer.byte(1)
            case .victim: writer.byte(2)
            case .zero: writer.byte(3)
            case let .bytes(bytes):
                writer.byte(7)
                for index in 0..<InstanceID.byteCount { writer.byte(index < bytes.count ? bytes[index] : 0) }
            }
        }
        func number(_ value: UInt64) {
            if let index = Self.extremes.firstIndex(of: value) {
                writer.byte(UInt8(index))
            } else {
                writer.byte(7)
                for shift in stride(from: 56, through: 0, by: -8) { writer.byte(UInt8(truncatingIfNeeded: value >> shift)) }
            }
        }
        instance(self.instance)
        number(epoch)
        instance(knownPeer)
        number(nextExpected)
        writer.byte(key.rawValue | (version == nil ? 0 : 0xF0))
        if let version { writer.byte(version) }
    }
}

/// Encode a program as a `fuzzSession` input.
public func encodeSessionProgram(password: Bool, _ ops: [SessionOp]) -> [UInt8] {
    var writer = FuzzWriter()
    writer.byte(password ? 1 : 0)
    for op in ops { op.write(to: &writer) }
    return writer.bytes
}

/// Decode a `fuzzSession` input: byte 0 bit 0 picks the mode (1: a password, CPace; 0: none,
/// X25519), then operations (at most `sessionOpsMax`).
public func decodeSessionProgram(_ bytes: [UInt8]) -> (password: Bool, ops: [SessionOp]) {
    var reader = FuzzReader(bytes)
    let password = (reader.byte() ?? 0) & 1 == 1
    var ops: [SessionOp] = []
    while ops.count < sessionOpsMax, let op = SessionOp.read(from: &reader) { ops.append(op) }
    return (password, ops)
}

/// The most operations one `fuzzSession` input runs.
public let sessionOpsMax = 512
