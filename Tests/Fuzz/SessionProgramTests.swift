import ChatCore
import Foundation
import FuzzHarness
import Testing

/// The fast session harness (`fuzzSession`): its recorded handshake really replays, its programs
/// round-trip, and the committed seeds are the ones `make-corpus` writes.
@Suite("FuzzSession programs")
struct SessionProgramTests {
    @Test("The recorded exchange replays: the victim ends CONNECTED, every peer message shown, nothing pending",
          arguments: [false, true])
    func honestScriptReplays(password: Bool) {
        let run = SessionRun(password: password)
        for op in run.fixture.honestScript { run.apply(op) }
        run.checkHonestOutcome()
        #expect(run.violations.isEmpty, "\(run.violations)")
        #expect(run.victim.state == .connected)
        #expect(run.victim.statistics.handshakesCompleted == 1)
    }

    @Test("The honest-outcome check fails when the recorded exchange is cut short")
    func honestOutcomeCanFail() {
        let run = SessionRun(password: false)
        for op in run.fixture.honestScript.prefix(2) { run.apply(op) }
        run.checkHonestOutcome()
        #expect(!run.violations.isEmpty, "a victim still in KEY_SETUP must fail the honest-outcome check")
    }

    @Test("Programs round-trip through their byte encoding")
    func roundTrip() {
        for (name, bytes) in sessionProgramSeeds() {
            let (password, ops) = decodeSessionProgram(bytes)
            #expect(encodeSessionProgram(password: password, ops) == bytes, "\(name)")
        }
    }

    @Test("The committed Corpus/FuzzSession is what make-corpus writes")
    func seedsCommitted() throws {
        let directory = CorpusReplayTests.fuzzTesting.appendingPathComponent("Corpus").appendingPathComponent("FuzzSession")
        for (name, bytes) in sessionProgramSeeds() {
            let file = directory.appendingPathComponent(name + ".bin")
            #expect(try Data(contentsOf: file) == Data(bytes), "\(name): run make-corpus")
        }
    }
}
