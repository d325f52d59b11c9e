/// The Lua scripts that make room membership atomic across the cluster (Redis runs each one
/// alone: a race of JOINs from many nodes is a sequence of these). The decisions they make are the
/// single relay's (`RelayRooms`): two seats at most, a reserved seat taken back by its token,
/// `SEAT_RESERVED` vs `ROOM_FULL`; plus the cluster's own: a held seat carries a deadline `e` that
/// its node pushes forward with every heartbeat (`refresh`); a seat past it (its node died, or
/// stalled past the TTL) is reserved for its token for the grace (freed if it has none), as a
/// departed peer's seat is.
///
/// Every script reads and writes one key only, the room's: on Redis Cluster a script may touch
/// one hash slot, and the room's key is in one slot. The scripts publish nothing either (a
/// sharded channel is in another slot): they return what the room-mates' nodes must be told, and
/// the shell publishes it (`ClusterLink`).
///
/// A room is one string key `sc:<BLAKE2b of the code>` (`ClusterWire.roomKey`) holding a
/// MessagePack array (Redis's bundled `cmsgpack`) of at most two seats, each an array `[node,
/// connection, token hash, until ms]`; a reserved seat has node `""` and is reserved until then, a
/// held one is held until then. Times are Redis's (`TIME`), never a node's. Nothing else about a
/// room is stored: no payload, no room code, no token. Memory (docs/RELAY.md, "What each holds"):
/// arrays, not objects (field names would cost 32 bytes), MessagePack rather than JSON and the
/// token hash as 8 raw bytes rather than 16 hex digits (a two-seat room's value 71 bytes instead of
/// 107, in an 80-byte allocation instead of 112).
enum ClusterScripts {
    /// KEYS[1] room; ARGV: node, connection, presented token hash (or ""), new seat's token hash
    /// (or ""), reclaim-only ("1": the address is over its join rate), seat TTL ms (how long a
    /// held seat lives without a refresh), rejoin ("1": a re-registration, which takes back only a
    /// reserved seat with its token, never a held one), grace ms ("0": a dead node's seats are
    /// freed). Returns {"admitted", partner node, partner connection, reclaimed "1"/"0", evicted
    /// node, evicted connection} or {"refused", CODE}. The shell tells a remote partner `F` and an
    /// evicted holder's node `E`.
    static let join = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local node, conn, tok, newtok = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
        local ttl, rejoin = tonumber(ARGV[6]), ARGV[7] == '1'
        local grace = tonumber(ARGV[8]) or 0
        local raw = redis.call('GET', KEYS[1])
        local seats = {}
        if raw then seats = cmsgpack.unpack(raw) end
        local kept, changed = {}, false
        for _, s in ipairs(seats) do
          local alive
          if s[1] == '' then alive = s[4] > now
          elseif s[1] == node or s[4] > now then alive = true
          elseif grace > 0 and s[3] ~= '' then
            -- Its node died (kill -9, a stall past the TTL): the seat waits for its token.
            s[1] = ''; s[2] = ''; s[4] = now + grace; alive = true; changed = true
          else alive = false end
          if alive then table.insert(kept, s) else changed = true end
        end
        seats = kept
        -- A refusal still stores what changed (a dead node's seat reserved once, not again by
        -- each JOIN); a room with no live seat expires with its last reservation.
        local function refuse(code)
          if changed then
            local live, untilms = false, 0
            for _, s in ipairs(seats) do
              if s[1] ~= '' then live = true
              elseif s[4] > untilms then untilms = s[4] end
            end
            if #seats == 0 then redis.call('DEL', KEYS[1])
            elseif live then redis.call('SET', KEYS[1], cmsgpack.pack(seats))
            else redis.call('SET', KEYS[1], cmsgpack.pack(seats), 'PX', untilms - now + 1000) end
          end
          return {'refused', code}
        end
        local index = nil
        for i, s in ipairs(seats) do
          if s[1] == node and s[2] == conn then index = i end
        end
        local reclaimed, evn, evc = '0', '', ''
        if not index and tok ~= '' then
          for i, s in ipairs(seats) do
            if s[3] == tok and rejoin and s[1] ~= '' then
              -- Its token's seat is held elsewhere (taken back there): never a second copy.
              return refuse('SEAT_RESERVED')
            end
            if s[3] == tok then
              index = i
              reclaimed = '1'
              if s[1] ~= '' then evn = s[1]; evc = s[2] end
              s[1] = node; s[2] = conn
            end
          end
        end
        if not index then
          if ARGV[5] == '1' then return refuse('JOIN_RATE_LIMITED') end
          if #seats >= 2 then
            for _, s in ipairs(seats) do
              if s[1] == '' then return refuse('SEAT_RESERVED') end
            end
            return refuse('ROOM_FULL')
          end
          table.insert(seats, {node, conn, newtok, 0})
          index = #seats
        end
        seats[index][4] = now + ttl
        local pn, pc = '', ''
        for i, s in ipairs(seats) do
          if i ~= index and s[1] ~= '' then pn = s[1]; pc = s[2] end
        end
        redis.call('SET', KEYS[1], cmsgpack.pack(seats))
        return {'admitted', pn, pc, reclaimed, evn, evc}
        """

    /// KEYS[1] room; ARGV: node, connection, grace ms ("0": free the seat). Reserves or frees the
    /// seat this connection holds. Returns {1, room-mate node, room-mate connection} (the mate
    /// empty when there is none) if it held a seat, else {0}: the shell tells a remote room-mate
    /// `L` (the one the node knew if Redis no longer has the seat, e.g. after a restart).
    static let leave = """
        local node, conn, grace = ARGV[1], ARGV[2], tonumber(ARGV[3])
        local raw = redis.call('GET', KEYS[1])
        if not raw then return {0} end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local seats = cmsgpack.unpack(raw)
        local kept, found = {}, false
        for _, s in ipairs(seats) do
          if s[1] == node and s[2] == conn then
            found = true
            if grace > 0 and s[3] ~= '' then
              s[1] = ''; s[2] = ''; s[4] = now + grace
              table.insert(kept, s)
            end
          elseif s[1] ~= '' or s[4] > now then
            table.insert(kept, s)
          end
        end
        if not found then return {0} end
        local live, untilms, mn, mc = false, 0, '', ''
        for _, s in ipairs(kept) do
          if s[1] ~= '' then
            live = true
            mn = s[1]; mc = s[2]
          elseif s[4] > untilms then untilms = s[4] end
        end
        if #kept == 0 then
          redis.call('DEL', KEYS[1])
        else
          redis.call('SET', KEYS[1], cmsgpack.pack(kept))
          if not live then redis.call('PEXPIRE', KEYS[1], untilms - now + 1000) end
        end
        return {1, mn, mc}
        """

    /// KEYS[1] room; ARGV: node, seat TTL ms, then the connections this node holds seats of in
    /// the room. Pushes each such seat's deadline to now + TTL (the heartbeat, per room: a node's
    /// liveness is judged inside the room's own slot). Returns how many it found: fewer than asked
    /// means Redis lost or reserved a seat the node holds, which then registers its seats again.
    static let refresh = """
        local raw = redis.call('GET', KEYS[1])
        if not raw then return 0 end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local seats = cmsgpack.unpack(raw)
        local found = 0
        for _, s in ipairs(seats) do
          if s[1] == ARGV[1] then
            for i = 3, #ARGV do
              if s[2] == ARGV[i] then s[4] = now + tonumber(ARGV[2]); found = found + 1 end
            end
          end
        end
        if found > 0 then redis.call('SET', KEYS[1], cmsgpack.pack(seats)) end
        return found
        """
}
