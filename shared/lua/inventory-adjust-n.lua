-- inventoryAdjust: adds a delta to a SKU's stock, never below 0, at most once per idempotency key.
-- One script does it all: read the key's record, check, change the level and store the answer.
-- So a request with the same key runs wholly before or after this one: it is never "in flight".
-- KEYS[1] inventory:<sku>                  units in stock, a plain integer string (operators SET it)
-- KEYS[2] idemp-inventory:<sku>:<key>      optional (1 or 2 keys): the answer stored under the
--                                          request's Idempotency-Key, JSON {"delta","level","token","at"}
-- ARGV[1] delta: a non-zero whole number, as the caller checked it
-- ARGV[2] the highest level an increase may reach
-- ARGV[3] TTL in seconds of the stored answer (with KEYS[2])
-- ARGV[4] this request's token (a UUID): the same script resent after a reconnect is known as ours
-- ARGV[5] now (ISO time), kept in the record
-- Returns {0, level}  applied: the new level; with KEYS[2] it is stored as the key's answer
--         {1, level}  the key's stored answer (same delta, another request): nothing changed
--         {2, delta}  the key was used with another delta (that delta, a string): nothing changed
--         {3, level}  refused, the level would go below 0: the level now, nothing changed
--         {4, level}  refused, the level would pass ARGV[2]: the level now, nothing changed
--         {5}         refused, inventory:<sku> does not exist (never stocked): nothing changed
--         {6, raw}    inventory:<sku> is not a whole number from 0 (or not a string): nothing changed
--         {7}         the key's record is unreadable (not written by this script): nothing changed
-- Only an applied adjustment is stored: a refusal changed nothing, so a retry with the same key is
-- decided afresh (it may apply once the stock allows it).
if KEYS[2] then
  local raw = redis.pcall('GET', KEYS[2])
  if raw then
    if type(raw) ~= 'string' then return {7} end
    local ok, rec = pcall(cjson.decode, raw)
    if not ok or type(rec) ~= 'table' or type(rec.delta) ~= 'string' or type(rec.level) ~= 'string'
      or not string.match(rec.level, '^%d+$') then
      return {7}
    end
    if rec.delta ~= ARGV[1] then return {2, rec.delta} end
    return {(rec.token == ARGV[4]) and 0 or 1, tonumber(rec.level)}
  end
end
local stock = redis.pcall('GET', KEYS[1])
if not stock then return {5} end
-- Checked before any write. No sign, no leading zero (INCRBY and the processor's DECRBY refuse
-- those), at most 15 digits (exact as a Lua number).
if type(stock) ~= 'string' then return {6, 'not a string'} end
if not (stock == '0' or string.match(stock, '^[1-9]%d*$')) or #stock > 15 then return {6, stock} end
local level, delta = tonumber(stock), tonumber(ARGV[1])
if delta < 0 and level + delta < 0 then return {3, level} end
if delta > 0 and level + delta > tonumber(ARGV[2]) then return {4, level} end
local new = redis.call('INCRBY', KEYS[1], delta)
if KEYS[2] then
  local rec = cjson.encode({delta = ARGV[1], level = string.format('%d', new), token = ARGV[4], at = ARGV[5]})
  redis.call('SET', KEYS[2], rec, 'EX', ARGV[3])
end
return {0, new}
