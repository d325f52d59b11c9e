import ChatCore
import ChatTesting
import Foundation
import RelayCore

@testable import ClientCore

/// `ClientDriver`s and the real relay in ChatTesting's `World`, with a held network (frames move in
/// order when the harness settles) and a hand-driven clock: connections open at once while the
/// relay is up and are refused while it is down; a relay crash closes every connection and forgets
/// every room; a frozen relay (a stopped process) reads, answers and times out nothing, and new
/// connections hang, until it thaws.
final class DriverHarness: WorldObserver {
    let world: World
    /// Every display event each client showed, in order.
    private(set) var shown: [[DisplayEvent]] = []
    private(set) var exits: [ClientExitStatus?] = []

    /// Sees every frame on its way to or from the relay (`toRelay`, the driver's index) and returns
    /// what arrives instead: nothing to drop it, several to duplicate it, other bytes to tamper.
    var tap: ((_ toRelay: Bool, _ driver: Int, _ frame: [UInt8]) -> [[UInt8]])? {
        didSet {
            guard let tap else {
                world.heldTap = nil
                return
            }
            world.heldTap = { client, direction, frame in tap(direction == .toRelay, client, frame) }
        }
    }

    /// Connection attempts fail for good (an untrusted certificate, say).
    var failPermanently = false {
        didSet {
            world.connectFailure = failPermanently ? TransportFailure(reason: "bad certificate", permanent: true) : nil
        }
    }
    private var passwords: [Password] = []

    init(relayLimits: RelayLimits = .defaults, binarySignals: BinarySignalMix = .seeded) {
        var configuration = WorldConfiguration(
            clients: 0, seed: 0xD41E,
            faults: NetworkFaults(delayMicroseconds: 0...0, random: Xoshiro256(seed: 0xD41E, stream: .network)),
            relayLimits: relayLimits)
        configuration.binarySignals = binarySignals
        configuration.faults.held = true
        let trace = try! Trace(tailCapacity: 1, filePath: nil)
        // DRIVER_TRACE=1 swift test --filter X: every record of the world's trace on stdout.
        if ProcessInfo.processInfo.environment["DRIVER_TRACE"] != nil { trace.lineHandler = { print($0) } }
        world = World(configuration: configuration, trace: trace)
        world.observer = self
    }

    deinit {
        for password in passwords { password.wipe() }
    }

    var now: Instant { world.now }
    var drivers: [ClientDriver] { world.clients.map { $0.driver! } }
    var pings: [Int] { world.clients.map(\.pingsSent) }

    /// The relay is up (a listening process) or down (connects refused).
    var relayUp: Bool {
        get { world.relayUp }
        set { if newValue { world.restartRelay() } else { world.crashRelay() } }
    }

    /// The relay process is stopped (SIGSTOP) or running.
    var relayFrozen: Bool {
        get { world.relayFrozen }
        set {
            if newValue { world.freezeRelay() } else { world.thawRelay() }
            settle()
        }
    }

    @discardableResult
    func add(room: String = "ROOM1", password: String? = nil, interactive: Bool = false,
             giveUpAfter: Duration = .seconds(300), drainTimeout: Duration = .seconds(30),
             keepalive: Duration = .seconds(15), files: FilePolicy = FilePolicy(),
             fileStore: (any FileStore)? = nil, settled: Bool = true, sendQueueMax: Int = 1024) -> Int {
        var configuration = DriverConfiguration(
            session: SessionConfiguration(room: try! RoomCode(room), sendQueueMax: sendQueueMax), interactive: interactive,
            giveUpAfter: giveUpAfter, drainTimeout: drainTimeout, keepalive: keepalive)
        configuration.files = files
        let secret = password.map { try! Password($0) }
        if let secret { passwords.append(secret) }
        let index = world.addClient(room: configuration.session.room, driver: configuration, password: secret)
        world.clients[index].fileStore = fileStore
        shown.append([])
        exits.append(nil)
        world.startProcess(index)
        if settled { settle() }  // Else the caller's next event comes before anything the start left due.
        return index
    }

    func handle(_ index: Int, _ event: ClientEvent) {
        world.handle(event, at: index)
        settle()
    }

    func line(_ index: Int, _ text: String) {
        handle(index, .line(text))
    }

    /// The relay process dies: every connection closes, every room is forgotten, and new
    /// connections are refused until `relayUp = true`.
    func crashRelay() {
        world.crashRelay()
        settle()
    }

    /// Advance the clock in steps, running due timers and moving every frame.
    func advance(by duration: Duration, step: Duration = .milliseconds(100)) {
        let end = now.advanced(by: duration)
        // Bounded: each round moves the clock by `step`.
        while now < end {
            world.advance(by: min(step, end.duration(since: now)))
            settle()
        }
    }

    /// Move frames until nothing moves (bounded).
    func settle() {
        precondition(world.settle(), "the harness's network did not settle")
    }

    // MARK: WorldObserver

    func world(_ world: World, clientSent frame: [UInt8], client: Int) {}
    func world(_ world: World, relayReceives frame: [UInt8], from client: Int) {}
    func world(_ world: World, relayWillSend message: RelayMessage, to client: Int, link: LinkID) -> Bool { true }
    func world(_ world: World, relayWillForward frame: [UInt8], from source: Int, to client: Int, link: LinkID)
        -> Bool { true }
    func world(_ world: World, relayClosed link: LinkID, client: Int) {}

    func world(_ world: World, client: Int, displays event: DisplayEvent) {
        shown[client].append(event)
    }

    func world(_ world: World, client: Int, exited status: ClientExitStatus) {
        exits[client] = status
    }

    // MARK: Queries

    func messages(_ index: Int) -> [String] {
        shown[index].compactMap { if case let .message(message) = $0 { message.text } else { nil } }
    }

    func notices(_ index: Int) -> [ClientNotice.Kind] {
        shown[index].compactMap { if case let .notice(notice) = $0 { notice.kind } else { nil } }
    }

    func state(_ index: Int) -> SessionState { world.clients[index].driver!.session.state }

    func noticeTexts(_ index: Int, _ kind: ClientNotice.Kind) -> [String] {
        shown[index].compactMap { if case let .notice(notice) = $0, notice.kind == kind { notice.text } else { nil } }
    }
}
