--- @include "queues"
--- @include "emit"
-- Explicit retry: failed | cancelled -> queued with a fresh attempt budget, at the back of its priority.
-- KEYS: 1 job hash, 2 failed zset, 3 pending hash, then the block of the job's queue (includes/queues.lua)
-- ARGV: 1 id, 2 owner ('' = any), 3 events channel, 4 request token (fresh per call: a copy re-sent after
--       a lost reply answers as the first run did while the job has not finished again, not 409), then
--       the queue's ARGV block
-- Returns {'queued'} | {'missing'} | {'illegal', status}
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'retry_token', 'priority')
if not f[1] or (ARGV[2] ~= '' and f[2] ~= ARGV[2]) then return {'missing'} end
if f[3] == ARGV[4] and (f[1] == 'queued' or f[1] == 'running') then return {'queued'} end
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return {'illegal', f[1]} end
local q = queue_block(4, 5)
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'retry_token', ARGV[4])
redis.call('HDEL', KEYS[1], 'finished_at', 'started_at', 'worker', 'progress', 'message', 'error',
  'cancel_requested', 'result_type', 'run_at')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], f[2], 1)
push_waiting(q, priority_of(f[4]), '"' .. ARGV[1] .. '"', false)
emit(events_prefix_of(ARGV[3], ARGV[1]), ARGV[1], 'queued', f[2], q.name)
return {'queued'}
