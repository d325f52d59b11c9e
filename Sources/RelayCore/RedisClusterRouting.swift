/// Redis Cluster's key routing, sans-IO: the hash slot of a key (CRC16 of its hash tag, per the
/// Redis Cluster specification), the slot map a `CLUSTER SLOTS` reply describes, and the
/// `-MOVED` / `-ASK` redirections. The relay's shell routes each command with these; a room is
/// one key (`ClusterWire.roomKey`), so a script only ever touches one slot.
public enum RedisSlots {
    /// Redis Cluster's number of hash slots.
    public static let count = 16_384

    /// CRC16-CCITT in its XMODEM form (polynomial 0x1021, initial value 0, no reflection), the
    /// function the Redis Cluster specification names ("123456789" gives 0x31C3).
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }

    /// The slot of a key (or a sharded channel): of the bytes between its first `{` and the next
    /// `}` when there are some, else of the whole key.
    public static func slot(of key: [UInt8]) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            hashed = key[(open + 1)..<close]
        }
        return Int(crc16(hashed) & 0x3FFF)
    }

    /// String form of `slot(of:)`.
    public static func slot(of key: String) -> Int { slot(of: Array(key.utf8)) }
}

/// A Redis server's address as Redis Cluster reports it (an empty host: the one the question
/// went to, which the caller substitutes).
public struct RedisServerAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public static func < (lhs: RedisServerAddress, rhs: RedisServerAddress) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Host and port fields as Redis writes them; nil unless the port is 1-65535 and the host
    /// at most 255 bytes without spaces or control bytes.
    static func parse(host: [UInt8], port: Int64) -> RedisServerAddress? {
        guard (1...65_535).contains(port), host.count <= 255, host.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            return nil
        }
        return RedisServerAddress(host: String(decoding: host, as: UTF8.self), port: Int(port))
    }
}

/// Which master serves each slot, from a `CLUSTER SLOTS` reply.
public struct RedisSlotMap: Hashable, Sendable {
    /// Why a `CLUSTER SLOTS` reply was not usable.
    public enum Invalid: Error, Hashable, Sendable {
        /// Not the shape Redis documents (an array of [start, end, [host, port, ...], ...]).
        case shape
        /// A slot range out of 0...16383 or backwards, or two ranges overlapping.
        case range
        /// A host or port that cannot be one.
        case address
        /// Some slot has no master: the cluster is not fully set up.
        case uncovered
    }

    /// The masters, sorted (each connection's index in `owners`).
    public let masters: [RedisServerAddress]
    private let owners: [UInt16]

    /// The master serving `slot` (0..<16384).
    public func master(forSlot slot: Int) -> RedisServerAddress {
        masters[Int(owners[slot & 0x3FFF])]
    }

    /// The master serving `key`'s slot.
    public func master(for key: [UInt8]) -> RedisServerAddress {
        master(forSlot: RedisSlots.slot(of: key))
    }

    /// Parse `CLUSTER SLOTS`'s reply; `asked`: the server the question went to (an empty host in
    /// the reply means it). Every slot must be covered exactly once.
    public init(clusterSlots reply: RESPValue, asked: RedisServerAddress) throws(Invalid) {
        guard let ranges = reply.elements, !ranges.isEmpty, ranges.count <= RedisSlots.count else { throw .shape }
        var found: [(Int, Int, RedisServerAddress)] = []
        for range in ranges {
            guard let fields = range.elements, fields.count >= 3, case let .integer(start) = fields[0],
                case let .integer(end) = fields[1], let master = fields[2].elements, master.count >= 2,
                let host = master[0].bytes, case let .integer(port) = master[1]
            else { throw .shape }
            guard 0 <= start, start <= end, end < Int64(RedisSlots.count) else { throw .range }
            guard var address = RedisServerAddress.parse(host: host, port: port) ?? (host.isEmpty ? asked : nil) else {
                throw .address
            }
            if address.host.isEmpty || address.host == "?" { address.host = asked.host }
            found.append((Int(start), Int(end), address))
        }
        let masters = Array(Set(found.map(\.2))).sorted()
        var owners = [UInt16](repeating: UInt16.max, count: RedisSlots.count)
        for (start, end, address) in found {
            // Sorted and distinct: the index is found.
            let index = UInt16(masters.firstIndex(of: address) ?? 0)
            for slot in start...end {
                guard owners[slot] == UInt16.max else { throw .range }
                owners[slot] = index
            }
        }
        guard !owners.contains(UInt16.max) else { throw .uncovered }
        self.masters = masters
        self.owners = owners
    }
}

/// A Redis Cluster redirection: `-MOVED <slot> <host>:<port>` (the slot lives there now: update
/// the map) or `-ASK <slot> <host>:<port>` (it is being migrated: this one command goes there,
/// after `ASKING`).
public enum RedisRedirect: Hashable, Sendable {
    case moved(slot: Int, to: RedisServerAddress)
    case ask(slot: Int, to: RedisServerAddress)

    /// Parse an error reply's text; nil when it is no redirection (or a malformed one). An empty
    /// host (`MOVED 12 :7001`, Redis's "unknown endpoint") is `asked`'s host.
    public static func parse(_ error: [UInt8], asked: RedisServerAddress) -> RedisRedirect? {
        let fields = error.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard fields.count == 3, fields[1].count <= 5, let slot = try? RESPParser.integer(Array(fields[1])),
            (0..<Int64(RedisSlots.count)).contains(slot), let colon = fields[2].lastIndex(of: UInt8(ascii: ":")),
            let port = try? RESPParser.integer(Array(fields[2][(colon + 1)...]))
        else { return nil }
        var host = Array(fields[2][..<colon])
        if host.first == UInt8(ascii: "["), host.last == UInt8(ascii: "]") { host = Array(host.dropFirst().dropLast()) }
        guard var address = RedisServerAddress.parse(host: host, port: port) else { return nil }
        if host.isEmpty { address.host = asked.host }
        switch Array(fields[0]) {
        case Array("MOVED".utf8): return .moved(slot: Int(slot), to: address)
        case Array("ASK".utf8): return .ask(slot: Int(slot), to: address)
        default: return nil
        }
    }
}
