-- rateLimit: counts one request of a caller in its current window, shared by every gateway.
-- A fixed window begins with the caller's first request and lasts ARGV[1] ms; the counter is the
-- window (it expires with it), so nothing is left behind by callers who stop calling.
-- KEYS[1] ratelimit:<caller>
-- ARGV[1] window length (ms)
-- Returns {count, ms left}: the requests counted in this window, this one included, and the time
--         until the window ends. Refused requests are counted too (the caller's count only grows
--         within its window; the gateway compares it with the limit).
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
-- A new counter (or one left without expiry by hand) starts its window now.
if n == 1 or left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
