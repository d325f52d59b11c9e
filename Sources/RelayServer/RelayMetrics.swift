import ChatCore
import Prometheus

/// Why the relay refused or ended something; one Prometheus label value each.
public enum RejectionReason: String, CaseIterable, Sendable {
    case frameTooLarge = "frame_too_large"
    case malformed = "malformed"
    case invalidRoom = "invalid_room"
    case roomFull = "room_full"
    case alreadyJoined = "already_joined"
    case notJoined = "not_joined"
    case noPeer = "no_peer"
    case rateLimited = "rate_limited"
    case joinRateLimited = "join_rate_limited"
    case connectionsMax = "connections_max"
    case connectionsPerAddressMax = "connections_per_address_max"
    case roomsMax = "rooms_max"
    case handshakeTimeout = "handshake_timeout"
    case idleTimeout = "idle_timeout"
    case notWebSocket = "not_websocket"

    /// The reason for an `ERROR` code the room logic or codec produced.
    init(_ code: RelayErrorCode) {
        switch code {
        case .frameTooLarge: self = .frameTooLarge
        case .invalidRoom: self = .invalidRoom
        case .roomFull: self = .roomFull
        case .alreadyJoined: self = .alreadyJoined
        case .notJoined: self = .notJoined
        case .noPeer: self = .noPeer
        case .rateLimited: self = .rateLimited
        case .joinRateLimited: self = .joinRateLimited
        case .tooManyConnections: self = .connectionsMax
        case .tooManyRooms: self = .roomsMax
        case .idleTimeout: self = .idleTimeout
        case .malformedJSON, .unknownType, .unknownField, .missingField, .invalidField, .invalidKind, .invalidBase64,
            .shuttingDown, .internalError:
            self = .malformed
        }
    }
}

/// The relay's Prometheus metrics: counts only (no room codes, no addresses, no payloads).
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
    private let rejections: [Counter]

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

    func reject(_ reason: RejectionReason) {
        rejections[RejectionReason.allCases.firstIndex(of: reason)!].increment()
    }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }
}
