-- accept: after the broker confirmed orders, store each one's accepted record for the TTL and
-- record the order, without ever overwriting a status the processor may already have written.
-- Only a claim that is still ours records anything: after a lapsed lease another request may hold
-- the id, and two payloads must never both be recorded (nor both answered 202).
-- The gateway sends the acceptances of one event-loop turn together (one round trip, one script
-- call); each is decided exactly as if it ran alone.
-- KEYS[1]    stats:orders:accepted
-- KEYS[2]    orders:recent (list of order ids, newest first, kept to the newest 50)
-- KEYS[3]    orders:index  KEYS[4] orders:by-status:accepted
-- KEYS[1+4i] idemp:<id>, KEYS[2+4i] order:<id>, KEYS[3+4i] history:<id> and
--            KEYS[4+4i] orders:by-sku:<sku> of the i-th acceptance
-- ARGV[1]    TTL of the accepted records in seconds
-- ARGV[2]    now (ISO time)  ARGV[3] now (ms)  ARGV[4] order retention (ms)
-- ARGV[7i-2 .. 7i+4]  the i-th acceptance: the claim's token, the accepted record
--            {"state":"accepted","fp":...,"response":...,"token":...}, id, sku, qty, email ('' for none),
--            placedBy (the caller's token subject, '' when auth is off)
-- Returns one reply per acceptance, in order:
--   1  recorded: the accepted record, the order hash, the count and the recent list (or it was
--      recorded by this same claim before: the client resent the script after a reconnect; nothing
--      changes then). Recording appends {"at","event":"accepted"} (with "by" when placedBy is
--      given; the order hash gets placedBy too) to history:<id>; a new order is
--      also indexed (orders:index, orders:by-sku:<sku>, orders:by-status:accepted, scored by now in
--      ms) and its order:<id> and history:<id> expire after the retention.
--   0  not ours: another claim holds the record (our lease ran out and another request took the
--      id), or another claim's acceptance is recorded, or the record is unreadable. Nothing written.
--   2  ours, but order:<id> already holds a different sku, qty or email (the processor filled it
--      in from another copy of the id). Nothing written.
-- uses lib/order.lua
local now = ARGV[2]
local now_ms, retention_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local entry = cjson.encode({at = now, event = 'accepted'})
local replies = {}
local accepted = 0
-- What the new orders of the batch add to the recent list and the indexes, written after the loop
-- with one command per key (each command called from a script has its own cost, whatever its
-- size): the ids for the recent list, in order; score and id pairs for orders:index and the
-- accepted set, and for each orders:by-sku:<sku>.
local recent = {}
local indexed = {}
local by_sku_members = {}
for i = 1, (#KEYS - 4) / 4 do
  local idemp, order, history, by_sku = KEYS[1 + 4 * i], KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i]
  local a = 7 * i - 2
  local token, record, id, sku, qty, email = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local placed_by = ARGV[a + 6]
  -- No record at all (a nil reply is false here): the lease ran out and nobody claimed the id
  -- since, so this is still ours. A record that is not a JSON string is not ours.
  local raw = redis.pcall('GET', idemp)
  local ours, again = raw == false, false
  if type(raw) == 'string' then
    local ok, rec = pcall(cjson.decode, raw)
    if ok and type(rec) == 'table' and rec.token == token then
      ours = rec.state == 'inflight'
      again = rec.state == 'accepted'
    end
  end
  local reply = 0
  if again then
    reply = 1
  elseif ours then
    -- The payload the order hash holds, if any (written with sku, qty and email in one command by
    -- this script or the processor's fill-in). pcall: an order key of another type holds none,
    -- and fails only that order's hash below, not the rest of the batch.
    local h = redis.pcall('HMGET', order, 'sku', 'qty', 'email')
    local held = type(h) == 'table' and h[1] ~= nil and h[1] ~= false
    if held and (h[1] ~= sku or h[2] ~= qty or (h[3] or '') ~= email) then
      reply = 2
    else
      reply = 1
      redis.call('SET', idemp, record, 'EX', ARGV[1])
      accepted = accepted + 1
      -- Written with the acceptance (after the loop, in this order) so the dashboard's recent list
      -- never misses or repeats an order.
      recent[#recent + 1] = id
      -- Usually the order is new here: write it whole in one command. A fast processor can decide
      -- the order before this runs: then only fill what is missing, never touching its status.
      -- The history's entry comes first either way; a decided order's history already has its
      -- expiry (the processor's script set it with the first entry), which RPUSH keeps.
      if HISTORY_INDEX then
        local this_entry = entry
        if placed_by ~= '' then this_entry = cjson.encode({at = now, event = 'accepted', by = placed_by}) end
        if redis.pcall('RPUSH', history, this_entry) == 101 then redis.pcall('LTRIM', history, -100, -1) end
      end
      if not held and redis.call('EXISTS', order) == 0 then
        if email ~= '' then
          redis.pcall('HSET', order, 'status', 'accepted', 'updatedAt', now, 'id', id, 'sku', sku, 'qty', qty, 'email', email, 'createdAt', now)
        else
          redis.pcall('HSET', order, 'status', 'accepted', 'updatedAt', now, 'id', id, 'sku', sku, 'qty', qty, 'createdAt', now)
        end
        if placed_by ~= '' then redis.pcall('HSET', order, 'placedBy', placed_by) end
        if HISTORY_INDEX then
          indexed[#indexed + 1] = now_ms
          indexed[#indexed + 1] = id
          local members = by_sku_members[by_sku] or {}
          by_sku_members[by_sku] = members
          members[#members + 1] = now_ms
          members[#members + 1] = id
          redis.call('PEXPIREAT', order, now_ms + retention_ms)
          redis.call('PEXPIREAT', history, now_ms + retention_ms)
        end
      else
        if redis.pcall('HSETNX', order, 'status', 'accepted') == 1 then
          redis.pcall('HSET', order, 'updatedAt', now)
          if HISTORY_INDEX then
            -- No status yet (nobody decided it): index it as accepted, keeping a score it already has.
            local score = tonumber(redis.call('ZSCORE', KEYS[3], id)) or now_ms
            redis.call('ZADD', KEYS[3], score, id)
            redis.call('ZADD', by_sku, score, id)
            redis.call('ZADD', KEYS[4], score, id)
            redis.pcall('PEXPIREAT', order, score + retention_ms)
            redis.call('PEXPIREAT', history, score + retention_ms)
          end
        end
        redis.pcall('HSETNX', order, 'id', id)
        redis.pcall('HSETNX', order, 'sku', sku)
        redis.pcall('HSETNX', order, 'qty', qty)
        if email ~= '' then redis.pcall('HSETNX', order, 'email', email) end
        if placed_by ~= '' then redis.pcall('HSETNX', order, 'placedBy', placed_by) end
        redis.pcall('HSETNX', order, 'createdAt', now)
        -- A history this entry just began (an order decided without one, e.g. by hand or by an
        -- earlier version) lives as long as the order, or for the retention.
        if HISTORY_INDEX and redis.call('PTTL', history) == -1 then
          local ttl = redis.pcall('PTTL', order)
          redis.call('PEXPIRE', history, (type(ttl) == 'number' and ttl > 0) and ttl or retention_ms)
        end
      end
    end
  end
  replies[i] = reply
end
-- unpack() passes a table's items as arguments; Lua's C stack bounds how many at once.
local function in_chunks(command, key, items, step)
  for first = 1, #items, 1000 * step do
    redis.call(command, key, unpack(items, first, math.min(#items, first + 1000 * step - 1)))
  end
end
if accepted > 0 then
  redis.call('INCRBY', KEYS[1], accepted)
  -- LPUSH of a, b, c leaves c at the head: newest first, as one LPUSH each would.
  in_chunks('LPUSH', KEYS[2], recent, 1)
  redis.call('LTRIM', KEYS[2], 0, 49)
  -- Orders past their retention are gone: their entries leave the index of all orders and the
  -- accepted set here, the sku's set with each batch that adds to it, and each other status set
  -- as an order moves into it; the listing prunes the set it reads as well.
  if HISTORY_INDEX then
    in_chunks('ZADD', KEYS[3], indexed, 2)
    in_chunks('ZADD', KEYS[4], indexed, 2)
    for key, members in pairs(by_sku_members) do
      in_chunks('ZADD', key, members, 2)
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now_ms - retention_ms))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now_ms - retention_ms))
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now_ms - retention_ms))
  end
end
return replies
