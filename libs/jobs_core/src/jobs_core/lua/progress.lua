-- Record progress of a running job, only if this worker still holds this attempt.
-- KEYS: 1 job hash
-- ARGV: 1 worker id, 2 attempt, 3 progress (0..1 or ''), 4 message ('' = keep)
-- Returns 1 when written, 0 when the attempt is no longer this worker's.
local f = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempts')
if f[1] ~= 'running' or f[2] ~= ARGV[1] or f[3] ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'message', ARGV[4]) end
return 1
