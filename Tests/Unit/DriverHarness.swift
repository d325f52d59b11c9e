import ChatCore
import RelayCore

@testable import ClientCore

/// `ClientDriver`s wired in memory to one `RelayRooms`, on a hand-driven clock: connections
/// open at once while the relay is up and are refused while it is down; a relay crash closes
/// every connection and forgets every room. The relay answers pings unless it is frozen (a
/// stopped process: connections stay open, nothing is read or answered, new ones hang).
final class DriverHarness {
    var rooms = RelayRooms<Int>()
    var relayUp = true
    var relayFrozen = false
    /// Pings each driver sent (the relay answers them unless frozen).
    private(set) var pings: [Int] = []
    /// Connection attempts fail for good (an untrusted certificate, say).
    var failPermanently = false
    private(set) var drivers: [ClientDriver] = []
    private(set) var now = Instant.zero
    private var open: [ConnectionID?] = []
    private(set) var shown: [[DisplayEvent]] = []
    private(set) var exits: [ClientExitStatus?] = []
    private var queue: [(toRelay: Bool, driver: Int, connection: ConnectionID, frame: [UInt8])] = []
    /// Sees every frame on its way to or from the relay (`toRelay`, the driver's index) and returns
    /// what arrives instead: nothing to drop it, several to duplicate it, other bytes to tamper.
    var tap: ((_ toRelay: Bool, _ driver: Int, _ frame: [UInt8]) -> [[UInt8]])?

    @discardableResult
    func add(room: String = "ROOM1", password: String? = nil, interactive: Bool = false,
             giveUpAfter: Duration = .seconds(300), drainTimeout: Duration = .seconds(30),
             keepalive: Duration = .seconds(15)) -> Int {
        let configuration = DriverConfiguration(
            session: SessionConfiguration(room: try! RoomCode(room)), interactive: interactive,
            giveUpAfter: giveUpAfter, drainTimeout: drainTimeout, keepalive: keepalive)
        let secret = password.map { try! Password($0) }
        drivers.append(ClientDriver(configuration: configuration, password: secret, entropy: SystemEntropy()))
        secret?.wipe()
        open.append(nil)
        shown.append([])
        exits.append(nil)
        pings.append(0)
        let index = drivers.count - 1
        handle(index, .start)
        return index
    }

    func handle(_ index: Int, _ event: ClientEvent) {
        drivers[index].handle(event, now: now)
        settle()
    }

    func line(_ index: Int, _ text: String) {
        handle(index, .line(text))
    }

    func crashRelay() {
        relayUp = false
        rooms = RelayRooms<Int>()
        queue.removeAll()
        for index in drivers.indices {
            guard let id = open[index] else { continue }
            open[index] = nil
            drivers[index].handle(.transportClosed(id, reason: "connection reset"), now: now)
        }
        settle()
    }

    /// Advance the clock in steps, running due timers.
    func advance(by duration: Duration, step: Duration = .milliseconds(100)) {
        let end = now.advanced(by: duration)
        var rounds = 0
        while now < end {
            rounds += 1
            precondition(rounds < 1_000_000)
            now = min(end, now.advanced(by: step))
            for driver in drivers {
                if let due = driver.pollTimeout(), due <= now { driver.handleTimeout(now: now) }
            }
            settle()
        }
    }

    private func key(_ index: Int, _ id: ConnectionID) -> Int { index * 1_000_000 + Int(id.value) }

    /// Carry out actions and move frames until nothing moves (bounded).
    func settle() {
        var rounds = 0
        while true {
            rounds += 1
            precondition(rounds < 100_000, "did not settle")
            var acted = false
            for index in drivers.indices {
                while let action = drivers[index].pollAction() {
                    acted = true
                    perform(action, index)
                }
            }
            if !queue.isEmpty {
                acted = true
                let item = queue.removeFirst()
                deliver(item)
            }
            if !acted { return }
        }
    }

    private func perform(_ action: ClientAction, _ index: Int) {
        switch action {
        case let .connect(id):
            if failPermanently {
                drivers[index].handle(.transportFailed(id, TransportFailure(reason: "bad certificate", permanent: true)),
                                      now: now)
            } else if relayFrozen {
                return  // The upgrade hangs: the driver's connect timeout ends the attempt.
            } else if relayUp {
                open[index] = id
                drivers[index].handle(.transportUp(id), now: now)
            } else {
                drivers[index].handle(.transportFailed(id, TransportFailure(reason: "refused", permanent: false)),
                                      now: now)
            }
        case let .send(id, frame):
            guard open[index] == id && !relayFrozen else { return }
            for copy in tap?(true, index, frame) ?? [frame] { queue.append((true, index, id, copy)) }
        case let .ping(id):
            pings[index] += 1
            if open[index] == id && !relayFrozen { drivers[index].handle(.transportPong(id), now: now) }
        case .pong:
            break
        case let .close(id):
            guard open[index] == id else { return }
            open[index] = nil
            guard !relayFrozen else { return }  // The relay learns of it only when it thaws.
            for relayAction in rooms.disconnect(key(index, id)) { route(relayAction, frame: []) }
        case let .display(event):
            shown[index].append(event)
        case let .exit(status):
            exits[index] = status
        }
    }

    private func deliver(_ item: (toRelay: Bool, driver: Int, connection: ConnectionID, frame: [UInt8])) {
        guard open[item.driver] == item.connection else { return }
        if item.toRelay {
            for action in rooms.receive(frame: item.frame, from: key(item.driver, item.connection)) {
                route(action, frame: item.frame)
            }
        } else {
            drivers[item.driver].handle(.transportFrame(item.connection, item.frame), now: now)
        }
    }

    private func route(_ action: RelayRooms<Int>.Action, frame: [UInt8]) {
        let (to, bytes): (Int, [UInt8]) = switch action {
        case let .send(connection, message): (connection, WireCodec.encode(message))
        case let .forward(connection): (connection, frame)
        }
        let index = to / 1_000_000
        for copy in tap?(false, index, bytes) ?? [bytes] {
            queue.append((false, index, ConnectionID(UInt64(to % 1_000_000)), copy))
        }
    }

    // MARK: Queries

    func messages(_ index: Int) -> [String] {
        shown[index].compactMap { if case let .message(message) = $0 { message.text } else { nil } }
    }

    func notices(_ index: Int) -> [ClientNotice.Kind] {
        shown[index].compactMap { if case let .notice(notice) = $0 { notice.kind } else { nil } }
    }

    func state(_ index: Int) -> SessionState { drivers[index].session.state }

    func noticeTexts(_ index: Int, _ kind: ClientNotice.Kind) -> [String] {
        shown[index].compactMap { if case let .notice(notice) = $0, notice.kind == kind { notice.text } else { nil } }
    }
}

