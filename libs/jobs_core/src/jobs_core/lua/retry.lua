-- Explicit retry: failed | cancelled -> queued with a fresh attempt budget.
-- KEYS: 1 job hash, 2 queue list, 3 failed zset, 4 pending hash
-- ARGV: 1 id, 2 owner ('' = any), 3 events channel, 4 request token (fresh per call: a copy re-sent after
--       a lost reply answers as the first run did while the job has not finished again, not 409)
-- Returns {'queued'} | {'missing'} | {'illegal', status}
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'retry_token')
if not f[1] or (ARGV[2] ~= '' and f[2] ~= ARGV[2]) then return {'missing'} end
if f[3] == ARGV[4] and (f[1] == 'queued' or f[1] == 'running') then return {'queued'} end
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return {'illegal', f[1]} end
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'retry_token', ARGV[4])
redis.call('HDEL', KEYS[1], 'finished_at', 'started_at', 'worker', 'progress', 'message', 'error',
  'cancel_requested', 'result_type', 'run_at')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], f[2], 1)
redis.call('RPUSH', KEYS[2], '"' .. ARGV[1] .. '"')
redis.call('PUBLISH', ARGV[3], 'queued')
return {'queued'}
