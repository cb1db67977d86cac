-- claim: the gateway claims order ids before publishing them (SET NX with a short lease), or
-- learns who holds each. The gateway sends the claims of one event-loop turn together, so many
-- concurrent requests share one round trip and one script call; each claim is decided exactly as
-- if it ran alone, in the order given (two claims of one id in a batch: the second sees the first).
-- KEYS[1]   stats:orders:duplicates      counter of replayed requests
-- KEYS[1+i] idemp:<id> of the i-th claim (the idempotency record, a JSON string)
-- ARGV[1]   in-flight lease in ms: a gateway that dies after claiming locks the id no longer than this
-- ARGV[2i], ARGV[2i+1]  the i-th claim's payload fingerprint (hex) and token (a UUID); the
--           in-flight record {"state":"inflight","fp":...,"token":...} is built here from them
-- Returns one reply per claim, in order:
--   {0}            claimed: publish, then accept or release
--   {1, response}  already accepted with the same payload: replay the stored response
--   {2}            the id is taken by a different payload
--   {3, pttl}      the first request is still in flight (pttl ms left on its lease)
--   {4}            the record under the id is unreadable (not a JSON string): it fails only its
--                  own claim, never the other claims of the batch
local function read(key)
  local raw = redis.pcall('GET', key)
  if type(raw) ~= 'string' then return nil end
  local ok, rec = pcall(cjson.decode, raw)
  if ok and type(rec) == 'table' then return rec end
  return nil
end

local replies = {}
for i = 1, #KEYS - 1 do
  local key, fp, token = KEYS[i + 1], ARGV[2 * i], ARGV[2 * i + 1]
  local record = '{"state":"inflight","fp":"' .. fp .. '","token":"' .. token .. '"}'
  if redis.call('SET', key, record, 'NX', 'PX', ARGV[1]) then
    replies[i] = {0}
  else
    local rec = read(key)
    if rec == nil then
      replies[i] = {4}
    elseif rec.state == 'inflight' and rec.token == token then
      -- Our own claim: the client resent the script after a reconnect.
      replies[i] = {0}
    elseif rec.fp ~= fp then
      replies[i] = {2}
    elseif rec.state == 'accepted' then
      redis.call('INCR', KEYS[1])
      replies[i] = {1, rec.response}
    else
      replies[i] = {3, redis.call('PTTL', key)}
    end
  end
end
return replies
