import ChatCore

/// A held network (`NetworkFaults.held`): frames wait on their link in order, and the scenario
/// moves them one by one, as a fuzz input or a test decides. Connection events (connects, closes)
/// and timers still run from the queue, so `settle()` and `advance(by:)` run them.
extension World {
    /// Which way a held frame travels.
    public enum Direction: Sendable {
        case toRelay
        case toClient
    }

    func hold(_ frame: WireFrame, on link: LinkID, toRelay: Bool) {
        if toRelay {
            buffers[Int(link.value)].heldToRelay.append(frame)
        } else {
            links[Int(link.value)].bytesToClient += frame.byteCount
            buffers[Int(link.value)].heldToClient.append(frame)
            relayQueueGrew(link)
        }
    }

    /// The link of `client` with frames waiting in `direction`: the oldest such.
    private func heldLink(_ client: Int, _ direction: Direction) -> LinkID? {
        for (_, link) in clients[client].links where !heldFrames(link, direction).isEmpty { return link }
        for link in clients[client].relayLinks where !heldFrames(link, direction).isEmpty { return link }
        return nil
    }

    private func heldFrames(_ link: LinkID, _ direction: Direction) -> [WireFrame] {
        direction == .toRelay ? buffers[Int(link.value)].heldToRelay : buffers[Int(link.value)].heldToClient
    }

    private func takeHeld(_ link: LinkID, _ direction: Direction, at index: Int) -> WireFrame {
        switch direction {
        case .toRelay: buffers[Int(link.value)].heldToRelay.remove(at: index)
        case .toClient: buffers[Int(link.value)].heldToClient.remove(at: index)
        }
    }

    /// Frames waiting for `client` in `direction`, on all of its links.
    public func heldCount(_ client: Int, _ direction: Direction) -> Int {
        var count = 0
        for (_, link) in clients[client].links { count += heldFrames(link, direction).count }
        for link in clients[client].relayLinks where !clients[client].links.contains(where: { $0.link == link }) {
            count += heldFrames(link, direction).count
        }
        return count
    }

    /// The text frames waiting for `client` in `direction`, oldest first (for inspection); a
    /// binary SIGNAL in its text form.
    public func heldTexts(_ client: Int, _ direction: Direction) -> [[UInt8]] {
        guard let link = heldLink(client, direction) else { return [] }
        return heldFrames(link, direction).compactMap(\.textForm)
    }

    /// Deliver the waiting frame number `index % count` (0: the oldest, as TCP would), through
    /// `heldTap` when one is set.
    public func deliverHeld(_ client: Int, _ direction: Direction, index: Int = 0) {
        guard let link = heldLink(client, direction) else { return }
        let frame = takeHeld(link, direction, at: index % heldFrames(link, direction).count)
        var copies = [frame]
        if let heldTap, let bytes = frame.textForm {
            // A binary SIGNAL is tapped in its text form and goes on binary if it still is a SIGNAL.
            copies = heldTap(client, direction, bytes).map { frame.sameForm($0) }
            if copies.isEmpty, direction == .toClient { links[Int(link.value)].bytesToClient -= frame.byteCount }
        }
        for copy in copies {
            switch direction {
            case .toRelay: frameArrivesAtRelay(link, copy)
            case .toClient: frameArrivesAtClient(link, copy)
            }
        }
    }

    /// Drop the waiting frame number `index % count`.
    public func dropHeld(_ client: Int, _ direction: Direction, index: Int) {
        guard let link = heldLink(client, direction) else { return }
        let frame = takeHeld(link, direction, at: index % heldFrames(link, direction).count)
        if direction == .toClient { links[Int(link.value)].bytesToClient -= frame.byteCount }
        counters.framesDropped += 1
    }

    /// Move waiting frame number `index % count` behind the others (a relay that reorders).
    public func moveHeldToBack(_ client: Int, _ direction: Direction, index: Int) {
        guard let link = heldLink(client, direction) else { return }
        let frame = takeHeld(link, direction, at: index % heldFrames(link, direction).count)
        switch direction {
        case .toRelay: buffers[Int(link.value)].heldToRelay.append(frame)
        case .toClient: buffers[Int(link.value)].heldToClient.append(frame)
        }
    }

    /// Replace the text of waiting frame number `index % count` (a tampering relay or network);
    /// nil leaves a non-text frame alone. A copy may be appended instead (`duplicate`).
    public func alterHeld(
        _ client: Int, _ direction: Direction, index: Int, duplicate: Bool = false, _ change: ([UInt8]) -> [UInt8]?
    ) {
        guard let link = heldLink(client, direction) else { return }
        let frames = heldFrames(link, direction)
        let position = index % frames.count
        guard let bytes = frames[position].textForm, let altered = change(bytes) else { return }
        let replaced = frames[position].sameForm(altered)
        switch (direction, duplicate) {
        case (.toRelay, false): buffers[Int(link.value)].heldToRelay[position] = replaced
        case (.toRelay, true): buffers[Int(link.value)].heldToRelay.append(replaced)
        case (.toClient, false): buffers[Int(link.value)].heldToClient[position] = replaced
        case (.toClient, true): buffers[Int(link.value)].heldToClient.append(replaced)
        }
    }

    /// Hand `client` a frame as if from the relay, on its newest open link, at once.
    public func injectToClient(_ client: Int, _ bytes: [UInt8]) {
        guard let link = clients[client].links.last?.link, links[Int(link.value)].clientUp else { return }
        frameArrivesAtClient(link, .text(bytes))
    }

    /// Run what is due now and deliver every waiting frame in order, links taken in turn, until
    /// nothing moves or `deliveriesMax` deliveries were made. Returns false if it did not settle.
    @discardableResult
    public func settle(deliveriesMax: Int = 8_192) -> Bool {
        var deliveries = 0
        // Bounded by `deliveriesMax`.
        while deliveries < deliveriesMax {
            var moved = false
            for index in clients.indices {
                for direction in [Direction.toRelay, .toClient] where heldCount(index, direction) > 0 {
                    deliverHeld(index, direction)
                    deliveries += 1
                    moved = true
                }
            }
            if !moved && !hasEventDue(at: now) { return true }
            runDue(until: now)
        }
        return false
    }

    /// Let virtual time pass: run every timer and connection event up to `now + duration`, in
    /// order (frames stay held).
    public func advance(by duration: Duration) {
        let end = now.advanced(by: duration)
        runDue(until: end)
        queue.advance(to: end)
    }

    private func hasEventDue(at time: Instant) -> Bool {
        guard let next = queue.nextTime else { return false }
        return next <= time
    }

    /// Handle every queued event due by `time` (scenario events are not expected in a held world
    /// and are dropped).
    func runDue(until time: Instant) {
        // Bounded: each round takes one event off the queue; timers re-arm strictly later.
        for _ in 0..<1_000_000 {
            guard let next = queue.nextTime, next <= time else { return }
            _ = step()
        }
    }
}
