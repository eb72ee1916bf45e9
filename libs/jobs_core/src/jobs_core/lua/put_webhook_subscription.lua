--- @include "now"
-- Create or replace a tenant's webhook subscription (Keys.webhook_subscriptions), keeping its creation
-- time. The terminal scripts read it at each terminal transition (includes/release.lua): the change
-- applies to transitions after this one.
-- KEYS: 1 subscriptions hash
-- ARGV: 1 tenant, 2 subscription JSON {url, statuses, tasks} (null filter = all)
-- Returns {created '1' | '0', stored JSON}
local now = now_ms()
local old = redis.call('HGET', KEYS[1], ARGV[1])
local sub = cjson.decode(ARGV[2])
sub.created_at = old and cjson.decode(old).created_at or now
sub.updated_at = now
local raw = cjson.encode(sub)
redis.call('HSET', KEYS[1], ARGV[1], raw)
return {old and '0' or '1', raw}
