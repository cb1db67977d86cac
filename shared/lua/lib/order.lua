-- lib/order.lua: what the scripts that change an order share. Redis 7.0 scripts cannot load code,
-- so the loader (shared/src/redis.ts) puts this file before each script whose header says
-- `-- uses lib/order.lua`; a script calls only the functions it needs.

-- Whether the history and the indexes are written: always, but under the benchmark's switch
-- (skipHistoryIndex in shared/src/redis.ts), which turns it and the functions below into
-- no-ops so that their price can be measured. accept-n.lua writes its own entries and checks it.
local HISTORY_INDEX = true

-- Appends entry (a table, JSON-encoded) to history:<id>, keeping the newest 100.
local function history_push(history, entry)
  if redis.call('RPUSH', history, cjson.encode(entry)) > 100 then redis.call('LTRIM', history, -100, -1) end
end

-- Records a change: appends entry to the history, then indexes the order (orders:index,
-- orders:by-sku:<sku>) if it is not yet, and sets its retention then: order:<id> and history:<id>
-- expire retention ms after that time (the index score). An index entry older than the retention
-- (a late redelivery recreated the order after its keys expired) starts anew. Returns the score.
local function order_change(order, history, index, by_sku, id, now_ms, retention_ms, entry)
  history_push(history, entry)
  local score = tonumber(redis.call('ZSCORE', index, id))
  if score and score + retention_ms > now_ms then return score end
  redis.call('ZADD', index, now_ms, id)
  redis.call('ZADD', by_sku, now_ms, id)
  redis.call('PEXPIREAT', order, now_ms + retention_ms)
  redis.call('PEXPIREAT', history, now_ms + retention_ms)
  return now_ms
end

-- Moves the id into the status set `key` with its score, pruning that set's entries past the
-- retention (their orders have expired), so every set stays within the retention's orders.
local function move_to(key, id, score, now_ms, retention_ms)
  redis.call('ZADD', key, score, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now_ms - retention_ms))
end

-- The fields (of 'sku', 'qty', 'email') in which this copy differs from what order:<id>
-- records, or nil when they agree or nothing is recorded yet.
local function payload_differs(order, sku, qty, email)
  local h = redis.call('HMGET', order, 'sku', 'qty', 'email')
  if not h[1] then return nil end
  local differ = {}
  if h[1] ~= sku then differ[#differ + 1] = 'sku' end
  if h[2] ~= qty then differ[#differ + 1] = 'qty' end
  if (h[3] or '') ~= email then differ[#differ + 1] = 'email' end
  if #differ > 0 then return differ end
  return nil
end

-- A notification record's change: appends entry to history:<id>; a history that did not exist
-- (its order is gone) is kept for the retention from now, and the record as long as the history.
local function notice_change(notice, history, retention_ms, entry)
  history_push(history, entry)
  local at = redis.call('PEXPIRETIME', history)
  if at < 0 then
    redis.call('PEXPIRE', history, retention_ms)
    at = redis.call('PEXPIRETIME', history)
  end
  redis.call('PEXPIREAT', notice, at)
end
