import ChatCore
import ChatTesting

/// The `guess-bound` invariant's count (issue 12): the CPace tags a relay in the middle received
/// in pairings with an opening it made or altered (each tests at most one guessed password), per
/// client process (a run) and per code (both sides, every run, across process restarts), checked
/// against the bounds docs/SECURITY.md states ("The bounds"):
///
/// - per side, per run: at most `passwordRunsUnconfirmedDefault` (2);
/// - per code: at most 4 (2 per side) while the users heed "the code is spent"; a run that ends
///   with a tag outstanding says so, and the simulated user then never runs the code again. Only a
///   run that crashed could not say it: each such run that had given a tag lets its re-run give up
///   to 2 more ("each re-run of a spent code would give up to 4 more", one side's share of it).
///
/// Retransmitted and duplicated tags of one pairing count once.
struct GuessCount {
    static let perRunMax = SessionConfiguration.passwordRunsUnconfirmedDefault
    static let perCodeMax = 2 * perRunMax
    /// References (instance ‖ epoch) a client's recent openings from the relay carried, per client.
    static let rememberedMax = 64

    private var fabricated: [[[UInt8]]]
    private var counted: [[[UInt8]]]
    /// Tags per client process, by its instance ID.
    fileprivate var perRun: [[[UInt8]: Int]]
    private(set) var perCode: [Int]
    /// Per code: re-runs after a crashed run that had given tags (nobody could tell its user).
    private(set) var uninformedReruns: [Int]
    private(set) var total = 0

    init(clients: Int) {
        fabricated = Array(repeating: [], count: clients)
        counted = Array(repeating: [], count: clients)
        perRun = Array(repeating: [:], count: clients)
        perCode = Array(repeating: 0, count: (clients + 1) / RoomCode.peersMax)
        uninformedReruns = perCode
    }

    /// The relay sent `client` an opening it made or altered, named `reference`.
    mutating func fabricated(_ reference: [UInt8], toward client: Int) {
        guard !fabricated[client].contains(reference) else { return }
        fabricated[client].append(reference)
        if fabricated[client].count > Self.rememberedMax { fabricated[client].removeFirst() }
    }

    /// A CPace tag from `client` reached the relay, pairing `receiver` (the opening it answers)
    /// with `sender` (the client's own). A finding when it breaks a bound.
    mutating func tag(receiver: [UInt8], sender: [UInt8], from client: Int) -> Finding? {
        guard fabricated[client].contains(receiver) else { return nil }
        let pairing = receiver + sender
        guard !counted[client].contains(pairing) else { return nil }
        counted[client].append(pairing)
        if counted[client].count > Self.rememberedMax { counted[client].removeFirst() }
        let instance = Array(sender.prefix(16))
        perRun[client][instance, default: 0] += 1
        let code = client / RoomCode.peersMax
        perCode[code] += 1
        total += 1
        let runTags = perRun[client][instance]!
        if runTags > Self.perRunMax {
            return Finding(.guessBound, "client \(client)'s run gave the relay \(runTags) password tags "
                + "(the bound per side and run is \(Self.perRunMax))")
        }
        let codeMax = Self.perCodeMax + Self.perRunMax * uninformedReruns[code]
        if perCode[code] > codeMax {
            return Finding(.guessBound, "room \(code)'s code gave the relay \(perCode[code]) password tags "
                + "over its runs (the bound is \(codeMax): \(Self.perCodeMax) per code, plus "
                + "\(Self.perRunMax) for each of \(uninformedReruns[code]) run(s) restarted after a crash)")
        }
        return nil
    }

    /// `client`'s process `instance` crashed: if it had given a tag, its re-run is one its user
    /// could not be warned against.
    mutating func crashed(_ client: Int, instance: [UInt8]) {
        if perRun[client][instance, default: 0] > 0 { uninformedReruns[client / RoomCode.peersMax] += 1 }
    }

    /// The most tags one run gave.
    var perRunMost: Int { perRun.lazy.flatMap(\.values).max() ?? 0 }
    var perCodeMost: Int { perCode.max() ?? 0 }
}

extension GuessCount {
    /// The tags `client`'s process `instance` gave.
    func tags(of client: Int, instance: [UInt8]) -> Int {
        perRun[client][instance, default: 0]
    }
}
