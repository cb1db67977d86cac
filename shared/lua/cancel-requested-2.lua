-- cancelRequested: the gateway records a cancellation request once the broker confirmed its
-- order.cancel_requested message, so every 'cancelling' answer stands for a confirmed message.
-- Marking after the confirm leaves nothing to undo when the publish fails; two cancels of one
-- order at once may both publish (the processor's cancel-9.lua decides once).
-- KEYS[1] order:<id>  KEYS[2] history:<id> (gets {"at","event":"cancel_requested","reason","by"} when recorded now)
-- ARGV[1] cancel reason ('' for none)  ARGV[2] now (ISO time)
-- ARGV[3] who asked: the caller's token subject ('' when auth is off; absent from an earlier
--         gateway); recorded as cancelRequestedBy and as the entry's "by"
-- Returns {0, status, reason}  recorded now: this request is the first
--         {1, status, reason}  requested before (or the order is cancelled and was requested
--                              before): nothing changed but a missing reason
--         {3, status, ''}      the order became final meanwhile ('rejected', 'expired'): nothing changed
--         {4, '', ''}          no such order (deleted meanwhile): nothing written
-- status is the order's status ('accepted', 'created' or 'cancelled'); reason is the one recorded
-- first ('' for none).
-- uses lib/order.lua
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {4, '', ''} end
if status ~= 'accepted' and status ~= 'created' and status ~= 'cancelled' then return {3, status, ''} end
if ARGV[1] ~= '' then redis.call('HSETNX', KEYS[1], 'cancelReason', ARGV[1]) end
local first = redis.call('HSETNX', KEYS[1], 'cancelRequestedAt', ARGV[2])
local by = ARGV[3] or ''
if first == 1 and by ~= '' then redis.call('HSET', KEYS[1], 'cancelRequestedBy', by) end
if first == 1 and status ~= 'cancelled' then redis.call('HSET', KEYS[1], 'updatedAt', ARGV[2]) end
if first == 1 then
  -- history:<id> lives as long as order:<id> (it exists with it; RPUSH keeps its expiry).
  local entry = {at = ARGV[2], event = 'cancel_requested'}
  if ARGV[1] ~= '' then entry.reason = ARGV[1] end
  if by ~= '' then entry.by = by end
  history_push(KEYS[2], entry)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 and redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return {first == 1 and 0 or 1, status, redis.call('HGET', KEYS[1], 'cancelReason') or ''}
