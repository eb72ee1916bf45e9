-- finish_one(): end a worker's attempt; shared by FINISH and FINISH_CLAIM. k = {job, inflight, leases,
-- result, failed, delayed, queue, pending}; a = {id, worker, attempt, outcome, data, media, result_ttl,
-- record_ttl, error, delay_ms, channel}. Returns {'ok', status} | {'stale', current status or ''}.
local OUTCOMES = {succeeded = true, failed = true, cancelled = true, retry = true, handback = true}
local function finish_one(k, a, now)
  local f = redis.call('HMGET', k.job, 'status', 'worker', 'attempts', 'owner')
  if f[1] ~= 'running' or f[2] ~= a.worker or f[3] ~= a.attempt then return {'stale', f[1] or ''} end
  local id = a.id
  local outcome = a.outcome
  local entry = '"' .. id .. '"'
  -- O(running jobs), not O(queued): inflight holds only the ids workers are running
  redis.call('LREM', k.inflight, 1, entry)
  redis.call('ZREM', k.leases, id)
  local status
  if outcome == 'succeeded' then
    status = 'succeeded'
    redis.call('HSET', k.job, 'status', status, 'finished_at', now, 'progress', 1, 'result_type', a.media)
    redis.call('HDEL', k.job, 'error', 'cancel_requested')
    redis.call('SET', k.result, a.data, 'EX', a.result_ttl)
    redis.call('EXPIRE', k.job, a.record_ttl)
  elseif outcome == 'failed' or outcome == 'cancelled' then
    status = outcome
    redis.call('HSET', k.job, 'status', status, 'finished_at', now)
    if a.error ~= '' then redis.call('HSET', k.job, 'error', a.error) end
    if outcome == 'failed' then redis.call('ZADD', k.failed, now, id) end
    redis.call('EXPIRE', k.job, a.record_ttl)
  else -- retry | handback
    status = 'queued'
    redis.call('HSET', k.job, 'status', status)
    redis.call('HDEL', k.job, 'worker', 'cancel_requested')
    redis.call('HINCRBY', k.pending, f[4], 1)
    if outcome == 'handback' then
      redis.call('HINCRBY', k.job, 'attempts', -1)
      redis.call('LPUSH', k.queue, entry)
    else
      if a.error ~= '' then redis.call('HSET', k.job, 'error', a.error) end
      local delay = tonumber(a.delay_ms)
      if delay > 0 then
        redis.call('HSET', k.job, 'run_at', now + delay)
        redis.call('ZADD', k.delayed, now + delay, id)
      else
        redis.call('RPUSH', k.queue, entry)
      end
    end
  end
  redis.call('PUBLISH', a.channel, status)
  return {'ok', status}
end
