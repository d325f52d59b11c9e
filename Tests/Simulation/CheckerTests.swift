import ChatCore
import ChatTesting
import Testing

@Suite("The relay-blind scanner")
struct SecretScannerTests {
    static func scanner(_ secrets: [String]) -> SecretScanner {
        var scanner = SecretScanner()
        for secret in secrets { scanner.add(Array(secret.utf8), name: secret) }
        return scanner
    }

    @Test("A secret at any offset of a base64 payload or key is found, long or short", arguments: [
        Canary.marker, "oyster-lemon", "ab-cd", "xyz",
    ])
    func secretAtEveryOffset(secret: String) {
        let scanner = Self.scanner([secret])
        let bytes = Array(secret.utf8)
        for offset in 0..<9 {
            for trailing in 0..<4 {
                var payload = [UInt8](repeating: 0xA5, count: offset)
                payload += bytes
                payload += [UInt8](repeating: 0x5A, count: trailing)
                let frame = WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: payload)))
                #expect(scanner.find(in: frame) == secret, "offset \(offset), trailing \(trailing)")
                let keyFrame = WireCodec.encode(
                    ClientMessage.signal(Signal(kind: .keyExchange, payload: [1], key: payload)))
                #expect(scanner.find(in: keyFrame) == secret)
            }
        }
        let raw = Array(#"{"type":"SIGNAL","kind":"MSG","note":"x\#(secret)y"}"#.utf8)
        #expect(scanner.find(in: raw) == secret)
    }

    @Test("Base64 inside base64, and a run that does not start where its encoding did, are read too")
    func nestedAndMisaligned() {
        let scanner = Self.scanner(["oyster-lemon"])
        let inner = Base64.encode(Array("..oyster-lemon..".utf8))
        #expect(scanner.find(in: Base64.encode(inner)) == nil, "two layers deep is out of scope")
        #expect(scanner.find(in: Array("QQ".utf8) + inner) == "oyster-lemon", "a prefix of 2 base64 characters")
        #expect(scanner.find(in: Array("Q".utf8) + inner) == "oyster-lemon", "a prefix of 1 base64 character")
    }

    @Test("Ciphertext and protocol frames are clean, even for a 5-byte secret (the shortest code password is 7)")
    func cleanFrames() {
        // A 3-byte secret would match random bytes now and then (2^-24 per position and decoding phase):
        // the scanner is exact for what it finds, and secrets that short are not worth scanning for.
        let scanner = Self.scanner([Canary.marker, "ab-cd", "oyster-lemon"])
        var generator = Xoshiro256(seed: 9, stream: .network)
        for length in [0, 1, 16, 100, 1_000, 4_000] {
            for _ in 0..<200 {
                let payload = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                let frame = WireCodec.encode(ClientMessage.signal(Signal(kind: .message, payload: payload)))
                #expect(scanner.find(in: frame) == nil)
            }
        }
        #expect(scanner.find(in: WireCodec.encode(ClientMessage.join(try! RoomCode("SIM1")))) == nil)
    }

    @Test("Every simulated message carries the canary and parses back to its identity")
    func canaryRoundTrip() {
        let text = Canary.text(client: 17, incarnation: 2, number: 305, fillerLength: 20, fillerSeed: 4)
        #expect(Self.scanner([Canary.marker]).find(in: Array(text.utf8)) != nil)
        #expect(Canary.parse(text) == Canary.Identity(client: 17, incarnation: 2, number: 305))
        #expect(Canary.parse("hello") == nil)
        #expect(Canary.parse("PLAINTEXT-CANARY/1/2/") == nil)
        // The fields are written as String(value) would write them.
        for (client, incarnation, number) in [(0, 0, 0), (9, 10, 99), (100, 1_000_000, 123_456_789_012)] {
            let text = Canary.text(
                client: client, incarnation: incarnation, number: number, fillerLength: 0, fillerSeed: 1)
            #expect(text == "\(Canary.marker)\(client)/\(incarnation)/\(number)/")
            #expect(Canary.parse(text) == Canary.Identity(client: client, incarnation: incarnation, number: number))
        }
    }
}

@Suite("The ledger: each invariant fires on its own")
struct LedgerTests {
    /// Client 0 types `count` messages, all accepted, in incarnation 0.
    static func ledger(typing count: Int) -> Ledger {
        var ledger = Ledger(clients: 2)
        for _ in 0..<count {
            let number = ledger.typed(by: 0, incarnation: 0, at: .zero)
            #expect(ledger.accepted(by: 0, number: number) == nil)
        }
        return ledger
    }

    static func shown(_ number: Int, _ ledger: inout Ledger, from sender: Int = 0, to receiver: Int = 1) -> Finding? {
        ledger.shown(
            Canary.Identity(client: sender, incarnation: 0, number: number), to: receiver, incarnation: 0,
            peer: sender)
    }

    @Test("In order, once each, delivered: no finding")
    func honest() {
        var ledger = Self.ledger(typing: 3)
        for number in 0..<3 {
            #expect(Self.shown(number, &ledger) == nil)
            #expect(ledger.delivered(by: 0, number: number) == nil)
        }
        #expect(ledger.finalCheck() == nil)
    }

    @Test("Shown out of order is in-order, not a loss")
    func reordered() {
        var ledger = Self.ledger(typing: 3)
        #expect(Self.shown(0, &ledger) == nil)
        #expect(Self.shown(2, &ledger) == nil, "a skip may yet be reported (a peer that changed)")
        #expect(Self.shown(1, &ledger)?.invariant == .inOrder)
    }

    @Test("Shown twice is at-most-once")
    func duplicate() {
        var ledger = Self.ledger(typing: 1)
        #expect(Self.shown(0, &ledger) == nil)
        #expect(Self.shown(0, &ledger)?.invariant == .atMostOnce)
    }

    @Test("Shown from outside the room, or never sent, is only-from-peer")
    func foreign() {
        var ledger = Self.ledger(typing: 1)
        #expect(
            ledger.shown(Canary.Identity(client: 0, incarnation: 0, number: 0), to: 1, incarnation: 0, peer: 3)?
                .invariant == .onlyFromPeer)
        #expect(Self.shown(5, &ledger)?.invariant == .onlyFromPeer)
    }

    @Test("Delivered but never shown, a skip never reported, or pending at the end is loss-reported")
    func losses() {
        var ledger = Self.ledger(typing: 3)
        #expect(ledger.delivered(by: 0, number: 0)?.invariant == .lossReported)
        #expect(Self.shown(2, &ledger) == nil)
        #expect(ledger.delivered(by: 0, number: 2) == nil)
        #expect(ledger.undeliverable(by: 0, number: 1) == nil, "a skipped message reported undeliverable")
        #expect(ledger.finalCheck()?.invariant == .lossReported, "message 0 is still pending")
        #expect(ledger.undeliverable(by: 0, number: 0) == nil)
        #expect(ledger.finalCheck() == nil)

        var skipped = Self.ledger(typing: 2)
        #expect(Self.shown(1, &skipped) == nil)
        #expect(skipped.delivered(by: 0, number: 1) == nil)
        #expect(skipped.delivered(by: 0, number: 0)?.invariant == .lossReported, "delivered, yet skipped")
    }

    @Test("Leaving cleanly with either side's message pending is clean-leave; another conversation's peer owes nothing")
    func cleanLeave() {
        // Client 0 (the peer) sent three; client 1 leaves cleanly.
        var ledger = Self.ledger(typing: 3)
        #expect(Self.shown(0, &ledger) == nil)
        #expect(ledger.delivered(by: 0, number: 0) == nil)
        #expect(Self.shown(1, &ledger) == nil)
        #expect(ledger.undeliverable(by: 0, number: 2) == nil, "never sent: the peer learned of the goodbye first")
        let shownUnconfirmed = ledger.leftCleanly(1, incarnation: 0, peer: 0, peerIncarnation: 0)
        #expect(shownUnconfirmed?.invariant == .cleanLeave, "message 1 was shown but the peer still waits")
        #expect(ledger.leftCleanly(1, incarnation: 0, peer: 0, peerIncarnation: nil) == nil)
        #expect(ledger.delivered(by: 0, number: 1) == nil)
        #expect(ledger.leftCleanly(1, incarnation: 0, peer: 0, peerIncarnation: 0) == nil)
        // The leaver's own message still pending.
        let own = Self.ledger(typing: 1)
        #expect(own.leftCleanly(0, incarnation: 0, peer: 1, peerIncarnation: nil)?.invariant == .cleanLeave)
    }

    @Test("A crashed sender takes its pending messages with it")
    func crash() {
        var ledger = Self.ledger(typing: 2)
        ledger.crashed(0, incarnation: 0)
        #expect(ledger.finalCheck() == nil)
        #expect(ledger.tally().lostWithSender == 2)
    }
}
