import Prometheus
import RelayCore

/// The relay's Prometheus metrics: counts only (no room codes, no addresses, no payloads). The
/// counting is RelayEngine's (`RelayCounters`); the shell copies the counts here when `/metrics`
/// is scraped.
///
/// swift-prometheus's registry is used directly rather than through the swift-metrics facade:
/// the relay owns its registry (tests run several relays in one process space) and there is no
/// global bootstrap to get wrong.
public final class RelayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    let connectionsAccepted: Counter
    let connectionsOpen: Gauge
    let webSocketsOpen: Gauge
    let roomsOpen: Gauge
    let framesReceived: Counter
    let bytesReceived: Counter
    let framesForwarded: Counter
    let bytesForwarded: Counter
    let pingsSent: Counter
    let seatsReserved: Gauge
    let seatsReclaimed: Counter
    private let rejections: [Counter]
    let clusterAvailable: Gauge
    let clusterRoundTrip: Gauge
    let clusterPublishErrors: Counter
    let clusterReconnects: Counter
    let clusterMalformed: Counter
    let clusterSignalsDropped: Counter
    let binarySignalsReceived: Counter
    let signalsConverted: Counter

    public init() {
        connectionsAccepted = registry.makeCounter(
            descriptor: Self.name("connections_accepted_total", "TCP connections accepted"))
        connectionsOpen = registry.makeGauge(
            descriptor: Self.name("connections_open", "TCP connections open, any state"))
        webSocketsOpen = registry.makeGauge(
            descriptor: Self.name("websockets_open", "connections past the WebSocket upgrade"))
        roomsOpen = registry.makeGauge(descriptor: Self.name("rooms_open", "rooms with at least one peer"))
        framesReceived = registry.makeCounter(descriptor: Self.name("frames_received_total", "text frames received"))
        bytesReceived = registry.makeCounter(
            descriptor: Self.name("bytes_received_total", "payload bytes of text frames received"))
        framesForwarded = registry.makeCounter(
            descriptor: Self.name("frames_forwarded_total", "SIGNAL frames forwarded to a peer"))
        bytesForwarded = registry.makeCounter(
            descriptor: Self.name("bytes_forwarded_total", "payload bytes of SIGNAL frames forwarded"))
        pingsSent = registry.makeCounter(descriptor: Self.name("pings_sent_total", "WebSocket pings sent"))
        seatsReserved = registry.makeGauge(
            descriptor: Self.name("seats_reserved", "seats reserved for a departed peer's reconnect token"))
        seatsReclaimed = registry.makeCounter(
            descriptor: Self.name("seats_reclaimed_total", "seats taken back with their reconnect token"))
        clusterAvailable = registry.makeGauge(
            descriptor: Self.name("cluster_available", "1 while this node's redis answers (0 for a single relay)"))
        clusterRoundTrip = registry.makeGauge(
            descriptor: Self.name("cluster_redis_rtt_microseconds", "the last heartbeat's round trip to redis"))
        clusterPublishErrors = registry.makeCounter(
            descriptor: Self.name("cluster_publish_errors_total", "SIGNALs to another node that redis did not take"))
        clusterReconnects = registry.makeCounter(
            descriptor: Self.name("cluster_reconnects_total", "connection attempts to redis after a failure"))
        clusterMalformed = registry.makeCounter(
            descriptor: Self.name("cluster_malformed_messages_total", "pub/sub messages that did not parse"))
        clusterSignalsDropped = registry.makeCounter(
            descriptor: Self.name(
                "cluster_signals_dropped_total", "SIGNALs from another node dropped: the receiver's queue was full"))
        binarySignalsReceived = registry.makeCounter(
            descriptor: Self.name("binary_signals_received_total", "binary SIGNAL frames received (securechat.binary)"))
        signalsConverted = registry.makeCounter(
            descriptor: Self.name(
                "signals_converted_total", "binary SIGNALs forwarded in their text form to a peer without binary"))
        let registry = self.registry
        rejections = RejectionReason.allCases.map { reason in
            registry.makeCounter(
                descriptor: Self.name("rejections_total", "refusals and forced closes, by reason"),
                labels: [("reason", reason.rawValue)]
            )
        }
    }

    /// `relay_<metric>`, with its help text (empty parts of a descriptor are left out of the name,
    /// so the unit is kept inside `metric`: `frames_received_total`, `rooms_open`).
    private static func name(_ metric: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "relay", subsystem: nil, metricName: metric, unitName: "", helpText: help)
    }

    /// Bring the registry up to `counters`; `previous` is what the last call exported (counters
    /// only grow, so each Prometheus counter is incremented by the difference).
    func export(_ counters: RelayCounters, since previous: RelayCounters) {
        func add(_ counter: Counter, _ now: Int, _ before: Int) {
            if now > before { counter.increment(by: Int64(now - before)) }
        }
        add(connectionsAccepted, counters.connectionsAccepted, previous.connectionsAccepted)
        connectionsOpen.set(Int64(counters.connectionsOpen))
        webSocketsOpen.set(Int64(counters.webSocketsOpen))
        roomsOpen.set(Int64(counters.roomsOpen))
        add(framesReceived, counters.framesReceived, previous.framesReceived)
        add(bytesReceived, counters.bytesReceived, previous.bytesReceived)
        add(framesForwarded, counters.framesForwarded, previous.framesForwarded)
        add(bytesForwarded, counters.bytesForwarded, previous.bytesForwarded)
        add(pingsSent, counters.pingsSent, previous.pingsSent)
        seatsReserved.set(Int64(counters.seatsReserved))
        add(seatsReclaimed, counters.seatsReclaimed, previous.seatsReclaimed)
        add(clusterSignalsDropped, counters.clusterSignalsDropped, previous.clusterSignalsDropped)
        add(binarySignalsReceived, counters.binarySignalsReceived, previous.binarySignalsReceived)
        add(signalsConverted, counters.signalsConverted, previous.signalsConverted)
        for (reason, counter) in zip(RejectionReason.allCases, rejections) {
            add(counter, counters.rejections(reason), previous.rejections(reason))
        }
    }

    /// Cluster mode's figures; the counts are increments since the last call.
    func exportCluster(
        available: Bool, roundTripNanoseconds: UInt64, publishErrors: Int, reconnects: Int, malformed: Int
    ) {
        clusterAvailable.set(Int64(available ? 1 : 0))
        clusterRoundTrip.set(Int64(roundTripNanoseconds / 1000))
        if publishErrors > 0 { clusterPublishErrors.increment(by: Int64(publishErrors)) }
        if reconnects > 0 { clusterReconnects.increment(by: Int64(reconnects)) }
        if malformed > 0 { clusterMalformed.increment(by: Int64(malformed)) }
    }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }
}
