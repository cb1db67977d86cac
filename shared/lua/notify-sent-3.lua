-- notifySent: records a notification as sent, once.
-- KEYS[1] notifications:<id>
-- KEYS[2] stats:notifications:sent
-- KEYS[3] history:<id>: gets {"at","event":"notification_sent","kind","channel","attempts"} when recorded now
-- ARGV[1] sentAt (ISO time)  ARGV[2] kind ('outcome': the created or rejected notice, or 'cancelled')
-- ARGV[3] order retention in ms
-- Returns 1 recorded now, 0 it was recorded before
-- uses lib/order.lua
local h = redis.call('HMGET', KEYS[1], 'status', 'channel', 'attempts')
if h[1] == 'sent' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'sent', 'sentAt', ARGV[1])
redis.call('HDEL', KEYS[1], 'owner', 'leaseUntil', 'lastError')
redis.call('INCR', KEYS[2])
notice_change(KEYS[1], KEYS[3], ARGV[3], {at = ARGV[1], event = 'notification_sent', kind = ARGV[2], channel = h[2] or nil, attempts = tonumber(h[3]) or 0})
return 1
