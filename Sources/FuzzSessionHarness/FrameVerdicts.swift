import ChatCore
import ChatTesting

/// The frames the victim transmitted that passed the one-session oracle's per-frame checks (the
/// relay accepts it, the codec writes it so, no plaintext in it: `TransmittedFrame.check` and the
/// plaintext scan), remembered by their bytes with the message they decode to. Both checks are
/// functions of the bytes alone, and the victim (the same seeded process for every input) sends
/// the same frames input after input: a frame is decoded, inspected, re-encoded and scanned once
/// per process rather than once per input (they were a quarter of the harness's time). Only frames
/// that pass are remembered (one that fails ends the input).
final class FrameVerdicts: Sendable {
    static let shared = FrameVerdicts()
    private let passed = SlotCache<ClientMessage>(slots: 1024)
    private let scanner: SecretScanner = {
        var scanner = SecretScanner()
        scanner.add(Canary.markerBytes, name: "a message")
        return scanner
    }()

    /// The decoded message (nil when the relay would refuse the frame) and every problem with it.
    func check(_ frame: [UInt8]) -> (message: ClientMessage?, problems: [String]) {
        if let message = passed[frame] { return (message, []) }
        let (message, problem) = TransmittedFrame.check(frame)
        var problems = problem.map { [$0] } ?? []
        if let secret = scanner.find(in: frame) { problems.append("the plaintext of \(secret) on the wire") }
        if problems.isEmpty, let message { passed[frame] = message }
        return (message, problems)
    }
}
