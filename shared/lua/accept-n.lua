-- accept: after the broker confirmed orders, store each one's accepted response for the TTL and
-- record the order, without ever overwriting a status the processor may already have written.
-- The gateway sends the acceptances of one event-loop turn together (one round trip, one script
-- call); each is decided exactly as if it ran alone.
-- KEYS[1]    stats:orders:accepted
-- KEYS[2]    orders:recent (list of order ids, newest first, kept to the newest 50)
-- KEYS[1+2i] idemp:<id> and KEYS[2+2i] order:<id> of the i-th acceptance
-- ARGV[1]    TTL of the accepted records in seconds
-- ARGV[2]    now (ISO time)
-- ARGV[6i-3 .. 6i+2]  the i-th acceptance: the claim's token, the accepted record
--            {"state":"accepted","fp":...,"response":...}, id, sku, qty, email ('' for none)
-- Returns one reply per acceptance, in order: 1 when its claim recorded the acceptance, 0 when
-- another claim holds the record (its lease ran out and another request took it; that request
-- records it instead, or the record is unreadable: left alone, and it fails nothing else).
local now = ARGV[2]
local replies = {}
local accepted = 0
for i = 1, (#KEYS - 2) / 2 do
  local idemp, order = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local a = 6 * i - 3
  local token, record, id, sku, qty, email = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  -- No record at all (a nil reply is false here): the lease ran out and nobody claimed the id
  -- since, so this is still ours. A record that is not a JSON string is not ours.
  local raw = redis.pcall('GET', idemp)
  local ours = raw == false
  if type(raw) == 'string' then
    local ok, rec = pcall(cjson.decode, raw)
    ours = ok and type(rec) == 'table' and rec.state == 'inflight' and rec.token == token
  end
  if ours then
    redis.call('SET', idemp, record, 'EX', ARGV[1])
    accepted = accepted + 1
    -- Written with the acceptance so the dashboard's recent list never misses or repeats an order.
    redis.call('LPUSH', KEYS[2], id)
  end
  -- Usually the order is new here: write it whole in one command. A fast processor can decide the
  -- order before this runs: then only fill what is missing, never touching its status. (pcall: an
  -- order key of another type fails that order's hash, not the rest of the batch.)
  if redis.call('EXISTS', order) == 0 then
    if email ~= '' then
      redis.pcall('HSET', order, 'status', 'accepted', 'updatedAt', now, 'id', id, 'sku', sku, 'qty', qty, 'email', email, 'createdAt', now)
    else
      redis.pcall('HSET', order, 'status', 'accepted', 'updatedAt', now, 'id', id, 'sku', sku, 'qty', qty, 'createdAt', now)
    end
  else
    if redis.pcall('HSETNX', order, 'status', 'accepted') == 1 then
      redis.pcall('HSET', order, 'updatedAt', now)
    end
    redis.pcall('HSETNX', order, 'id', id)
    redis.pcall('HSETNX', order, 'sku', sku)
    redis.pcall('HSETNX', order, 'qty', qty)
    if email ~= '' then redis.pcall('HSETNX', order, 'email', email) end
    redis.pcall('HSETNX', order, 'createdAt', now)
  end
  replies[i] = ours and 1 or 0
end
if accepted > 0 then
  redis.call('INCRBY', KEYS[1], accepted)
  redis.call('LTRIM', KEYS[2], 0, 49)
end
return replies
