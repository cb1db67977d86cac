-- listOrders: one page of an order index (orders:index, orders:by-sku:<sku> or
-- orders:by-status:<status>), newest first, after a cursor. Entries older than the retention are
-- pruned first: their orders have expired with them.
-- KEYS[1] the sorted set (ids scored by acceptance time in ms)
-- ARGV[1] cutoff (ms): entries scored below it are removed
-- ARGV[2] how many entries to return at most
-- ARGV[3] the cursor's score ('' for the first page)  ARGV[4] the cursor's id
-- Returns {id1, score1, id2, score2, ...}: the entries after the cursor in the order score
-- descending, then id descending (ZREVRANGE's order), so paging never repeats nor skips an entry
-- that stays in the set, however many orders arrive meanwhile.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
local count = tonumber(ARGV[2])
if ARGV[3] == '' then
  return redis.call('ZREVRANGE', KEYS[1], 0, count - 1, 'WITHSCORES')
end
local cscore, cid = tonumber(ARGV[3]), ARGV[4]
-- The cursor's entry is still there: go on right after it.
local s = redis.call('ZSCORE', KEYS[1], cid)
if s and tonumber(s) == cscore then
  local rank = redis.call('ZREVRANK', KEYS[1], cid)
  return redis.call('ZREVRANGE', KEYS[1], rank + 1, rank + count, 'WITHSCORES')
end
-- It left the set (its status changed, or it was pruned): start at its score and skip the
-- entries of that score that come before it (id not below it), reading in chunks.
local out, offset = {}, 0
while #out < 2 * count do
  local chunk = redis.call('ZREVRANGEBYSCORE', KEYS[1], cscore, '-inf', 'WITHSCORES', 'LIMIT', offset, 100)
  if #chunk == 0 then break end
  for i = 1, #chunk, 2 do
    local id, score = chunk[i], tonumber(chunk[i + 1])
    if (score < cscore or id < cid) and #out < 2 * count then
      out[#out + 1] = id
      out[#out + 1] = chunk[i + 1]
    end
  end
  offset = offset + #chunk / 2
end
return out
