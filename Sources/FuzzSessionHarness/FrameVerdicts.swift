import ChatCore
import ChatTesting
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The frames the victim transmitted that passed the one-session oracle's per-frame checks (the
/// relay accepts it, the codec writes it so, no plaintext in it: `TransmittedFrame.check` and the
/// plaintext scan), remembered by their bytes with the message they decode to. Both checks are
/// functions of the bytes alone, and the victim (the same seeded process for every input) sends
/// the same frames input after input: a frame is decoded, inspected, re-encoded and scanned once
/// per process rather than once per input (they were a quarter of the harness's time).
///
/// Direct-mapped, a fixed number of slots: once the slots are full, remembering a frame releases
/// the one it replaces, so an input that meets new frames frees as many blocks as it keeps
/// (libFuzzer runs an input that allocates more than it frees a second time, to look for a leak).
/// Only frames that pass are remembered (one that fails ends the input). Shared by concurrent
/// tests (Tests/Fuzz), hence the lock.
final class FrameVerdicts: Sendable {
    struct Passed: Sendable {
        let frame: [UInt8]
        let message: ClientMessage
    }

    static let shared = FrameVerdicts()
    static let slotCount = 1024
    private let slots = Mutex([Passed?](repeating: nil, count: FrameVerdicts.slotCount))
    private let scanner: SecretScanner = {
        var scanner = SecretScanner()
        scanner.add(Canary.markerBytes, name: "a message")
        return scanner
    }()

    /// The decoded message (nil when the relay would refuse the frame) and every problem with it.
    func check(_ frame: [UInt8]) -> (message: ClientMessage?, problems: [String]) {
        let slot = Self.slot(frame)
        if let passed = slots.withLock({ $0[slot] }), Self.equal(passed.frame, frame) { return (passed.message, []) }
        let (message, problem) = TransmittedFrame.check(frame)
        var problems = problem.map { [$0] } ?? []
        if let secret = scanner.find(in: frame) { problems.append("the plaintext of \(secret) on the wire") }
        if problems.isEmpty, let message { slots.withLock { $0[slot] = Passed(frame: frame, message: message) } }
        return (message, problems)
    }

    /// The standard library's hash of the bytes (not instrumented for coverage, unlike a loop here).
    private static func slot(_ frame: [UInt8]) -> Int {
        var hasher = Hasher()
        frame.withUnsafeBytes { hasher.combine(bytes: $0) }
        return Int(UInt(bitPattern: hasher.finalize()) % UInt(slotCount))
    }

    private static func equal(_ first: [UInt8], _ second: [UInt8]) -> Bool {
        guard first.count == second.count else { return false }
        return first.withUnsafeBytes { one in
            second.withUnsafeBytes { other in
                guard let one = one.baseAddress, let other = other.baseAddress else { return true }  // Both empty.
                return memcmp(one, other, first.count) == 0
            }
        }
    }
}
