import ChatCore
import FuzzHarness
import PropertyBased
import Testing
import TestSupport

/// Model-based test of two real clients (`ClientDriver` with its `SessionManager`: real handshake,
/// real crypto) through the real relay (`RelayEngine`), wired by the fuzz harness's `ChatWorld`,
/// against a small reference model of what the users should see.
///
/// Each step is a user or network event: a side goes offline (its link cut and its connection
/// broken) or back online (it reconnects by itself), a user sends, quits (SIGTERM) or restarts the
/// process, or a second passes. The network then settles (a reliable FIFO link, as WebSocket over
/// TCP), and the model predicts every side's lifecycle state, the messages each side has shown, and
/// which of its messages it reported delivered or undeliverable and why. `ChatWorld` also checks
/// its own invariants after every output. Failing sequences shrink.
@Suite("Two sessions against a lifecycle model", .shrinking, .cpuBound)
struct SessionLifecycleModelTests {
    enum Step: Hashable, Sendable, CustomStringConvertible {
        case connect(Int), disconnect(Int), send(Int), quit(Int), restart(Int), tick

        var description: String {
            switch self {
            case let .connect(side): "connect(\(side))"
            case let .disconnect(side): "disconnect(\(side))"
            case let .send(side): "send(\(side))"
            case let .quit(side): "quit(\(side))"
            case let .restart(side): "restart(\(side))"
            case .tick: "tick"
            }
        }
    }

    /// What one side's user should observe.
    struct SideModel {
        var instance: Int
        var alive = true
        /// The side's link works (it was not sent offline, or came back).
        var online = true
        var up = true
        /// The current process has been connected at least once (a process started offline is INIT).
        var everUp = true
        /// Whether a peer was present at some point during the current connection.
        var hadPeerThisConnection = false
        /// The peer instance of the last confirmed handshake (the conversation).
        var conversation: Int?
        /// Messages accepted, not yet resolved: text and the conversation they belong to.
        var pending: [(text: String, boundTo: Int?)] = []
        var shown: [String] = []
        var outcomes: [(text: String, outcome: String)] = []
    }

    struct Model {
        var sides: [SideModel]

        var paired: Bool { sides.allSatisfy { $0.alive && $0.up } }

        func predictedState(_ side: Int) -> SessionState {
            let model = sides[side]
            if !model.alive { return .destroyed }
            if !model.everUp { return .initial }
            if !model.up { return .disconnected }
            if paired { return .connected }
            return model.hadPeerThisConnection ? .disconnected : .searching
        }

        /// Both sides are up: the handshake completes and each side's queue is settled.
        mutating func pair() {
            for side in 0..<2 {
                sides[side].hadPeerThisConnection = true
                let peer = sides[1 - side].instance
                if let old = sides[side].conversation, old != peer {
                    let lost = sides[side].pending.filter { $0.boundTo == old }
                    sides[side].outcomes += lost.map { ($0.text, "undeliverable(\(UndeliverableReason.peerChanged))") }
                    sides[side].pending.removeAll { $0.boundTo == old }
                }
                sides[side].conversation = peer
            }
            for side in 0..<2 { flush(side) }
        }

        /// While paired, everything `side` has pending is shown by the peer and reported delivered.
        mutating func flush(_ side: Int) {
            for message in sides[side].pending {
                sides[1 - side].shown.append(message.text)
                sides[side].outcomes.append((message.text, "delivered"))
            }
            sides[side].pending.removeAll()
        }
    }

    static let steps = zip(Gen<Int>.int(in: 0...10), Gen<Int>.int(in: 0...1))
        .map { kind, side -> Step in
            switch kind {
            case 0, 1: .connect(side)
            case 2: .disconnect(side)
            case 3, 4, 5: .send(side)
            case 6: .quit(side)
            case 7: .restart(side)
            default: .tick
            }
        }
        .array(of: 0...30)

    @Test("Random lifecycles: states, shown messages and delivery reports match the model at every step",
          arguments: [false, true])
    func randomLifecycles(password: Bool) async {
        await propertyCheck(count: 60, input: Self.steps) { steps in
            let world = ChatWorld(configuration: ChatWorld.Configuration(
                session: SessionConfiguration(room: try! RoomCode("ROOM1")), password: password ? "oyster-lemon" : nil,
                // The model knows no seat reservations: a restarted process rejoins at once.
                seatGraceSeconds: 0))
            var model = Model(sides: [SideModel(instance: world.processes[0].instance),
                                      SideModel(instance: world.processes[1].instance)])
            // Both processes start online and connect by themselves.
            world.settle()
            model.pair()
            for (index, step) in steps.enumerated() {
                // A restarted process pairs anew even when both sides stay up.
                var wasPaired = model.paired
                switch step {
                case let .connect(side):
                    world.reconnect(side)
                    model.sides[side].online = true
                    if model.sides[side].alive && !model.sides[side].up {
                        model.sides[side].up = true
                        model.sides[side].everUp = true
                        model.sides[side].hadPeerThisConnection = false
                    }
                case let .disconnect(side):
                    world.disconnect(side)
                    model.sides[side].online = false
                    model.sides[side].up = false
                case let .send(side):
                    world.send(side, Array("m".utf8))
                    if model.sides[side].alive {
                        model.sides[side].pending.append((world.lastSentText, model.sides[side].conversation))
                        if model.paired { model.flush(side) }
                    }
                case let .quit(side):
                    world.quit(side)
                    if model.sides[side].alive {
                        let lost = model.sides[side].pending
                        model.sides[side].outcomes += lost.map { ($0.text, "undeliverable(\(UndeliverableReason.sessionEnded))") }
                        model.sides[side].pending.removeAll()
                        model.sides[side].alive = false
                        model.sides[side].up = false
                    }
                case let .restart(side):
                    world.restart(side)
                    let online = model.sides[side].online
                    model.sides[side] = SideModel(
                        instance: world.processes[side].instance, online: online, up: online, everUp: online)
                    wasPaired = false
                case .tick:
                    world.advance(by: .seconds(1))
                }
                world.settle()
                if model.paired && !wasPaired { model.pair() }

                let context = "after step \(index) \(step) of \(steps)"
                #expect(world.violations.isEmpty, "\(context): \(world.violations.joined(separator: "; "))")
                for side in 0..<2 {
                    let process = world.processes[side]
                    #expect(process.session.state == model.predictedState(side), "\(context): side \(side) state")
                    #expect(process.shown == model.sides[side].shown, "\(context): side \(side) shown")
                    #expect(process.outcomes.map(\.text) == model.sides[side].outcomes.map(\.text)
                        && process.outcomes.map(\.outcome) == model.sides[side].outcomes.map(\.outcome),
                            "\(context): side \(side) outcomes \(process.outcomes) vs \(model.sides[side].outcomes)")
                    #expect(process.session.pendingCount == model.sides[side].pending.count, "\(context): side \(side) pending")
                }
                if !world.violations.isEmpty { return }
            }
        }
    }
}
