-- accept: after the broker confirmed the order, store the accepted response for the TTL and
-- record the order, without ever overwriting a status the processor may already have written.
-- KEYS[1] idemp:<id>
-- KEYS[2] order:<id>
-- KEYS[3] stats:orders:accepted
-- KEYS[4] orders:recent (list of order ids, newest first, kept to the newest 50)
-- ARGV[1] the claim's token
-- ARGV[2] accepted record: {"state":"accepted","fp":...,"response":...}
-- ARGV[3] TTL of the accepted record in seconds
-- ARGV[4] id  ARGV[5] sku  ARGV[6] qty  ARGV[7] email ('' for none)  ARGV[8] now (ISO time)
-- Returns 1 when this claim recorded the acceptance, 0 when another claim holds the record
-- (its lease ran out and another request took it; that request records it instead).
local cur = redis.call('GET', KEYS[1])
local ours = true
if cur then
  local rec = cjson.decode(cur)
  ours = rec.state == 'inflight' and rec.token == ARGV[1]
end
if ours then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('INCR', KEYS[3])
  -- Written with the acceptance so the dashboard's recent list never misses or repeats an order.
  redis.call('LPUSH', KEYS[4], ARGV[4])
  redis.call('LTRIM', KEYS[4], 0, 49)
end
-- Usually the order is new here: write it whole in one command. A fast processor can decide the
-- order before this runs: then only fill what is missing, never touching its status.
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[7] ~= '' then
    redis.call('HSET', KEYS[2], 'status', 'accepted', 'updatedAt', ARGV[8], 'id', ARGV[4], 'sku', ARGV[5], 'qty', ARGV[6], 'email', ARGV[7], 'createdAt', ARGV[8])
  else
    redis.call('HSET', KEYS[2], 'status', 'accepted', 'updatedAt', ARGV[8], 'id', ARGV[4], 'sku', ARGV[5], 'qty', ARGV[6], 'createdAt', ARGV[8])
  end
else
  if redis.call('HSETNX', KEYS[2], 'status', 'accepted') == 1 then
    redis.call('HSET', KEYS[2], 'updatedAt', ARGV[8])
  end
  redis.call('HSETNX', KEYS[2], 'id', ARGV[4])
  redis.call('HSETNX', KEYS[2], 'sku', ARGV[5])
  redis.call('HSETNX', KEYS[2], 'qty', ARGV[6])
  if ARGV[7] ~= '' then redis.call('HSETNX', KEYS[2], 'email', ARGV[7]) end
  redis.call('HSETNX', KEYS[2], 'createdAt', ARGV[8])
end
if ours then return 1 end
return 0
