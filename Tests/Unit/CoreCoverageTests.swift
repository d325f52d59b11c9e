import ChatCore
import Testing

/// Small ChatCore paths that the scenario tests do not reach: every error's text, the entropy
/// helpers, clock arithmetic and libsodium utilities.
@Suite("ChatCore odds and ends")
struct CoreCoverageTests {
    @Test("Every refusal, rejection, end reason, record and handshake error has a distinct, specific text")
    func descriptions() {
        let refusals: [SendRefusal] = [.empty, .tooLong(maxBytes: 4096), .queueFull(max: 1024), .sessionEnded]
        let handshake: [HandshakeError] = [.malformedHello, .unsupportedVersion(9), .staleHello, .retiredInstance,
                                           .invalidShare, .confirmationFailed, .staleConfirmation,
                                           .inconsistentResume, .unexpected]
        let records: [RecordError] = [.truncated, .unknownType(7), .badLength, .invalidUTF8]
        let rejections: [FrameRejection] = [
            .wire(.notAnObject), .crypto(.authenticationFailed), .handshake(.staleHello), .record(.badLength),
            .state(.init(state: .initial, event: .peerLeft)),
        ]
        let ends: [SessionEndReason] = [
            .userQuit, .relayRefused(.roomFull), .authenticationFailed(.passwordMismatch),
            .authenticationFailed(.tooManyAttempts(8)), .authenticationFailed(.peerHasNoPassword),
            .authenticationFailed(.peerHasPassword),
        ]
        let texts = refusals.map(\.description) + handshake.map(\.description) + records.map(\.description)
            + rejections.map(\.description) + ends.map(\.description)
        #expect(Set(texts).count == texts.count, "two different errors read the same")
        #expect(texts.allSatisfy { !$0.isEmpty })
        #expect(SendRefusal.tooLong(maxBytes: 4096).description.contains("4096"))
        #expect(SendRefusal.queueFull(max: 1024).description.contains("1024"))
        #expect(HandshakeError.unsupportedVersion(9).description.contains("9"))
        #expect(RecordError.unknownType(7).description.contains("7"))
        #expect(SessionEndReason.relayRefused(.roomFull).description.contains("ROOM_FULL"))
        #expect(ends.dropFirst(2).allSatisfy { $0.description.hasPrefix("authentication failed: ") })
        #expect(SessionEndReason.authenticationFailed(.tooManyAttempts(8)).description.contains("8"))
        #expect(FrameRejection.record(.badLength).description.hasPrefix("record: "))
        #expect(FrameRejection.record(.badLength).isSuspicious)
        #expect(!FrameRejection.crypto(.replayed(sequence: 1, expected: 2)).isSuspicious)
        #expect(MessageID(42).description == "#42")
    }

    /// A source that replays fixed words, to drive `uniform(below:)` through its rejection loop.
    final class ScriptedEntropy: EntropySource {
        var words: [UInt64]
        init(_ words: [UInt64]) { self.words = words }
        func fill(_ buffer: UnsafeMutableRawBufferPointer) {
            var word = words.removeFirst().littleEndian
            withUnsafeBytes(of: &word) { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<buffer.count])) }
        }
    }

    @Test("uniform(below:) rejects draws from the biased top of the range and reduces the rest")
    func uniformRejectionSampling() {
        // For an upper bound of 3, UInt64.max is in the biased remainder and must be redrawn.
        let source = ScriptedEntropy([UInt64.max, 10])
        #expect(source.uniform(below: 3) == 10 % 3)
        #expect(source.words.isEmpty, "the biased draw was not rejected")
        let system = SystemEntropy()
        for _ in 0..<1_000 { #expect(system.uniform(below: 7) < 7) }
        let draws = (0..<64).map { _ in system.nextUInt64() }
        #expect(Set(draws).count == draws.count, "64 random 64-bit draws repeated a value")
        let bytes = system.publicBytes(count: 32)
        #expect(bytes.count == 32 && bytes != [UInt8](repeating: 0, count: 32))
    }

    @Test("Instant and Duration arithmetic saturates and clamps instead of trapping")
    func clockArithmetic() {
        let start = Instant.milliseconds(1_500)
        #expect(start.milliseconds == 1_500)
        #expect(start.description == "t+1500ms")
        #expect(start.advanced(by: .milliseconds(250)).duration(since: start) == .milliseconds(250))
        #expect(start.duration(since: start.advanced(by: .seconds(1))) == .zero)
        #expect(Instant(nanoseconds: .max - 1).advanced(by: .seconds(1)) == Instant(nanoseconds: .max))
        #expect(Duration.seconds(-3).wholeNanoseconds == 0)
        #expect(Duration.milliseconds(1_234).wholeMilliseconds == 1_234)
        #expect(Duration.seconds(Int64.max).wholeNanoseconds == .max)
    }

    @Test("libsodium utilities: version, memzero, constant-time comparison")
    func sodiumUtilities() {
        #expect(Sodium.versionString.hasPrefix("1."))
        var bytes: [UInt8] = [1, 2, 3, 4]
        Sodium.memzero(&bytes)
        #expect(bytes == [0, 0, 0, 0])
        var empty: [UInt8] = []
        Sodium.memzero(&empty)
        #expect(empty.isEmpty)
        let a: [UInt8] = [1, 2, 3]
        let b: [UInt8] = [1, 2, 4]
        a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in
                #expect(!Sodium.constantTimeEqual(x, y))
                #expect(Sodium.constantTimeEqual(x, x))
                #expect(!Sodium.constantTimeEqual(x, UnsafeRawBufferPointer(rebasing: y[0..<2])))
            }
        }
    }

    struct Refused: Error, Equatable {}

    @Test("A SecureBytes whose initializer throws is wiped before the error propagates")
    func secureBytesInitializerThrows() {
        #expect(throws: Refused.self) {
            _ = try SecureBytes(count: 8) { (buffer: UnsafeMutableRawBufferPointer) throws(Refused) in
                buffer[0] = 0xAA
                throw Refused()
            }
        }
        let fine = SecureBytes(count: 4) { (buffer: UnsafeMutableRawBufferPointer) in buffer[3] = 9 }
        #expect(fine.constantTimeEquals([0, 0, 0, 9]))
    }

    @Test("Instance IDs: 16 bytes, never all zero, ordered bytewise, printed as a short prefix")
    func instanceIDs() throws {
        #expect(InstanceID([UInt8](repeating: 1, count: 15)) == nil)
        let low = try #require(InstanceID([UInt8](repeating: 1, count: 16)))
        let high = try #require(InstanceID([2] + [UInt8](repeating: 0, count: 15)))
        #expect(low < high && !(high < low))
        #expect(low.description == "01010101")
        #expect(InstanceID.random(entropy: SystemEntropy()) != .none)
    }
}
