--- @include "now"
-- Create a job record and queue it (or schedule it) in one step.
-- KEYS: 1 job hash, 2 queue list, 3 delayed zset, 4 index zset, 5 owner index zset, 6 pending hash,
--       7 seq counter, 8 idempotency key (unused unless ARGV[10] == '1')
-- ARGV: 1 id, 2 task, 3 params JSON, 4 max_attempts, 5 timeout, 6 owner, 7 delay ms, 8 global pending
--       cap (0 = none), 9 per-owner pending cap (0 = none), 10 use idempotency key '1'/'0',
--       11 request digest, 12 idempotency TTL s, 13 queue entry (JSON-encoded id)
-- Returns: {'ok', id, created_ms, seq} | {'exists', id} | {'conflict', id} | {'full', scope}
-- The id is new for every call, so a record under it means this very call already ran: the client's
-- retry after a lost reply (timeout, dropped connection). Answer as the first run did; change nothing.
local done = redis.call('HMGET', KEYS[1], 'created_at', 'seq')
if done[1] then return {'ok', ARGV[1], tonumber(done[1]), tonumber(done[2])} end
if ARGV[10] == '1' then
  local existing = redis.call('GET', KEYS[8])
  if existing then
    local sp = string.find(existing, ' ', 1, true)
    local eid = string.sub(existing, 1, sp - 1)
    if string.sub(existing, sp + 1) ~= ARGV[11] then return {'conflict', eid} end
    if redis.call('EXISTS', ARGV[14] .. eid) == 1 then return {'exists', eid} end
  end
end
local cap = tonumber(ARGV[8])
if cap > 0 and redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) >= cap then
  return {'full', 'global'}
end
local owner_cap = tonumber(ARGV[9])
if owner_cap > 0 and tonumber(redis.call('HGET', KEYS[6], ARGV[6]) or '0') >= owner_cap then
  return {'full', 'tenant'}
end
local now = now_ms()
local seq = redis.call('INCR', KEYS[7])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'task', ARGV[2], 'params', ARGV[3], 'status', 'queued',
  'attempts', 0, 'max_attempts', ARGV[4], 'timeout', ARGV[5], 'owner', ARGV[6],
  'created_at', now, 'seq', seq)
local delay = tonumber(ARGV[7])
if delay > 0 then
  redis.call('HSET', KEYS[1], 'run_at', now + delay)
  redis.call('ZADD', KEYS[3], now + delay, ARGV[1])
else
  redis.call('RPUSH', KEYS[2], ARGV[13])
end
redis.call('ZADD', KEYS[4], seq, ARGV[1])
redis.call('ZADD', KEYS[5], seq, ARGV[1])
redis.call('HINCRBY', KEYS[6], ARGV[6], 1)
if ARGV[10] == '1' then
  redis.call('SET', KEYS[8], ARGV[1] .. ' ' .. ARGV[11], 'EX', ARGV[12])
end
return {'ok', ARGV[1], now, seq}
