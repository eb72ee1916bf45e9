--- @include "now"
-- Hand back jobs whose lease expired (their worker died): queued again, or failed with WorkerLost when
-- attempts are spent. Also recovers entries moved into inflight by a worker that died before claiming.
-- Runs at most once per interval across all workers (KEYS[7] is a lock that simply expires).
-- KEYS: 1 leases zset, 2 inflight list, 3 queue list, 4 failed zset, 5 pending hash, 6 orphans zset,
--       7 lock key
-- ARGV: 1 lock token, 2 lock TTL ms, 3 job key prefix, 4 events channel prefix, 5 record TTL s,
--       6 orphan grace ms, 7 max jobs per pass, 8 WorkerLost error JSON
-- Returns {-1} when another reaper ran this interval, else {requeued ids..., '|', failed ids...}
if not redis.call('SET', KEYS[7], ARGV[1], 'NX', 'PX', ARGV[2]) then return {-1} end
local now = now_ms()
local requeued, failed = {}, {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(expired) do
  local jk = ARGV[3] .. id
  local entry = '"' .. id .. '"'
  redis.call('ZREM', KEYS[1], id)
  redis.call('LREM', KEYS[2], 1, entry)
  local f = redis.call('HMGET', jk, 'status', 'attempts', 'max_attempts', 'owner')
  if f[1] == 'running' then
    redis.call('HDEL', jk, 'worker', 'cancel_requested')
    if tonumber(f[2]) >= tonumber(f[3]) then
      redis.call('HSET', jk, 'status', 'failed', 'finished_at', now, 'error', ARGV[8])
      redis.call('ZADD', KEYS[4], now, id)
      redis.call('EXPIRE', jk, ARGV[5])
      redis.call('PUBLISH', ARGV[4] .. id, 'failed')
      failed[#failed + 1] = id
    else
      redis.call('HSET', jk, 'status', 'queued', 'error', ARGV[8])
      redis.call('HINCRBY', KEYS[5], f[4], 1)
      redis.call('LPUSH', KEYS[3], entry)
      redis.call('PUBLISH', ARGV[4] .. id, 'queued')
      requeued[#requeued + 1] = id
    end
  end
end
-- inflight entries without a lease: a worker moved them (BLMOVE) and died before claiming
local entries = redis.call('LRANGE', KEYS[2], 0, 999)
for _, entry in ipairs(entries) do
  local ok, id = pcall(cjson.decode, entry)
  if ok and type(id) == 'string' and not redis.call('ZSCORE', KEYS[1], id) then
    local first = redis.call('ZSCORE', KEYS[6], id)
    if not first then
      redis.call('ZADD', KEYS[6], now, id)
    elseif now - tonumber(first) > tonumber(ARGV[6]) then
      redis.call('ZREM', KEYS[6], id)
      redis.call('LREM', KEYS[2], 1, entry)
      local st = redis.call('HGET', ARGV[3] .. id, 'status')
      if st == 'queued' then
        redis.call('LPUSH', KEYS[3], entry)
        requeued[#requeued + 1] = id
      elseif st == 'running' then
        -- running without a lease cannot be produced by CLAIM; give it an expired lease to reap next pass
        redis.call('ZADD', KEYS[1], now, id)
        redis.call('RPUSH', KEYS[2], entry)
      end
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - 10 * tonumber(ARGV[6]))
requeued[#requeued + 1] = '|'
for _, id in ipairs(failed) do requeued[#requeued + 1] = id end
return requeued
