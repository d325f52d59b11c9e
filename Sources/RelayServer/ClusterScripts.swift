/// The Lua scripts that make room membership atomic across the cluster (Redis runs each one
/// alone: a race of JOINs from many nodes is a sequence of these). The decisions they make are the
/// single relay's (`RelayRooms`): two seats at most, a reserved seat taken back by its token,
/// `SEAT_RESERVED` vs `ROOM_FULL`; plus the cluster's own: a seat whose node's heartbeat key
/// (`sc:node:<id>`, refreshed every second with a TTL) is gone is reserved for its token for the
/// grace (freed if it has none), as a departed peer's seat is.
///
/// A room is one string key `sc:{<BLAKE2b of the code>}` holding a JSON array of at most two seats
/// `{n: node, c: connection, t: token hash, u: reserved-until ms}`; a reserved seat has `n == ""`
/// (and `u`; a live one has none).
/// Nothing else about a room is stored: no payload, no room code, no token.
enum ClusterScripts {
    /// KEYS[1] room; ARGV: node, connection, presented token hash (or ""), new seat's token hash
    /// (or ""), reclaim-only ("1": the address is over its join rate), node key prefix, channel
    /// prefix, rejoin ("1": a re-registration, which takes back only a reserved seat with its
    /// token, never a held one), grace ms ("0": a dead node's seats are freed). Returns
    /// {"admitted", partner node, partner connection, reclaimed "1"/"0", evicted node, evicted
    /// connection} or {"refused", CODE}.
    /// Publishes `F` to a remote room-mate's node and `E` to an evicted holder's node.
    static let join = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local node, conn, tok, newtok = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
        local grace = tonumber(ARGV[9]) or 0
        local raw = redis.call('GET', KEYS[1])
        local seats = {}
        if raw then seats = cjson.decode(raw) end
        local kept, changed = {}, false
        for _, s in ipairs(seats) do
          local alive
          if s.n == '' then alive = tonumber(s.u) > now
          elseif s.n == node then alive = true
          elseif redis.call('EXISTS', ARGV[6] .. s.n) == 1 then alive = true
          elseif grace > 0 and s.t ~= '' then
            -- Its node died (kill -9, a stall past the TTL): the seat waits for its token.
            s.n = ''; s.c = ''; s.u = now + grace; alive = true; changed = true
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
              if s.n ~= '' then live = true
              elseif tonumber(s.u) > untilms then untilms = tonumber(s.u) end
            end
            if #seats == 0 then redis.call('DEL', KEYS[1])
            elseif live then redis.call('SET', KEYS[1], cjson.encode(seats))
            else redis.call('SET', KEYS[1], cjson.encode(seats), 'PX', untilms - now + 1000) end
          end
          return {'refused', code}
        end
        local index = nil
        for i, s in ipairs(seats) do
          if s.n == node and s.c == conn then index = i end
        end
        local reclaimed, evn, evc = '0', '', ''
        if not index and tok ~= '' then
          for i, s in ipairs(seats) do
            if s.t == tok and (ARGV[8] ~= '1' or s.n == '') then
              index = i
              reclaimed = '1'
              if s.n ~= '' then evn = s.n; evc = s.c end
              s.n = node; s.c = conn; s.u = nil
            end
          end
        end
        if not index then
          if ARGV[5] == '1' then return refuse('JOIN_RATE_LIMITED') end
          if #seats >= 2 then
            for _, s in ipairs(seats) do
              if s.n == '' then return refuse('SEAT_RESERVED') end
            end
            return refuse('ROOM_FULL')
          end
          table.insert(seats, {n = node, c = conn, t = newtok})
          index = #seats
        end
        local pn, pc = '', ''
        for i, s in ipairs(seats) do
          if i ~= index and s.n ~= '' then pn = s.n; pc = s.c end
        end
        redis.call('SET', KEYS[1], cjson.encode(seats))
        if pn ~= '' and pn ~= node then
          redis.call('PUBLISH', ARGV[7] .. pn, 'F ' .. pc .. ' ' .. conn .. ' ' .. node)
        end
        if evn ~= '' and evn ~= node then
          redis.call('PUBLISH', ARGV[7] .. evn, 'E ' .. evc)
        end
        return {'admitted', pn, pc, reclaimed, evn, evc}
        """

    /// KEYS[1] room; ARGV: node, connection, grace ms ("0": free the seat), channel prefix, the
    /// room-mate the node knew (node, connection; or ""). Reserves or frees the seat this
    /// connection holds and publishes `L` to a remote room-mate's node (the known one if Redis
    /// no longer has the seat, e.g. after a restart). Returns 1 if it held a seat, else 0.
    static let leave = """
        local node, conn, grace, chan = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
        local function hint()
          if ARGV[5] ~= '' and ARGV[5] ~= node then
            redis.call('PUBLISH', chan .. ARGV[5], 'L ' .. ARGV[6] .. ' ' .. conn .. ' ' .. node)
          end
        end
        local raw = redis.call('GET', KEYS[1])
        if not raw then hint() return 0 end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local seats = cjson.decode(raw)
        local kept, found = {}, false
        for _, s in ipairs(seats) do
          if s.n == node and s.c == conn then
            found = true
            if grace > 0 and s.t ~= '' then
              s.n = ''; s.c = ''; s.u = now + grace
              table.insert(kept, s)
            end
          elseif s.n ~= '' or tonumber(s.u) > now then
            table.insert(kept, s)
          end
        end
        if not found then hint() return 0 end
        local live, untilms = false, 0
        for _, s in ipairs(kept) do
          if s.n ~= '' then
            live = true
            if s.n ~= node then
              redis.call('PUBLISH', chan .. s.n, 'L ' .. s.c .. ' ' .. conn .. ' ' .. node)
            end
          elseif tonumber(s.u) > untilms then untilms = tonumber(s.u) end
        end
        if #kept == 0 then
          redis.call('DEL', KEYS[1])
        else
          redis.call('SET', KEYS[1], cjson.encode(kept))
          if not live then redis.call('PEXPIRE', KEYS[1], untilms - now + 1000) end
        end
        return 1
        """
}
