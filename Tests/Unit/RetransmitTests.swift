import ChatCore
import Testing

@Suite("Retransmission timeout: measured round trips (RFC 6298) and the relay's rate limit")
struct RetransmitTests {
    @Test("The estimator: 3R after the first sample, SRTT + 4 RTTVAR after, floor, cap and backoff")
    func estimator() {
        var estimator = RetransmitEstimator(minimum: .milliseconds(400), maximum: .seconds(8))
        #expect(estimator.timeout == .milliseconds(400) && estimator.smoothed == nil)
        estimator.sample(.seconds(1))
        #expect(estimator.smoothed == .seconds(1) && estimator.variation == .milliseconds(500))
        #expect(estimator.timeout == .seconds(3))
        // RTTVAR = (3 * 500 + |1000 - 2000|) / 4 = 625 ms; SRTT = (7 * 1000 + 2000) / 8 = 1125 ms.
        estimator.sample(.seconds(2))
        #expect(estimator.variation == .milliseconds(625) && estimator.smoothed == .milliseconds(1125))
        #expect(estimator.timeout == .milliseconds(3625))
        // A steady round trip: the variance decays and the timeout approaches SRTT + G.
        for _ in 0..<200 { estimator.sample(.seconds(1)) }
        #expect(estimator.timeout >= .seconds(1) && estimator.timeout <= .milliseconds(1020))
        // A fast path never goes under the floor.
        for _ in 0..<200 { estimator.sample(.milliseconds(1)) }
        #expect(estimator.timeout == .milliseconds(400))
        // Each expiry doubles it, up to the cap.
        estimator.backOff()
        #expect(estimator.timeout == .milliseconds(800))
        for _ in 0..<10 { estimator.backOff() }
        #expect(estimator.timeout == .seconds(8))
        // A huge sample is capped too.
        estimator.sample(.seconds(60))
        #expect(estimator.timeout == .seconds(8))
    }

    /// Two connected sessions whose relay takes `oneWay` to pass on each chat message and
    /// acknowledgement (as a rate-limiting relay holds a fast sender's frames).
    final class SlowRelay {
        let chat = InMemoryChat()
        private var held: [(due: Instant, to: Int, frame: [UInt8])] = []
        let oneWay: Duration

        init(oneWay: Duration) {
            self.oneWay = oneWay
            chat.addSession()
            chat.addSession()
            precondition(chat.sessions.allSatisfy { $0.state == .connected })
            chat.tap = { [unowned self] to, frame in
                let chatFrame = InMemoryChat.isSignal(frame, .message) || InMemoryChat.isSignal(frame, .ack)
                guard chatFrame else { return [frame] }
                held.append((chat.now.advanced(by: self.oneWay), to, frame))
                return []
            }
        }

        /// Advance virtual time in 10 ms steps, delivering held frames when due (FIFO).
        func advance(by duration: Duration) {
            let steps = Int(duration / .milliseconds(10))
            for _ in 0..<steps {
                chat.advance(by: .milliseconds(10), step: .milliseconds(10))
                while let first = held.first, first.due <= chat.now {
                    held.removeFirst()
                    chat.inject(first.frame, to: first.to)
                }
            }
        }
    }

    @Test("A 2 s round trip: once it is measured, messages are no longer sent twice; all arrive in order")
    func slowPathStopsRetransmitting() {
        let relay = SlowRelay(oneWay: .seconds(1))
        var retransmissionsPerBatch: [Int] = []
        var sent: [String] = []
        for batch in 0..<4 {
            let before = relay.chat.sessions[0].statistics.retransmissions
            for index in 0..<10 {
                sent.append("batch \(batch) message \(index)")
                relay.chat.send(0, sent.last!)
            }
            relay.advance(by: .seconds(20))
            #expect(relay.chat.sessions[0].pendingCount == 0, "batch \(batch) not all acknowledged")
            retransmissionsPerBatch.append(relay.chat.sessions[0].statistics.retransmissions - before)
        }
        #expect(relay.chat.received(1) == sent)
        #expect(!relay.chat.rejections(1).contains { $0.isSuspicious })
        // Before any round trip is measured the 400 ms timeout fires; Karn's rule and the backoff
        // then find the path, and later batches go out once. (A fixed timeout reset to 400 ms on
        // every acknowledgement resent each batch several times over.)
        #expect(retransmissionsPerBatch[0] > 0)
        #expect(retransmissionsPerBatch[2...].allSatisfy { $0 == 0 }, "\(retransmissionsPerBatch)")
    }

    @Test("RATE_LIMITED from the relay backs the retransmission timer off: nothing is resent into its queue")
    func rateLimitedBacksOff() throws {
        let chat = InMemoryChat()
        chat.addSession()
        chat.addSession()
        chat.tap = { _, frame in InMemoryChat.isSignal(frame, .message) ? [] : [frame] }  // Held, unanswered.
        chat.send(0, "held by the relay")
        chat.advance(by: .milliseconds(200), step: .milliseconds(10))
        chat.inject(WireCodec.encodeError(.rateLimited), to: 0)
        // The 400 ms timeout would have fired at 400 ms; backed off, it waits 800 ms from the error.
        chat.advance(by: .milliseconds(790), step: .milliseconds(10))
        #expect(chat.sessions[0].statistics.retransmissions == 0)
        chat.advance(by: .milliseconds(20), step: .milliseconds(10))
        #expect(chat.sessions[0].statistics.retransmissions == 1)
        let notice = SessionNotice.relayError(code: .rateLimited, message: RelayErrorCode.rateLimited.defaultMessage)
        #expect(chat.log[0].contains(.notice(notice)))
    }
}
