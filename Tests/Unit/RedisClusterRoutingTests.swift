import RelayCore
import Testing

/// Redis Cluster routing (sans-IO): CRC16 and hash slots per the Redis Cluster specification,
/// `CLUSTER SLOTS` replies, `-MOVED` / `-ASK` redirections.
@Suite("Redis Cluster routing")
struct RedisClusterRoutingTests {
    static func bulk(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }
    static let asked = RedisServerAddress(host: "10.0.0.1", port: 7000)

    @Test("CRC16 is the specification's XMODEM variant: \"123456789\" gives 0x31C3")
    func crc16() {
        #expect(RedisSlots.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisSlots.crc16([UInt8]()) == 0)
    }

    @Test("Slots: the whole key, or its hash tag's bytes (first { to the next }, when not empty)")
    func slots() {
        // Values redis-cli CLUSTER KEYSLOT gives.
        #expect(RedisSlots.slot(of: "foo") == 12_182)
        #expect(RedisSlots.slot(of: "123456789") == 0x31C3 & 0x3FFF)
        #expect(RedisSlots.slot(of: "{user1000}.following") == RedisSlots.slot(of: "user1000"))
        #expect(RedisSlots.slot(of: "foo{}{bar}") == RedisSlots.slot(of: "foo{}{bar}"))
        #expect(RedisSlots.slot(of: "foo{}{bar}") != RedisSlots.slot(of: "bar"), "an empty tag hashes the whole key")
        #expect(RedisSlots.slot(of: "foo{{bar}}zap") == RedisSlots.slot(of: "{bar"))
        #expect(RedisSlots.slot(of: "foo{bar}{zap}") == RedisSlots.slot(of: "bar"))
        #expect(RedisSlots.slot(of: "sc:{00ff}") == RedisSlots.slot(of: "00ff"), "a room's keys share its slot")
        #expect(RedisSlots.slot(of: "open{only") == RedisSlots.slot(of: Array("open{only".utf8)))
    }

    static func range(_ start: Int64, _ end: Int64, _ host: String, _ port: Int64) -> RESPValue {
        .array([.integer(start), .integer(end), .array([bulk(host), .integer(port), bulk("id"), .array([])])])
    }

    @Test("CLUSTER SLOTS: every slot's master; an empty host is the server asked")
    func slotMap() throws {
        let reply = RESPValue.array([
            Self.range(0, 5460, "127.0.0.1", 7001),
            Self.range(5461, 10922, "", 7002),
            .array([.integer(10923), .integer(16383), .array([Self.bulk("127.0.0.1"), .integer(7003)]),
                    .array([Self.bulk("127.0.0.1"), .integer(7013)])]),
        ])
        let map = try RedisSlotMap(clusterSlots: reply, asked: Self.asked)
        #expect(map.masters.count == 3)
        #expect(map.master(forSlot: 0) == RedisServerAddress(host: "127.0.0.1", port: 7001))
        #expect(map.master(forSlot: 5461) == RedisServerAddress(host: "10.0.0.1", port: 7002))
        #expect(map.master(forSlot: 16383) == RedisServerAddress(host: "127.0.0.1", port: 7003))
        #expect(map.master(for: Array("foo".utf8)) == RedisServerAddress(host: "127.0.0.1", port: 7003))
    }

    @Test("CLUSTER SLOTS refused: wrong shapes, ranges out of bounds, backwards or overlapping, a gap, bad ports")
    func slotMapInvalid() {
        let cases: [(RESPValue, RedisSlotMap.Invalid)] = [
            (.array([]), .shape),
            (Self.bulk("x"), .shape),
            (.array([.array([.integer(0), .integer(16383)])]), .shape),
            (.array([Self.range(0, 16384, "h", 1)]), .range),
            (.array([Self.range(5, 4, "h", 1)]), .range),
            (.array([Self.range(0, 16383, "h", 1), Self.range(5, 5, "h", 2)]), .range),
            (.array([Self.range(0, 16000, "h", 1)]), .uncovered),
            (.array([Self.range(0, 16383, "h", 0)]), .address),
            (.array([Self.range(0, 16383, "h h", 1)]), .address),
        ]
        for (reply, expected) in cases {
            #expect(throws: expected) { try RedisSlotMap(clusterSlots: reply, asked: Self.asked) }
        }
    }

    @Test("MOVED and ASK parse (IPv4, IPv6, an empty host); anything else is no redirection")
    func redirects() {
        func parse(_ text: String) -> RedisRedirect? { RedisRedirect.parse(Array(text.utf8), asked: Self.asked) }
        #expect(parse("MOVED 3999 127.0.0.1:6381") == .moved(slot: 3999, to: .init(host: "127.0.0.1", port: 6381)))
        #expect(parse("ASK 3999 127.0.0.1:6381") == .ask(slot: 3999, to: .init(host: "127.0.0.1", port: 6381)))
        #expect(parse("MOVED 1 ::1:7000") == .moved(slot: 1, to: .init(host: "::1", port: 7000)))
        #expect(parse("MOVED 1 [::1]:7000") == .moved(slot: 1, to: .init(host: "::1", port: 7000)))
        #expect(parse("MOVED 12 :7001") == .moved(slot: 12, to: .init(host: "10.0.0.1", port: 7001)))
        for text in ["MOVED 16384 h:1", "MOVED -1 h:1", "MOVED 1 h", "MOVED 1 h:0", "MOVED 1 h:99999",
                     "MOVED 1", "ERR 1 h:1", "NOSCRIPT No matching script", "MOVED 1 h:1 x", "MOVED 0000001 h:1"] {
            #expect(parse(text) == nil, "\(text)")
        }
    }
}
