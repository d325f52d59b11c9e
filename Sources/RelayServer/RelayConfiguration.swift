import ChatCore
import RelayCore

/// Everything the relay can be told: what only the NIO shell uses (addresses, TLS files) here,
/// and every limit in `limits` (RelayCore's `RelayLimits`, where each default is defined once).
///
/// The command line (`relay --help`) maps one flag to each field; `validate()` checks everything
/// before anything is bound.
public struct RelayConfiguration: Sendable, Hashable {
    /// The defaults, as `relay --help` shows them.
    public static let defaults = RelayConfiguration()

    // MARK: Addresses

    /// The address the WebSocket listener binds.
    public var host: String = "127.0.0.1"
    /// The WebSocket port (0: the kernel picks one; the startup line prints it).
    public var port: Int = 8080
    /// The address of the `/healthz` and `/metrics` listener.
    public var metricsHost: String = "127.0.0.1"
    /// The metrics port (0: the kernel picks one); -1 turns the metrics listener off.
    public var metricsPort: Int = 9090

    // MARK: TLS

    /// PEM certificate chain for `wss://`; TLS is on when both files are given.
    public var tlsCertificateFile: String?
    /// PEM private key for `wss://`.
    public var tlsKeyFile: String?

    // MARK: Cluster

    /// Cluster mode: the Redis that holds the rooms, `redis://HOST:PORT` (`--redis`); nil: a
    /// single relay, as without the flag.
    public var redisURL: String?
    /// A file holding the Redis password (never on the command line).
    public var redisPasswordFile: String?
    /// PEM certificates to trust for `rediss://` (default: the system's roots).
    public var redisCAFile: String?
    /// This node's name in logs, metrics and Redis (`--node-id`; nil: a random one).
    public var nodeName: String?

    // MARK: Limits

    /// Every limit the relay enforces (rates, caps, timeouts, watermarks).
    public var limits = RelayLimits()

    public init() {}

    /// Whether `wss://` is configured.
    public var usesTLS: Bool { tlsCertificateFile != nil }

    /// Check the addresses, the TLS files' pairing and every limit.
    public func validate() throws(InvalidRelaySetting) {
        func require(_ condition: Bool, _ flag: String, _ reason: String) throws(InvalidRelaySetting) {
            if !condition { throw InvalidRelaySetting(flag: flag, reason: reason) }
        }
        try require((0...65_535).contains(port), "port", "must be 0-65535")
        try require((-1...65_535).contains(metricsPort), "metrics-port", "must be -1 (off) or 0-65535")
        try require(
            (tlsCertificateFile == nil) == (tlsKeyFile == nil), "tls-cert-file",
            "give both --tls-cert-file and --tls-key-file"
        )
        let endpoint = try redisURL.map { url throws(InvalidRelaySetting) in try RedisEndpoint(url: url) }
        try require(redisCAFile == nil || endpoint?.usesTLS == true, "redis-ca-file", "needs --redis rediss://")
        try require(redisPasswordFile == nil || redisURL != nil, "redis-password-file", "needs --redis")
        try require(nodeName == nil || redisURL != nil, "node-id", "needs --redis")
        try require(
            nodeName.map(ClusterNodeName.isValid) ?? true, "node-id",
            "1-\(ClusterNodeName.lengthMax) characters of A-Z, a-z, 0-9, - and _")
        try limits.validate()
    }
}
