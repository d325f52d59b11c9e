import ChatCore
@_spi(Simulation) import RelayCore

/// Faults the world can suffer; the scenario decides when.
extension World {
    /// `client`'s live connection breaks (a reset): each end notices when the reset reaches it.
    public func reset(_ index: Int) {
        let client = clients[index]
        guard let link = client.links.last?.link, !links[Int(link.value)].broken else { return }
        counters.resets += 1
        record(.reset, client: index, link: link)
        links[Int(link.value)].broken = true
        queue.schedule(after: faults.oneWayDelay(), .clientSeesClose(link))
        queue.schedule(after: faults.oneWayDelay(), .relaySeesClose(link))
    }

    /// Everything to and from `client` is lost for `duration` (a partition of its link).
    public func cut(_ index: Int, for duration: Duration) {
        let client = clients[index]
        client.cutUntil = max(client.cutUntil, now.advanced(by: duration))
        counters.partitions += 1
        record(.partition, client: index, value: duration.wholeMilliseconds)
    }

    /// `client`'s link works again (a cut ends early).
    public func restore(_ index: Int) {
        clients[index].cutUntil = now
    }

    /// `client`'s process dies: nothing is said, its sockets close (the relay hears of it), and
    /// the slot is empty until `startProcess`.
    public func crashProcess(_ index: Int) {
        let client = clients[index]
        guard client.isRunning else { return }
        counters.processCrashes += 1
        record(.clientCrash, client: index)
        closeAllLinks(of: client)
        client.driver = nil
        // Its files close with it (and their locks go): the disk and every `.part` stay.
        (client.fileStore as? InMemoryFileStore)?.processEnded()
    }

    /// The relay process dies: every connection breaks (each client notices), all room state is
    /// lost, and connects are refused until `restartRelay`.
    public func crashRelay() {
        guard relayUp else { return }
        counters.relayCrashes += 1
        record(.relayCrash)
        relayUp = false
        for link in relayLinks.all {
            links[Int(link.value)].broken = true
            links[Int(link.value)].relayOpen = false
            if links[Int(link.value)].clientOpen {
                queue.schedule(after: faults.oneWayDelay(), .clientSeesClose(link))
            }
        }
        relayLinks.removeAll()
        for client in clients { client.relayLinks.removeAll() }
        relayArmedTimer = nil
    }

    /// A fresh relay process starts listening (with no memory of the old one's rooms).
    public func restartRelay() {
        guard !relayUp else { return }
        record(.relayRestart)
        relayGeneration += 1
        relay = Self.makeRelay(configuration, now: now, process: counters.relayCrashes)
        relayUp = true
        armRelayTimer()
    }

    /// The relay process stops (SIGSTOP): nothing is read, written or timed out; connects hang.
    public func freezeRelay() {
        relayFrozen = true
    }

    /// The stopped relay runs again: it accepts the connects that waited, reads what its
    /// connections sent meanwhile, then learns of the ones that closed.
    public func thawRelay() {
        guard relayFrozen else { return }
        relayFrozen = false
        let connects = frozenConnects
        let closes = frozenCloses
        frozenConnects.removeAll()
        frozenCloses.removeAll()
        for link in connects { connectArrives(link) }
        for link in relayLinks.all where !links[Int(link.value)].readPaused {
            if let id = links[Int(link.value)].relayID { deliverWaiting(id, link) }
        }
        for link in closes { relaySeesClose(link) }
        drainRelay()
    }

    /// Every fault stops: no more drops or duplicates, no cut link, the relay up.
    public func heal() {
        faults.active = false
        if isCluster { healCluster() } else { restartRelay() }
        for client in clients { client.cutUntil = .zero }
    }
}
