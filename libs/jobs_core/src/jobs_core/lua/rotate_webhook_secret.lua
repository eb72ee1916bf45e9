-- Replace a tenant's webhook signing secret; the one it replaces stays valid (signatures are made with
-- both) until the grace period ends.
-- KEYS: 1 secrets hash (Keys.webhook_secrets)
-- ARGV: 1 tenant, 2 new secret, 3 grace ms
-- Returns the new secret.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local entry = {current = ARGV[2]}
if raw then
  entry.previous = cjson.decode(raw).current
  entry.previous_until = now + tonumber(ARGV[3])
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
return ARGV[2]
