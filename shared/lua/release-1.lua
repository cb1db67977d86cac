-- release: compare-and-delete of the gateway's in-flight claim after a failed publish, so the
-- client's retry is accepted. Deletes only a claim that is still ours.
-- KEYS[1] idemp:<id>
-- ARGV[1] the claim's token
-- Returns 1 released, 0 not ours: another claim's or an accepted record, already gone, or an
--         unreadable record (not a JSON object string), which is left alone as claim and accept do
local raw = redis.pcall('GET', KEYS[1])
if type(raw) ~= 'string' then return 0 end
local ok, rec = pcall(cjson.decode, raw)
if ok and type(rec) == 'table' and rec.state == 'inflight' and rec.token == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
