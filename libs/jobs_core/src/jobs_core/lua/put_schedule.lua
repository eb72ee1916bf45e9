--- @include "now"
-- Create or replace a tenant's schedule, or only pause/resume it. An unchanged definition changes
-- nothing (so declaring the same schedules at every deploy, from every API process, is idempotent); a
-- changed one gets a new version (tickers that planned from the old one then change nothing). A changed
-- or resumed schedule is due at once: the next ticker pass computes its next due time. The cursor (last
-- tick accounted for) starts at creation, and at a resume, so ticks from before the schedule existed or
-- while it was paused are never fired.
-- KEYS: 1 schedule hash, 2 schedules-due zset, 3 tenant's schedule names zset
-- ARGV: 1 due-zset member, 2 name, 3 spec JSON (canonical; '' = keep: pause/resume only), 4 paused
--       ('1'|'0'|'' = keep; new schedules default to '0'), 5 tenant's schedule cap (0 = none)
-- Returns {'created'|'updated'|'unchanged'|'missing'|'full'}
local now = now_ms()
local s = redis.call('HMGET', KEYS[1], 'spec', 'paused')
if not s[1] then
  if ARGV[3] == '' then return {'missing'} end
  local cap = tonumber(ARGV[5])
  if cap > 0 and redis.call('ZCARD', KEYS[3]) >= cap then return {'full'} end
  local paused = ARGV[4] == '1' and '1' or '0'
  redis.call('HSET', KEYS[1], 'spec', ARGV[3], 'version', 1, 'paused', paused, 'created_at', now,
    'updated_at', now, 'cursor', now, 'fired', 0, 'skipped', 0)
  redis.call('ZADD', KEYS[3], 0, ARGV[2])
  if paused == '0' then redis.call('ZADD', KEYS[2], now, ARGV[1]) end
  return {'created'}
end
local spec = ARGV[3] == '' and s[1] or ARGV[3]
local paused = ARGV[4] == '' and s[2] or ARGV[4]
if spec == s[1] and paused == s[2] then return {'unchanged'} end
if spec ~= s[1] then
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('HSET', KEYS[1], 'spec', spec)
end
if paused ~= s[2] then
  redis.call('HSET', KEYS[1], 'paused', paused)
  if paused == '0' then redis.call('HSET', KEYS[1], 'cursor', now) end
end
redis.call('HSET', KEYS[1], 'updated_at', now)
if paused == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], now, ARGV[1])
end
return {'updated'}
