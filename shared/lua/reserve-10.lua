-- reserve: the processor's once-only decision for an order. Atomic: a redelivered or duplicated
-- message gets the same outcome again and never a second DECRBY.
-- KEYS[1] order:<id>               status hash; its status is the once-only marker
-- KEYS[2] inventory:<sku>          units in stock (operators SET it); never goes below 0
-- KEYS[3] orders.processed.count   orders whose stock was reserved
-- KEYS[4] stats:orders:rejected    orders rejected
-- KEYS[5] history:<id>  KEYS[6] orders:index  KEYS[7] orders:by-sku:<sku>
-- KEYS[8] orders:by-status:accepted  KEYS[9] orders:by-status:created  KEYS[10] orders:by-status:rejected
-- ARGV[1] id  ARGV[2] sku  ARGV[3] qty  ARGV[4] email ('' for none)  ARGV[5] now (ISO time)
-- ARGV[6] now (ms)  ARGV[7] retention (ms)
-- A decision now also appends {"at","event":"created"|"rejected","reason"} to history:<id> and moves
-- the id from the accepted to its status set; a decision before writes nothing.
-- Returns {0, status, reason}  decided now: 'created' '' | 'rejected' 'unknown_sku' | 'rejected' 'out_of_stock'
--         {1, status, reason}  decided before (a redelivery, or an expired order): the same outcome, nothing changed
--         {2, fields}          order:<id> records another payload: the names of the fields that
--                              differ (of 'sku', 'qty', 'email'); nothing changed
--         error                inventory:<sku> holds something that is not a whole number
-- A copy whose sku, qty or email differ from those order:<id> records is another request's copy of
-- the id (the gateway recorded, or the processor filled in, a different payload): refused before
-- anything else, whatever the status, and nothing changes.
-- uses lib/order.lua
local differ = payload_differs(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
if differ then return {2, differ} end
local status = redis.call('HGET', KEYS[1], 'status')
-- Decided before, expired included (expire-order-6.lua): a late copy of an expired order reserves nothing.
if status and status ~= 'accepted' then
  return {1, status, redis.call('HGET', KEYS[1], 'reason') or ''}
end
local stock = redis.call('GET', KEYS[2])
-- Checked before any write: a script's earlier writes are not undone by a later error, and
-- DECRBY refuses what tonumber would take ('10.0', '1e3', ' 5').
if stock and not string.match(stock, '^%-?%d+$') then
  return redis.error_reply('ERR ' .. KEYS[2] .. ' is not a whole number: ' .. stock)
end
local qty = tonumber(ARGV[3])
-- The gateway may not have recorded the order yet: fill in what is missing. Status 'accepted'
-- means it has (accept-n.lua writes every field with it, in one script), so nothing is missing.
if status ~= 'accepted' then
  redis.call('HSETNX', KEYS[1], 'id', ARGV[1])
  redis.call('HSETNX', KEYS[1], 'sku', ARGV[2])
  redis.call('HSETNX', KEYS[1], 'qty', ARGV[3])
  if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[1], 'email', ARGV[4]) end
  redis.call('HSETNX', KEYS[1], 'createdAt', ARGV[5])
end
local reason = ''
if not stock then
  reason = 'unknown_sku'
elseif tonumber(stock) < qty then
  reason = 'out_of_stock'
end
local now_ms, retention_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZREM', KEYS[8], ARGV[1])
if reason ~= '' then
  redis.call('HSET', KEYS[1], 'status', 'rejected', 'reason', reason, 'updatedAt', ARGV[5])
  local score = order_change(KEYS[1], KEYS[5], KEYS[6], KEYS[7], ARGV[1], now_ms, retention_ms, {at = ARGV[5], event = 'rejected', reason = reason})
  move_to(KEYS[10], ARGV[1], score, now_ms, retention_ms)
  redis.call('INCR', KEYS[4])
  return {0, 'rejected', reason}
end
redis.call('DECRBY', KEYS[2], qty)
redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'status', 'created', 'updatedAt', ARGV[5])
move_to(KEYS[9], ARGV[1], order_change(KEYS[1], KEYS[5], KEYS[6], KEYS[7], ARGV[1], now_ms, retention_ms, {at = ARGV[5], event = 'created'}), now_ms, retention_ms)
return {0, 'created', ''}
