/// Deliberately broken behaviours, for the simulator's self-tests only.
///
/// A checker that never fails proves nothing: the simulator switches one of these on and asserts
/// that it names the invariant the bug breaks (FoundationDB's and TigerBeetle's practice of testing
/// the tester). They are reachable only through `@_spi(Simulation) import ChatCore`, which only the
/// `Simulator` module uses; no shipped binary imports that SPI, and every bug is off by default.
@_spi(Simulation)
public struct PlantedBugs: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// The receiver skips the record counter check and its ratchet keeps the message keys of
    /// opened records instead of wiping them: replayed and repeated records are opened again and
    /// shown again (breaks "at most once").
    public static let skipCounterCheck = PlantedBugs(rawValue: 1 << 0)
    /// The receiver acknowledges every record but silently drops every fourth one instead of
    /// showing it (breaks "every loss is reported": the sender is told it was delivered).
    public static let dropAcknowledgedMessage = PlantedBugs(rawValue: 1 << 1)
    /// The handshake leaves the room's password out of CPace (it keys the generator with a
    /// constant instead): a relay in the middle with the same bug agrees on keys with each side
    /// and reads every message (breaks "authentication").
    public static let passwordLeftOutOfHandshake = PlantedBugs(rawValue: 1 << 2)

    /// Every fourth record is dropped by `dropAcknowledgedMessage`.
    static let droppedSequenceModulus: UInt64 = 4
}

extension Password {
    /// The constant `PlantedBugs.passwordLeftOutOfHandshake` keys CPace with.
    static var plantedConstant: Password { Password(words: [0, 0]) }
}
