-- notifySent: records a notification as sent, once.
-- KEYS[1] notifications:<id>
-- KEYS[2] stats:notifications:sent
-- ARGV[1] sentAt (ISO time)
-- Returns 1 recorded now, 0 it was recorded before
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'sent' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'sent', 'sentAt', ARGV[1])
redis.call('HDEL', KEYS[1], 'owner', 'leaseUntil', 'lastError')
redis.call('INCR', KEYS[2])
return 1
