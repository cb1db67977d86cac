-- expireOrder: the processor's decision that an order waited too long in orders.queue. Marks only an
-- undecided order (no status yet, or 'accepted'), so an order is never both created and expired:
-- a created or rejected order stays as it is, and reserve (reserve-4.lua) refuses an expired one
-- since its status is no longer 'accepted'.
-- KEYS[1] order:<id>
-- ARGV[1] id  ARGV[2] sku  ARGV[3] qty  ARGV[4] email ('' for none)  ARGV[5] now (ISO time)
-- Returns {0, 'expired', ''}   expired now
--         {1, status, reason}  decided before (expired, created or rejected): nothing changed
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
