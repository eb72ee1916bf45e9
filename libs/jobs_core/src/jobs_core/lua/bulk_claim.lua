--- @include "now"
--- @include "bulk_audit"
-- Take over a console bulk action whose holder's lease expired (its API process died): the caller becomes
-- the holder (a new token: the old holder's next chunk is refused) with a fresh lease. An action taken
-- over more than ARGV[4] times is given up (state 'failed', audited): something fails it every time.
-- KEYS: 1 running zset (op id -> lease deadline ms), 2 audit stream
-- ARGV: 1 bulk hash key prefix (Keys.bulk_prefix), 2 holder token, 3 lease ms, 4 most takeovers,
--       5 audit entries kept
-- Returns the op id taken, or false when no lease has expired
local now = now_ms()
for _, op in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 10)) do
  local bk = ARGV[1] .. op
  if redis.call('HGET', bk, 'state') ~= 'running' then
    redis.call('ZREM', KEYS[1], op) -- ended, or its record expired
  elseif redis.call('HINCRBY', bk, 'claims', 1) > tonumber(ARGV[4]) then
    redis.call('HSET', bk, 'state', 'failed', 'updated_ms', now)
    redis.call('HDEL', bk, 'holder')
    redis.call('ZREM', KEYS[1], op)
    bulk_audit(bk, KEYS[2], ARGV[5], 'failed', now)
  else
    redis.call('HSET', bk, 'holder', ARGV[2])
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), op)
    return op
  end
end
return false
