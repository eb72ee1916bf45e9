--- @include "now"
-- Cancel a job: queued -> cancelled at once (removed from the queue); running -> cancel requested.
-- KEYS: 1 job hash, 2 queue list, 3 delayed zset, 4 pending hash
-- ARGV: 1 id, 2 owner ('' = any), 3 record TTL s, 4 events channel, 5 request token (fresh per call:
--       a copy re-sent by the client after a lost reply answers as the first run did, not 409)
-- Returns {'cancelled'} | {'requested'} | {'missing'} | {'illegal', status}
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'cancel_token')
if not f[1] or (ARGV[2] ~= '' and f[2] ~= ARGV[2]) then return {'missing'} end
if f[3] == ARGV[5] then
  if f[1] == 'cancelled' then return {'cancelled'} end
  if f[1] == 'running' then return {'requested'} end
end
if f[1] == 'queued' then
  redis.call('LREM', KEYS[2], 1, '"' .. ARGV[1] .. '"')
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now_ms(), 'cancel_token', ARGV[5])
  redis.call('HDEL', KEYS[1], 'run_at')
  redis.call('HINCRBY', KEYS[4], f[2], -1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[4], 'cancelled')
  return {'cancelled'}
elseif f[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1, 'cancel_token', ARGV[5])
  return {'requested'}
end
return {'illegal', f[1]}
