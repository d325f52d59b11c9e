import ChatCore

/// One step of a session scenario: what the fuzzer (or a property test) makes happen next.
public enum WorldStep: Hashable, Sendable, CustomStringConvertible {
    // Honest: a real network and real users.
    case deliverUp(side: Int)
    case deliverDown(side: Int)
    case settle
    /// Let `tenthsOfSeconds` × 100 ms pass, running timers.
    case advance(tenthsOfSeconds: UInt8)
    case send(side: Int, body: [UInt8])
    case sendEmpty(side: Int)
    case transportDown(side: Int)
    case transportUp(side: Int)
    case quit(side: Int)
    case restart(side: Int)
    // Adversarial: a hostile relay or network.
    case drop(side: Int, link: ChatWorld.Link, index: UInt8)
    case duplicate(side: Int, link: ChatWorld.Link, index: UInt8)
    case reorder(side: Int, link: ChatWorld.Link, index: UInt8)
    case tamperBytes(side: Int, link: ChatWorld.Link, index: UInt8, position: UInt16, mask: UInt8)
    case tamperSignal(side: Int, link: ChatWorld.Link, index: UInt8, position: UInt16, mask: UInt8, key: Bool)
    case truncate(side: Int, link: ChatWorld.Link, index: UInt8, length: UInt16)
    case inject(side: Int, frame: [UInt8])
    case replay(side: Int, index: UInt8)

    static let opcodeCount: UInt8 = 18

    public var isAdversarial: Bool {
        switch self {
        case .deliverUp, .deliverDown, .settle, .advance, .send, .sendEmpty, .transportDown, .transportUp, .quit,
             .restart:
            false
        default:
            true
        }
    }

    public var description: String {
        switch self {
        case let .deliverUp(side): "deliverUp(\(side))"
        case let .deliverDown(side): "deliverDown(\(side))"
        case .settle: "settle"
        case let .advance(tenths): "advance(\(Int(tenths) * 100)ms)"
        case let .send(side, body): "send(\(side), \(String(decoding: body, as: UTF8.self).debugDescription))"
        case let .sendEmpty(side): "sendEmpty(\(side))"
        case let .transportDown(side): "transportDown(\(side))"
        case let .transportUp(side): "transportUp(\(side))"
        case let .quit(side): "quit(\(side))"
        case let .restart(side): "restart(\(side))"
        case let .drop(side, link, index): "drop(\(side), \(link), \(index))"
        case let .duplicate(side, link, index): "duplicate(\(side), \(link), \(index))"
        case let .reorder(side, link, index): "reorder(\(side), \(link), \(index))"
        case let .tamperBytes(side, link, index, position, mask): "tamperBytes(\(side), \(link), \(index), @\(position) ^\(mask))"
        case let .tamperSignal(side, link, index, position, mask, key):
            "tamperSignal(\(side), \(link), \(index), \(key ? "key" : "payload")@\(position) ^\(mask))"
        case let .truncate(side, link, index, length): "truncate(\(side), \(link), \(index), to \(length))"
        case let .inject(side, frame): "inject(\(side), \(String(decoding: frame, as: UTF8.self).debugDescription))"
        case let .replay(side, index): "replay(\(side), \(index))"
        }
    }

    /// Read one step; nil at the end of the input. Every opcode byte means some step (`% 18`),
    /// so the fuzzer never wastes an input on an unknown opcode.
    public static func read(from reader: inout FuzzReader) -> WorldStep? {
        guard let op = reader.byte() else { return nil }
        let selector = reader.byte() ?? 0
        let side = Int(selector & 1)
        let link: ChatWorld.Link = selector & 2 == 0 ? .up : .down
        switch op % opcodeCount {
        case 0: return .deliverUp(side: side)
        case 1: return .deliverDown(side: side)
        case 2: return .settle
        case 3: return .advance(tenthsOfSeconds: reader.byte() ?? 0)
        case 4: return .send(side: side, body: reader.chunk(maxLength: 256))
        case 5: return .sendEmpty(side: side)
        case 6: return .transportDown(side: side)
        case 7: return .transportUp(side: side)
        case 8: return .quit(side: side)
        case 9: return .restart(side: side)
        case 10: return .drop(side: side, link: link, index: reader.byte() ?? 0)
        case 11: return .duplicate(side: side, link: link, index: reader.byte() ?? 0)
        case 12: return .reorder(side: side, link: link, index: reader.byte() ?? 0)
        case 13:
            return .tamperBytes(side: side, link: link, index: reader.byte() ?? 0, position: reader.uint16(),
                                mask: max(reader.byte() ?? 1, 1))
        case 14:
            return .tamperSignal(side: side, link: link, index: reader.byte() ?? 0, position: reader.uint16(),
                                 mask: max(reader.byte() ?? 1, 1), key: selector & 4 != 0)
        case 15: return .truncate(side: side, link: link, index: reader.byte() ?? 0, length: reader.uint16())
        case 16: return .inject(side: side, frame: reader.chunk(maxLength: 4096))
        default: return .replay(side: side, index: reader.byte() ?? 0)
        }
    }

    /// Write the step in the format `read(from:)` reads.
    public func write(to writer: inout FuzzWriter) {
        func selector(_ side: Int, _ link: ChatWorld.Link = .up, key: Bool = false) -> UInt8 {
            UInt8(side & 1) | (link == .down ? 2 : 0) | (key ? 4 : 0)
        }
        switch self {
        case let .deliverUp(side): writer.byte(0); writer.byte(selector(side))
        case let .deliverDown(side): writer.byte(1); writer.byte(selector(side))
        case .settle: writer.byte(2); writer.byte(0)
        case let .advance(tenths): writer.byte(3); writer.byte(0); writer.byte(tenths)
        case let .send(side, body): writer.byte(4); writer.byte(selector(side)); writer.chunk(body)
        case let .sendEmpty(side): writer.byte(5); writer.byte(selector(side))
        case let .transportDown(side): writer.byte(6); writer.byte(selector(side))
        case let .transportUp(side): writer.byte(7); writer.byte(selector(side))
        case let .quit(side): writer.byte(8); writer.byte(selector(side))
        case let .restart(side): writer.byte(9); writer.byte(selector(side))
        case let .drop(side, link, index): writer.byte(10); writer.byte(selector(side, link)); writer.byte(index)
        case let .duplicate(side, link, index): writer.byte(11); writer.byte(selector(side, link)); writer.byte(index)
        case let .reorder(side, link, index): writer.byte(12); writer.byte(selector(side, link)); writer.byte(index)
        case let .tamperBytes(side, link, index, position, mask):
            writer.byte(13); writer.byte(selector(side, link)); writer.byte(index); writer.uint16(position)
            writer.byte(mask)
        case let .tamperSignal(side, link, index, position, mask, key):
            writer.byte(14); writer.byte(selector(side, link, key: key)); writer.byte(index); writer.uint16(position)
            writer.byte(mask)
        case let .truncate(side, link, index, length):
            writer.byte(15); writer.byte(selector(side, link)); writer.byte(index); writer.uint16(length)
        case let .inject(side, frame): writer.byte(16); writer.byte(selector(side)); writer.chunk(frame)
        case let .replay(side, index): writer.byte(17); writer.byte(selector(side)); writer.byte(index)
        }
    }
}

extension ChatWorld {
    /// Perform one step.
    public func apply(_ step: WorldStep) {
        switch step {
        case let .deliverUp(side): deliverUp(side)
        case let .deliverDown(side): deliverDown(side)
        case .settle: settle()
        case let .advance(tenths): advance(by: .milliseconds(Int64(tenths) * 100))
        case let .send(side, body): send(side, body)
        case let .sendEmpty(side): send(side, [], empty: true)
        case let .transportDown(side): transportDown(side)
        case let .transportUp(side): transportUp(side)
        case let .quit(side): quit(side)
        case let .restart(side): restart(side)
        case let .drop(side, link, index): drop(side, link, index: Int(index))
        case let .duplicate(side, link, index): duplicate(side, link, index: Int(index))
        case let .reorder(side, link, index): reorder(side, link, index: Int(index))
        case let .tamperBytes(side, link, index, position, mask):
            tamperBytes(side, link, index: Int(index), position: Int(position), mask: mask)
        case let .tamperSignal(side, link, index, position, mask, key):
            tamperSignal(side, link, index: Int(index), position: Int(position), mask: mask, key: key)
        case let .truncate(side, link, index, length): truncate(side, link, index: Int(index), length: Int(length))
        case let .inject(side, frame): inject(side, frame)
        case let .replay(side, index): replay(side, index: Int(index))
        }
    }
}

/// Encode a scenario as a `fuzzSessionWorld` input.
public func encodeSessionInput(_ steps: [WorldStep]) -> [UInt8] {
    var writer = FuzzWriter()
    for step in steps { step.write(to: &writer) }
    return writer.bytes
}

/// Decode a `fuzzSessionWorld` input into its steps (at most `stepsMax`).
public func decodeSessionInput(_ data: UnsafeRawBufferPointer, stepsMax: Int = sessionStepsMax) -> [WorldStep] {
    var reader = FuzzReader(data)
    var steps: [WorldStep] = []
    while steps.count < stepsMax, let step = WorldStep.read(from: &reader) { steps.append(step) }
    return steps
}

/// The most steps one `fuzzSessionWorld` input runs (inputs are at most a few KiB anyway).
public let sessionStepsMax = 2048

/// Two sessions, the relay's room logic and a network between them, driven by arbitrary bytes
/// read as a sequence of steps (`WorldStep`): deliveries, timers, user input, connection failures,
/// restarts, and hostile acts (drops, duplicates, reordering, tampering with frames and with the
/// sealed payloads inside them, truncation, arbitrary injected frames, replays). Keys are
/// deterministic (`SeededEntropy`), so the real handshake completes and mutations reach
/// KEY_CONFIRM, MSG and ACK decryption. Every input is played twice, without a password
/// (X25519) and with one (CPace), so both handshakes meet every scenario. Every `ChatWorld`
/// invariant is checked after every step; when no hostile step occurred, liveness is checked at
/// the end, and in both worlds the two sides must show the same safety number.
public func fuzzSessionWorld(_ data: UnsafeRawBufferPointer) {
    let steps = decodeSessionInput(data)
    for configuration in [ChatWorld.Configuration.small, .smallWithPassword] {
        let mode = configuration.password == nil ? "no password" : "password"
        let world = ChatWorld(configuration: configuration)
        for step in steps {
            world.apply(step)
            require(world.violations.isEmpty, "(\(mode)) after \(step): " + world.violations.joined(separator: "\n"))
        }
        if !world.isAdversarial {
            world.heal()
            require(world.violations.isEmpty, "(\(mode)) after healing: " + world.violations.joined(separator: "\n"))
        }
    }
}
