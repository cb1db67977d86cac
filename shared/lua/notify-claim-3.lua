-- notifyClaim: the notifier takes a lease on an order's notification before sending it. Not a
-- permanent marker: if the sender dies mid-send the lease runs out and a redelivery sends it.
-- KEYS[1] notifications:<id>
-- KEYS[2] stats:notifications:failed  (counts notifications whose status is now 'failed')
-- ARGV[1] token of this attempt
-- ARGV[2] lease in ms
-- ARGV[3] channel ('log' or 'webhook')
-- KEYS[3] history:<id> (read only: its expiry is copied onto KEYS[1])
-- ARGV[4] order retention in ms (the record's TTL when history:<id> has none)
-- Returns {0, attempts}   claimed: send now (attempts counts this one)
--         {1, attempts}   already sent: nothing to do
--         {2, ms}         another sender holds a live lease for ms more: try again later
-- The record lives as long as the order's history (its expiry copied from history:<id>), or
-- for the retention from now when the order has no history (nothing else would remove it).
local function keep(key)
  local at = redis.call('PEXPIRETIME', KEYS[3])
  if at > 0 then redis.call('PEXPIREAT', key, at) else redis.call('PEXPIRE', key, ARGV[4]) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'status', 'owner', 'leaseUntil', 'attempts')
if h[1] == 'sent' then
  return {1, tonumber(h[4]) or 0}
end
-- The same attempt again (a client resending the script after a reconnect): count it once.
if h[1] == 'sending' and h[2] == ARGV[1] then
  return {0, tonumber(h[4]) or 1}
end
local until_ = tonumber(h[3]) or 0
if h[1] == 'sending' and h[2] and h[2] ~= ARGV[1] and until_ > now then
  return {2, until_ - now}
end
-- a failed notification being retried (a dead-letter replay) is no longer counted as failed
if h[1] == 'failed' then redis.call('DECR', KEYS[2]) end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'sending', 'owner', ARGV[1], 'leaseUntil', now + tonumber(ARGV[2]), 'channel', ARGV[3])
keep(KEYS[1])
return {0, attempts}
