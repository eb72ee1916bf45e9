--- @include "now"
-- Record one webhook delivery attempt and what follows from it, in one step: on the job's record (shown as
-- 'webhook' in its representation; skipped when the record has expired; the last ARGV[3] attempts kept,
-- 'delivered' stays true once set), and on the event's schedule (webhook_take.lua): 'failed' counts the
-- attempt and sets the next one at now + ARGV[6] * 2^(attempts - 1), capped at ARGV[7] (only while the event
-- is still owed: another dispatcher may have ended it meanwhile); 'delivered', 'refused' and 'expired'
-- end the event (acknowledged, deleted from the outbox, unscheduled).
-- KEYS: 1 job hash, 2 outbox stream, 3 due zset, 4 attempts hash (entry id -> failed attempts)
-- ARGV: 1 attempt JSON object, 2 outcome 'delivered' | 'failed' | 'refused' | 'expired', 3 attempts kept,
--       4 group, 5 outbox entry id, 6 first retry delay ms, 7 longest retry delay ms
-- Returns {failed attempts so far, ms of the next attempt (-1: none)}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local raw = redis.call('HGET', KEYS[1], 'webhook')
  local hook = raw and cjson.decode(raw) or {attempts = {}, delivered = false}
  local attempts = hook.attempts or {}
  attempts[#attempts + 1] = cjson.decode(ARGV[1])
  while #attempts > tonumber(ARGV[3]) do table.remove(attempts, 1) end
  hook.attempts = attempts
  hook.delivered = hook.delivered == true or ARGV[2] == 'delivered'
  redis.call('HSET', KEYS[1], 'webhook', cjson.encode(hook))
end
local id = ARGV[5]
if ARGV[2] == 'failed' then
  if not redis.call('ZSCORE', KEYS[3], id) then return {0, -1} end
  local n = redis.call('HINCRBY', KEYS[4], id, 1)
  local due = now_ms() + math.min(tonumber(ARGV[6]) * 2 ^ (n - 1), tonumber(ARGV[7]))
  redis.call('ZADD', KEYS[3], due, id)
  return {n, due}
end
redis.call('XACK', KEYS[2], ARGV[4], id)
redis.call('XDEL', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
local n = tonumber(redis.call('HGET', KEYS[4], id) or '0')
redis.call('HDEL', KEYS[4], id)
return {n, -1}
