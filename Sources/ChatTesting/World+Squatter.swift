import ChatCore
import ClientCore

/// Room squatters: strangers who know a room's room part (all the relay ever sees of a code) and try
/// to take a seat in it. A squatter runs no process and no session; it is the smallest thing that
/// tests the relay's two-peer cap: it connects, sends one JOIN without a reconnect token, and leaves
/// with a clean close (which frees a seat it got) as soon as the relay answers.
extension World {
    /// A squatter's slot for `room` (after the scenario's clients: indices of squatters never pair
    /// with anyone). Try with `squat(_:)`.
    @discardableResult
    public func addSquatter(room: RoomCode) -> Int {
        let driver = DriverConfiguration(session: SessionConfiguration(room: room), interactive: false)
        let index = addClient(room: room, driver: driver, password: nil)
        clients[index].isSquatter = true
        return index
    }

    /// The squatter in slot `index` tries once, unless it is still trying (then false).
    @discardableResult
    public func squat(_ index: Int) -> Bool {
        let client = clients[index]
        guard client.isSquatter, client.links.isEmpty else { return false }
        let link = LinkID(UInt32(links.count))
        let id = ConnectionID(UInt64(link.value))
        links.append(Link(client: Int32(index), incarnation: client.incarnation, clientID: id))
        buffers.append(LinkBuffers())
        client.links.append((id, link))
        counters.connections += 1
        record(.connectAttempt, client: index, link: link)
        let arrives = relayUp || isCluster
        queue.schedule(after: faults.oneWayDelay(), arrives ? .connectArrives(link) : .connectRefused(link))
        return true
    }

    /// Whether `link` belongs to a squatter (whose events the client shell does not handle).
    func isSquatterLink(_ link: LinkID) -> Bool {
        clients[Int(links[Int(link.value)].client)].isSquatter
    }

    /// The connection is up: the JOIN goes out.
    func squatterUp(_ link: LinkID) {
        let client = clients[Int(links[Int(link.value)].client)]
        guard links[Int(link.value)].clientOpen, !links[Int(link.value)].broken else { return }
        links[Int(link.value)].clientUp = true
        record(.linkUp, client: client.index, link: link)
        transmit(.text(WireCodec.encode(ClientMessage.join(client.room))), on: link, toRelay: true)
    }

    /// What the relay wrote to a squatter: its answer to the JOIN ends the attempt; anything else
    /// (a peer's SIGNAL while it held a seat, a ping) is ignored.
    func squatterReceives(_ link: LinkID, _ frame: WireFrame) {
        guard links[Int(link.value)].clientOpen, !links[Int(link.value)].broken else { return }
        switch frame {
        case let .text(bytes):
            record(.frameAtClient, client: Int(links[Int(link.value)].client), link: link, value: UInt64(bytes.count))
            switch try? WireCodec.decodeRelayMessage(bytes) {
            case .joined?, .joinedWithToken?, .error?: squatterLeaves(link)
            default: break
            }
        case .close: squatterSeesClose(link)
        case .ping, .pong, .binary: break
        }
    }

    /// The squatter closes cleanly: its close frame reaches the relay behind its JOIN.
    private func squatterLeaves(_ link: LinkID) {
        let client = clients[Int(links[Int(link.value)].client)]
        client.links.removeAll { $0.link == link }
        links[Int(link.value)].clientOpen = false
        links[Int(link.value)].closedByClientFrame = true
        queue.schedule(after: closeDelay, .relaySeesClose(link))
    }

    /// The connection ended under the squatter (refused, reset, closed by the relay).
    func squatterSeesClose(_ link: LinkID) {
        let client = clients[Int(links[Int(link.value)].client)]
        let wasOpen = links[Int(link.value)].clientOpen
        links[Int(link.value)].clientOpen = false
        client.links.removeAll { $0.link == link }
        if wasOpen { record(.clientSeesClose, client: client.index, link: link) }
        if wasOpen && links[Int(link.value)].relayOpen && !links[Int(link.value)].broken {
            queue.schedule(after: faults.oneWayDelay(), .relaySeesClose(link))
        }
    }
}
