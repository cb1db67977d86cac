-- release: compare-and-delete of the gateway's in-flight claim after a failed publish, so the
-- client's retry is accepted. Deletes only a claim that is still ours.
-- KEYS[1] idemp:<id>
-- ARGV[1] the claim's token
-- Returns 1 released, 0 not ours (or already gone)
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local rec = cjson.decode(cur)
if rec.state == 'inflight' and rec.token == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
