/// Seed programs for `fuzzSession` (make-corpus writes them to Corpus/FuzzSession), in both modes:
/// the honest exchange, then variations a hostile relay or peer would try.
public func sessionProgramSeeds() -> [(String, [UInt8])] {
    var seeds: [(String, [UInt8])] = []
    for password in [false, true] {
        let mode = password ? "cpace" : "x25519"
        let honest = SessionFixture.fixture(password: password).honestScript
        let join: [SessionOp] = [.relay(.transportUp), .relay(.joinedWithPeer)]
        let stranger = ForgedHello(instance: .stranger(0), epoch: 1, knownPeer: .zero, nextExpected: 1)
        func hello(_ change: (inout ForgedHello) -> Void) -> SessionOp {
            var forged = stranger
            change(&forged)
            return .forgeHello(forged)
        }
        let programs: [(String, [SessionOp])] = [
            ("honest", honest),
            ("honest-then-chat", honest + [.send(body: Array("more".utf8)), .advance(tenths: 5), .deliverPeer(index: 9),
                                            .advance(tenths: 50)]),
            ("honest-then-peer-left-and-back", honest + [.relay(.peerLeft), .relay(.transportDown), .advance(tenths: 20),
                                                          .relay(.transportUp), .relay(.joinedWithPeer), .deliverPeer(index: 0)]),
            ("honest-backwards", join + (0..<12).reversed().map { .deliverPeer(index: UInt8($0)) }),
            ("honest-twice", honest + (0..<12).map { .deliverPeer(index: UInt8($0)) }),
            ("stranger-opens", join + [hello { _ in }, .forgeConfirm(opening: 0, variant: .valid), .send(body: [])]),
            ("typed-before-stranger-opens", join + [.send(body: []), hello { $0.epoch = 2 },
                                                    .forgeConfirm(opening: 0, variant: .valid)]),
            ("stranger-knows-victim-max-next", join + [
                hello { $0.knownPeer = .victim; $0.nextExpected = .max }, .forgeConfirm(opening: 0, variant: .valid),
                .send(body: []), .repeatLast]),
            ("stranger-knows-victim-next-5", join + [
                hello { $0.knownPeer = .victim; $0.nextExpected = 5 }, .forgeConfirm(opening: 0, variant: .valid),
                .repeatLast]),
            ("restart-huge-epoch", honest + [hello { $0.instance = .recordedPeer; $0.epoch = .max },
                                             .forgeConfirm(opening: 0, variant: .hugeSenderEpoch), .send(body: [])]),
            ("connected-then-stranger", honest + [hello { $0.knownPeer = .victim; $0.nextExpected = .max - 1 },
                                                  .forgeConfirm(opening: 0, variant: .valid), .send(body: []),
                                                  .repeatLast]),
            ("reflected", join + [.reflect(back: 0), .deliverNext, .reflect(back: 0), .deliverNext]),
            ("wrong-password", join + [hello { $0.key = .wrongPassword }, .forgeConfirm(opening: 0, variant: .valid)]),
            ("bad-confirmations", join + [hello { _ in }] + SessionOp.ConfirmVariant.allCases.map {
                .forgeConfirm(opening: 0, variant: $0)
            }),
            ("old-version", join + [hello { $0.version = 2 }]),
            ("tampered", join + (0..<6).map { .tamper(index: UInt8($0), position: UInt16($0 * 7), mask: 0x40, key: $0 & 1 == 1) }),
            ("timeouts", join + [.deliverNext] + [UInt8](repeating: 255, count: 12).map { .advance(tenths: $0) }),
            ("leave", honest + [.send(body: []), .leave(quit: false), .deliverPeer(index: 10), .advance(tenths: 100)]),
            ("raw", join + [.raw(Array(#"{"type":"SIGNAL","kind":"MSG","payload":"AAAA"}"#.utf8)), .deliverNext]),
        ]
        seeds += programs.map { ("\(mode)-\($0.0)", encodeSessionProgram(password: password, $0.1)) }
    }
    return seeds
}
