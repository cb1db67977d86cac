-- notifyFail: records a failed send attempt. With retries left the lease is released so the
-- retry can claim at once; on the last attempt the status becomes 'failed'.
-- KEYS[1] notifications:<id>
-- KEYS[2] stats:notifications:failed
-- ARGV[1] token of this attempt
-- ARGV[2] the error
-- ARGV[3] '1' when this was the last attempt, else '0'
-- KEYS[3] history:<id>: gets {"at","event":"notification_failed","kind","channel","attempts","error"}
--         when the notification becomes failed (the last attempt; earlier attempts add nothing)
-- ARGV[4] kind ('outcome': the created or rejected notice, or 'cancelled')  ARGV[5] now (ISO time)
-- ARGV[6] order retention in ms
-- Returns 1 recorded, 0 not ours any more (sent meanwhile, or another sender holds the lease)
-- uses lib/order.lua
local h = redis.call('HMGET', KEYS[1], 'status', 'owner', 'channel', 'attempts')
if h[1] == 'sent' or h[2] ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'lastError', ARGV[2])
  redis.call('HDEL', KEYS[1], 'owner', 'leaseUntil')
  redis.call('INCR', KEYS[2])
  notice_change(KEYS[1], KEYS[3], ARGV[6], {at = ARGV[5], event = 'notification_failed', kind = ARGV[4], channel = h[3] or nil, attempts = tonumber(h[4]) or 0, error = ARGV[2]})
else
  redis.call('HSET', KEYS[1], 'lastError', ARGV[2], 'leaseUntil', 0)
end
return 1
