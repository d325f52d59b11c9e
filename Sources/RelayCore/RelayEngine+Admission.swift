import ChatCore

/// Admission: the global caps, the per-address caps (an IPv4 address or IPv6 /64, and the /56
/// and /48 around it), the cap on connections without a room, and where the address comes from
/// (`--trust-proxy`).
extension RelayEngine {
    /// A TCP connection was accepted from `address` (the socket's peer): number it, count it and
    /// decide. With `--trust-proxy proxy-protocol` the per-address caps wait for
    /// `proxyHeaderRead`; with `shared-address` there are none.
    public mutating func accept(from address: RelayAddress, now: Instant) -> Acceptance {
        let id = ConnectionID(nextConnectionID)
        nextConnectionID += 1
        storedCounters.connectionsAccepted += 1
        storedCounters.connectionsOpen += 1
        let open = storedCounters.connectionsOpen
        let disposition: Acceptance.Disposition
        if isShuttingDown || open > limits.connectionsMax + RelayLimits.refusalSlack {
            connections[id] = ConnectionRecord(countedUnder: nil, roomless: false, state: .disconnecting)
            return Acceptance(id: id, disposition: .drop)
        } else if open > limits.connectionsMax {
            disposition = .refuse(.tooManyConnections, .connectionsMax)
            upgrading(id, countedUnder: nil, refusal: (.tooManyConnections, .connectionsMax), now: now)
        } else {
            switch limits.trustProxy {
            case .none:
                let (admission, key) = admit(address.limitsKey, now: now)
                disposition = admission
                upgrading(id, countedUnder: key, refusal: admission.refusal, now: now)
            case .sharedAddress:
                disposition = .serve
                upgrading(id, countedUnder: nil, refusal: nil, now: now)
            case .proxyProtocol:
                disposition = .serve
                upgrading(id, countedUnder: nil, refusal: nil, awaitsProxyHeader: true, now: now)
            }
        }
        return Acceptance(id: id, disposition: disposition)
    }

    /// `--trust-proxy proxy-protocol`: the connection's PROXY protocol v2 header was read. It
    /// names the client's `address`, or nil for a connection the proxy made itself (a health
    /// check: the LOCAL command), which no per-address cap counts. The per-address caps apply
    /// now; a refusal is told once the upgrade is done, as at accept.
    public mutating func proxyHeaderRead(_ id: ConnectionID, client address: RelayAddress?, now: Instant) {
        guard let index = connections.index(forKey: id),
            case var .upgrading(upgrading) = connections.values[index].state, upgrading.awaitsProxyHeader
        else { return }
        upgrading.awaitsProxyHeader = false
        if let address {
            let (admission, key) = admit(address.limitsKey, now: now)
            connections.values[index].countedUnder = key
            connections.values[index].roomless = key != nil
            upgrading.refusal = admission.refusal
        }
        connections.values[index].state = .upgrading(upgrading)
    }

    private mutating func upgrading(
        _ id: ConnectionID, countedUnder: AddressKey?, refusal: (RelayErrorCode, RejectionReason)?,
        awaitsProxyHeader: Bool = false, now: Instant
    ) {
        let deadline = now.advanced(by: .seconds(limits.handshakeTimeoutSeconds))
        let state = Upgrading(deadline: deadline, refusal: refusal, awaitsProxyHeader: awaitsProxyHeader)
        connections[id] = ConnectionRecord(
            countedUnder: countedUnder, roomless: countedUnder != nil, state: .upgrading(state))
        timers.insert(TimerEntry(deadline: deadline, connection: id))
    }

    /// Count a new connection under `key` (its address entry, its wider IPv6 prefixes, and among
    /// its room-less connections) and decide. A refused connection stays counted until it closes
    /// (it is closed once told why), so a flood of refused connections cannot slip under a cap.
    private mutating func admit(_ key: AddressKey, now: Instant) -> (Acceptance.Disposition, AddressKey?) {
        if addresses[key] == nil {
            guard addresses.count < limits.addressesTrackedMax else {
                return (.refuse(.tooManyConnections, .connectionsMax), nil)
            }
            let perMinute = UInt64(limits.joinsPerAddressPerMinute)
            addresses[key] = AddressEntry(
                openConnections: 0, roomlessConnections: 0,
                joinBucket: TokenBucket(
                    ratePerSecond: perMinute, burst: perMinute * RelayLimits.joinCostTokens, now: now)
            )
        }
        addresses[key]!.openConnections += 1
        addresses[key]!.roomlessConnections += 1
        let entry = addresses[key]!
        var overPrefixCap = false
        for (index, prefix) in key.widerPrefixes.enumerated() {
            let count = prefixConnections[prefix, default: 0] + 1
            prefixConnections[prefix] = count
            let cap = index == 0 ? limits.connectionsPerIPv6Prefix56Max : limits.connectionsPerIPv6Prefix48Max
            if count > cap { overPrefixCap = true }
        }
        if entry.openConnections > limits.connectionsPerAddressMax {
            return (.refuse(.tooManyConnections, .connectionsPerAddressMax), key)
        }
        if overPrefixCap { return (.refuse(.tooManyConnections, .connectionsPerPrefixMax), key) }
        if entry.roomlessConnections > limits.roomlessConnectionsPerAddressMax {
            return (.refuse(.tooManyConnections, .roomlessConnectionsMax), key)
        }
        return (.serve, key)
    }

    /// Take a closed connection off every count it was added to.
    mutating func uncount(_ record: ConnectionRecord<Frame>) {
        guard let key = record.countedUnder, var entry = addresses[key] else { return }
        entry.openConnections -= 1
        if record.roomless { entry.roomlessConnections -= 1 }
        addresses[key] = entry
        for prefix in key.widerPrefixes {
            let count = prefixConnections[prefix, default: 1] - 1
            prefixConnections[prefix] = count > 0 ? count : nil
        }
    }

    /// The connection is in a room now: it no longer counts among its address's room-less ones,
    /// and its JOIN deadline is off.
    mutating func enteredRoom(_ id: ConnectionID) {
        guard let index = connections.index(forKey: id) else { return }
        _ = connections.values[index].withServing { $0.joinDeadline = nil }
        guard connections.values[index].roomless else { return }
        connections.values[index].roomless = false
        if let key = connections.values[index].countedUnder { addresses[key]?.roomlessConnections -= 1 }
    }
}

extension Acceptance.Disposition {
    /// The refusal to tell once the upgrade is done, if this is one.
    var refusal: (RelayErrorCode, RejectionReason)? {
        if case let .refuse(code, reason) = self { (code, reason) } else { nil }
    }
}
