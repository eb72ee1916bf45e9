--- @include "now"
-- Extend the leases of a worker's running jobs and report which to cancel and which it lost.
-- KEYS: 1 workers zset, 2 worker status key, 3.. the leases zset of each queue the worker consumes
-- ARGV: 1 worker id, 2 lease ms, 3 worker key TTL s, 4 worker status JSON, 5 job key prefix, 6 number of
--       queues Q, then Q queue names (in the order of their leases in KEYS), then pairs (job id, attempt)
-- Returns {cancel ids (list), lost ids (list)}
local now = now_ms()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3])
local nq = tonumber(ARGV[6])
local leases = {}
for i = 1, nq do leases[ARGV[6 + i]] = KEYS[2 + i] end
local cancel, lost = {}, {}
-- one ZADD per leases zset for all the worker's jobs in it (was one per job)
local extend, order = {}, {}
local deadline = now + tonumber(ARGV[2])
for i = 7 + nq, #ARGV, 2 do
  local id = ARGV[i]
  local f = redis.call('HMGET', ARGV[5] .. id, 'status', 'worker', 'attempts', 'cancel_requested', 'queue')
  if f[1] == 'running' and f[2] == ARGV[1] and f[3] == ARGV[i + 1] then
    local key = leases[f[5]] or KEYS[3]
    local z = extend[key]
    if not z then z = {}; extend[key] = z; order[#order + 1] = key end
    z[#z + 1] = deadline
    z[#z + 1] = id
    if f[4] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
for _, key in ipairs(order) do
  local z = extend[key]
  for i = 1, #z, 4000 do redis.call('ZADD', key, unpack(z, i, math.min(#z, i + 3999))) end
end
return {cancel, lost}
