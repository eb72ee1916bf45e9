--- @include "now"
-- Extend the leases of a worker's running jobs and report which to cancel and which it lost.
-- KEYS: 1 leases zset, 2 workers zset, 3 worker status key
-- ARGV: 1 worker id, 2 lease ms, 3 worker key TTL s, 4 worker status JSON, 5 job key prefix,
--       6.. pairs of (job id, attempt)
-- Returns {cancel ids (list), lost ids (list)}
local now = now_ms()
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3])
local cancel, lost = {}, {}
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local f = redis.call('HMGET', ARGV[5] .. id, 'status', 'worker', 'attempts', 'cancel_requested')
  if f[1] == 'running' and f[2] == ARGV[1] and f[3] == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    if f[4] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {cancel, lost}
