-- expireOrder: the processor's decision that an order waited too long in orders.queue. Marks only an
-- undecided order (no status yet, or 'accepted'), so an order is never both created and expired:
-- a created or rejected order stays as it is, and reserve (reserve-10.lua) refuses an expired one
-- since its status is no longer 'accepted'.
-- KEYS[1] order:<id>  KEYS[2] history:<id>  KEYS[3] orders:index  KEYS[4] orders:by-sku:<sku>
-- KEYS[5] orders:by-status:accepted  KEYS[6] orders:by-status:expired
-- ARGV[1] id  ARGV[2] sku  ARGV[3] qty  ARGV[4] email ('' for none)  ARGV[5] now (ISO time)
-- ARGV[6] now (ms)  ARGV[7] retention (ms)
-- Expiring now also appends {"at","event":"expired"} to history:<id> and moves the id from the
-- accepted to the expired set.
-- Returns {0, 'expired', ''}   expired now
--         {1, status, reason}  decided before (expired, created or rejected): nothing changed
--         {2, fields}          order:<id> records another payload: the names of the fields that
--                              differ (of 'sku', 'qty', 'email'); nothing changed
-- A copy whose sku, qty or email differ from those order:<id> records is another request's copy of
-- the id (the gateway recorded, or the processor filled in, a different payload): refused before
-- anything else, whatever the status, and nothing changes.
-- uses lib/order.lua
local differ = payload_differs(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
if differ then return {2, differ} end
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= 'accepted' then
  return {1, status, redis.call('HGET', KEYS[1], 'reason') or ''}
end
-- The gateway may not have recorded the order yet: fill in what is missing.
redis.call('HSETNX', KEYS[1], 'id', ARGV[1])
redis.call('HSETNX', KEYS[1], 'sku', ARGV[2])
redis.call('HSETNX', KEYS[1], 'qty', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[1], 'email', ARGV[4]) end
redis.call('HSETNX', KEYS[1], 'createdAt', ARGV[5])
redis.call('HSET', KEYS[1], 'status', 'expired', 'updatedAt', ARGV[5])
redis.call('ZREM', KEYS[5], ARGV[1])
local now_ms, retention_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
move_to(KEYS[6], ARGV[1], order_change(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], now_ms, retention_ms, {at = ARGV[5], event = 'expired'}), now_ms, retention_ms)
return {0, 'expired', ''}
