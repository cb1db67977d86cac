-- claim: the gateway claims an order id before publishing it (SET NX with a short lease),
-- or learns who holds it. One round trip either way.
-- KEYS[1] idemp:<id>                   the idempotency record (JSON string)
-- KEYS[2] stats:orders:duplicates      counter of replayed requests
-- ARGV[1] record to store when free: {"state":"inflight","fp":...,"token":...}
-- ARGV[2] in-flight lease in ms: a gateway that dies here locks the id no longer than this
-- ARGV[3] fingerprint of this request's payload
-- ARGV[4] this claim's token (also inside ARGV[1])
-- Returns {0}                claimed: publish, then accept or release
--         {1, response}      already accepted with the same payload: replay the stored response
--         {2}                the id is taken by a different payload
--         {3, pttl}          the first request is still in flight (pttl ms left on its lease)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0}
end
local rec = cjson.decode(redis.call('GET', KEYS[1]))
-- Our own claim: the client resent the script after a reconnect.
if rec.state == 'inflight' and rec.token == ARGV[4] then
  return {0}
end
if rec.fp ~= ARGV[3] then
  return {2}
end
if rec.state == 'accepted' then
  redis.call('INCR', KEYS[2])
  return {1, rec.response}
end
return {3, redis.call('PTTL', KEYS[1])}
