import ChatCore
import ChatTesting
import RelayCore
import Testing

/// The virtual Redis's scripts (`VirtualRedis`), step by step on a hand-driven clock: the
/// semantics of `ClusterScripts` that the cluster world relies on.
@Suite("Simulator: the virtual Redis's scripts")
struct VirtualRedisTests {
    static let room = try! RoomCode("ROOM1")
    static let key = ClusterWire.roomKey(room)
    static let ttl: Int64 = 4000
    static let grace: Int64 = 30_000
    static let tokenA = ReconnectToken(high: 1, low: 1)
    static let tokenB = ReconnectToken(high: 2, low: 2)

    static func request(
        token: ReconnectToken? = nil, newToken: ReconnectToken?, rejoin: Bool = false
    ) -> ClusterJoinRequest {
        ClusterJoinRequest(room: room, token: token, newToken: newToken, rejoin: rejoin)
    }

    /// Node a's connection 1 (token A) and node b's connection 2 (token B) seated at time 0.
    static func twoSeats() -> VirtualRedis {
        var redis = VirtualRedis()
        _ = redis.join(key: key, node: "a", connection: 1, request(newToken: tokenA), seatTTL: ttl,
            graceMilliseconds: grace, now: 0)
        let reply = redis.join(key: key, node: "b", connection: 2, request(newToken: tokenB), seatTTL: ttl,
            graceMilliseconds: grace, now: 0)
        #expect(reply == .admitted(partner: ClusterPeer(node: "a", connection: 1), reclaimed: false, evicted: nil))
        return redis
    }

    @Test("A seat past its deadline is reserved for its token: a newcomer is refused, the token takes it back")
    func deadlineReserves() {
        var redis = Self.twoSeats()
        // Only b refreshes: a's seat passes its deadline at 4 s.
        #expect(redis.refresh(key: Self.key, node: "b", connections: [ConnectionID(2)], seatTTL: Self.ttl, now: 3000)
            == 1)
        #expect(redis.heldSeats(of: "a", now: 3999) == 1)
        #expect(redis.heldSeats(of: "a", now: 4000) == 0)
        let squatter = redis.join(key: Self.key, node: "c", connection: 3, Self.request(newToken: nil),
            seatTTL: Self.ttl, graceMilliseconds: Self.grace, now: 4500)
        #expect(squatter == .refused(.seatReserved))
        #expect(redis.seats(at: Self.key, now: 4500).map(\.node) == ["", "b"])
        let back = redis.join(key: Self.key, node: "c", connection: 4, Self.request(token: Self.tokenA, newToken: nil),
            seatTTL: Self.ttl, graceMilliseconds: Self.grace, now: 5000)
        #expect(back == .admitted(partner: ClusterPeer(node: "b", connection: 2), reclaimed: true, evicted: nil))
        // a's refresh finds none of its seats: it must register again.
        #expect(redis.refresh(key: Self.key, node: "a", connections: [ConnectionID(1)], seatTTL: Self.ttl, now: 5100)
            == 0)
    }

    @Test("Without a grace a seat past its deadline is freed for a newcomer; within it, it is held")
    func deadlineFrees() {
        var redis = Self.twoSeats()
        let early = redis.join(key: Self.key, node: "c", connection: 3, Self.request(newToken: nil),
            seatTTL: Self.ttl, graceMilliseconds: 0, now: 3999)
        #expect(early == .refused(.roomFull))
        #expect(redis.refresh(key: Self.key, node: "b", connections: [ConnectionID(2)], seatTTL: Self.ttl, now: 3999)
            == 1)
        let late = redis.join(key: Self.key, node: "c", connection: 3, Self.request(newToken: nil),
            seatTTL: Self.ttl, graceMilliseconds: 0, now: 4000)
        #expect(late == .admitted(partner: ClusterPeer(node: "b", connection: 2), reclaimed: false, evicted: nil))
    }

    @Test("A token takes a held seat and names the holder to evict; a rejoin never makes a second copy")
    func reclaimAndRejoin() {
        var redis = Self.twoSeats()
        let moved = redis.join(key: Self.key, node: "c", connection: 5, Self.request(token: Self.tokenA, newToken: nil),
            seatTTL: Self.ttl, graceMilliseconds: Self.grace, now: 100)
        #expect(moved == .admitted(partner: ClusterPeer(node: "b", connection: 2), reclaimed: true,
            evicted: ClusterPeer(node: "a", connection: 1)))
        let rejoin = redis.join(key: Self.key, node: "a", connection: 1,
            Self.request(token: Self.tokenA, newToken: Self.tokenA, rejoin: true), seatTTL: Self.ttl,
            graceMilliseconds: Self.grace, now: 200)
        #expect(rejoin == .refused(.seatReserved))
        #expect(redis.seats(at: Self.key, now: 200).count == 2)
    }

    @Test("Leave reserves the seat and names the live room-mate; a second leave holds nothing")
    func leaveNamesMate() {
        var redis = Self.twoSeats()
        let first = redis.leave(key: Self.key, node: "a", connection: 1, graceMilliseconds: Self.grace, now: 10)
        #expect(first.held && first.mate == ClusterPeer(node: "b", connection: 2))
        let again = redis.leave(key: Self.key, node: "a", connection: 1, graceMilliseconds: Self.grace, now: 20)
        #expect(!again.held && again.mate == nil)
        let last = redis.leave(key: Self.key, node: "b", connection: 2, graceMilliseconds: 0, now: 30)
        #expect(last.held && last.mate == nil)
        // Only a's reservation is left: the room expires a second after it.
        #expect(redis.seats(at: Self.key, now: Self.grace + 10 + 999).count == 1)
        #expect(redis.seats(at: Self.key, now: Self.grace + 10 + 1000).isEmpty)
    }
}
