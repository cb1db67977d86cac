-- cancel: the processor's once-only decision on a cancellation request. Atomic, so a redelivered or
-- duplicated request (or several cancels of one order at once) gives stock back at most once.
-- KEYS[1] order:<id>               status hash; its status is the once-only marker
-- KEYS[2] inventory:<sku>          units in stock; a created order's qty goes back here
-- KEYS[3] stats:orders:cancelled   orders cancelled
-- KEYS[4] history:<id>  KEYS[5] orders:index  KEYS[6] orders:by-sku:<sku>
-- KEYS[7] orders:by-status:accepted  KEYS[8] orders:by-status:created  KEYS[9] orders:by-status:cancelled
-- ARGV[1] id  ARGV[2] sku  ARGV[3] qty  ARGV[4] email ('' for none)  ARGV[5] cancel reason ('' for none)
-- ARGV[6] now (ISO time)  ARGV[7] now (ms)  ARGV[8] retention (ms)
-- Cancelling now also appends {"at","event":"cancelled","reason","units"} to history:<id> and moves
-- the id from the accepted or created set to the cancelled set.
-- Returns {0, units}   cancelled now; units given back to inventory:<sku> (0 when the order was
--                      not decided yet: no status or 'accepted', so its placement reserves nothing)
--         {1, ''}      cancelled before (a redelivery or another cancel): nothing changed
--         {3, status}  final without a reservation ('rejected', 'expired'): nothing changed
--         {2, fields}  order:<id> records another payload: the names of the fields that differ
--                      (of 'sku', 'qty', 'email'); nothing changed
--         error        the order is created and inventory:<sku> holds something that is not a whole number
-- The reason is kept with HSETNX: the first one recorded (here or by the gateway) stays. A created
-- order's hash also gets 'refunded' (the units given back).
-- uses lib/order.lua
local differ = payload_differs(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
if differ then return {2, differ} end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' then return {1, ''} end
if status and status ~= 'accepted' and status ~= 'created' then return {3, status} end
local units = 0
if status == 'created' then
  local stock = redis.call('GET', KEYS[2])
  -- Checked before any write: a script's earlier writes are not undone by a later error.
  if stock and not string.match(stock, '^%-?%d+$') then
    return redis.error_reply('ERR ' .. KEYS[2] .. ' is not a whole number: ' .. stock)
  end
  units = tonumber(ARGV[3])
  redis.call('INCRBY', KEYS[2], units)
  -- What was given back stays on the order: an audit tells a reserved-then-cancelled order from
  -- one cancelled before its placement was decided.
  redis.call('HSET', KEYS[1], 'refunded', units)
else
  -- Not decided yet (the placement may still be in the queue, or the gateway may not have
  -- recorded the order yet): fill in what is missing, so the placement finds it decided.
  redis.call('HSETNX', KEYS[1], 'id', ARGV[1])
  redis.call('HSETNX', KEYS[1], 'sku', ARGV[2])
  redis.call('HSETNX', KEYS[1], 'qty', ARGV[3])
  if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[1], 'email', ARGV[4]) end
  redis.call('HSETNX', KEYS[1], 'createdAt', ARGV[6])
end
if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[1], 'cancelReason', ARGV[5]) end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelledAt', ARGV[6], 'updatedAt', ARGV[6])
redis.call('INCR', KEYS[3])
local entry = {at = ARGV[6], event = 'cancelled', units = units}
if ARGV[5] ~= '' then entry.reason = ARGV[5] end
redis.call('ZREM', KEYS[status == 'created' and 8 or 7], ARGV[1])
local now_ms, retention_ms = tonumber(ARGV[7]), tonumber(ARGV[8])
move_to(KEYS[9], ARGV[1], order_change(KEYS[1], KEYS[4], KEYS[5], KEYS[6], ARGV[1], now_ms, retention_ms, entry), now_ms, retention_ms)
return {0, units}
