-- Hand a running console bulk action back (its API process is stopping): its lease expires now, so the
-- next runner pass of any API process takes it over, instead of waiting for the lease to run out.
-- Only the holder may (after a takeover the old holder's token no longer matches).
-- KEYS: 1 bulk hash, 2 running zset
-- ARGV: 1 op id, 2 holder token
-- Returns 1 when handed back, 0 otherwise
local b = redis.call('HMGET', KEYS[1], 'state', 'holder')
if b[1] ~= 'running' or b[2] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'holder')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
