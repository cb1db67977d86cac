-- expireOrder: the processor's decision that an order waited too long in orders.queue. Marks only an
-- undecided order (no status yet, or 'accepted'), so an order is never both created and expired:
-- a created or rejected order stays as it is, and reserve (reserve-4.lua) refuses an expired one
-- since its status is no longer 'accepted'.
-- KEYS[1] order:<id>
-- ARGV[1] id  ARGV[2] sku  ARGV[3] qty  ARGV[4] email ('' for none)  ARGV[5] now (ISO time)
-- Returns {0, 'expired', ''}   expired now
--         {1, status, reason}  decided before (expired, created or rejected): nothing changed
--         {2, fields}          order:<id> records another payload: the names of the fields that
--                              differ (of 'sku', 'qty', 'email'); nothing changed
-- A copy whose sku, qty or email differ from those order:<id> records is another request's copy of
-- the id (the gateway recorded, or the processor filled in, a different payload): refused before
-- anything else, whatever the status, and nothing changes.
local h = redis.call('HMGET', KEYS[1], 'sku', 'qty', 'email')
if h[1] then
  local differ = {}
  if h[1] ~= ARGV[2] then differ[#differ + 1] = 'sku' end
  if h[2] ~= ARGV[3] then differ[#differ + 1] = 'qty' end
  if (h[3] or '') ~= ARGV[4] then differ[#differ + 1] = 'email' end
  if #differ > 0 then return {2, differ} end
end
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
return {0, 'expired', ''}
