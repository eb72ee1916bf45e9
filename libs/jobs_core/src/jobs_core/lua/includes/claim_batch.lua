-- claim_batch(): take up to `wanted` queued jobs for a worker (queued -> running); shared by CLAIM and
-- FINISH_CLAIM. k = {queue, inflight, leases, pending, delayed, orphans, dead}; returns a flat list, 6
-- fields per claimed job: id, task, params, timeout, attempts, max_attempts.
local function claim_batch(k, wanted, worker, lease_ms, prefix, moved, events_prefix, now)
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', now, 'LIMIT', 0, 200)
  for _, id in ipairs(due) do
    redis.call('ZREM', k.delayed, id)
    local jk = prefix .. id
    if redis.call('HGET', jk, 'status') == 'queued' then
      redis.call('HDEL', jk, 'run_at')
      redis.call('RPUSH', k.queue, '"' .. id .. '"')
    end
  end
  local out = {}
  local claimed = 0
  local orphans = redis.call('EXISTS', k.orphans) == 1
  local function claim(entry)
    local ok, id = pcall(cjson.decode, entry)
    if not ok or type(id) ~= 'string' then
      redis.call('LREM', k.inflight, -1, entry)
      redis.call('RPUSH', k.dead, entry)
      return
    end
    local jk = prefix .. id
    local f = redis.call('HMGET', jk, 'status', 'task', 'params', 'timeout', 'max_attempts', 'owner')
    if f[1] ~= 'queued' then
      -- cancelled while waiting, expired, or a stale duplicate entry: drop it
      redis.call('LREM', k.inflight, -1, entry)
      if not f[1] then redis.call('RPUSH', k.dead, entry) end
      return
    end
    local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
    redis.call('HSET', jk, 'status', 'running', 'worker', worker, 'started_at', now)
    redis.call('HDEL', jk, 'progress', 'message', 'cancel_requested', 'finished_at')
    redis.call('ZADD', k.leases, now + lease_ms, id)
    if orphans then redis.call('ZREM', k.orphans, id) end
    redis.call('HINCRBY', k.pending, f[6], -1)
    redis.call('PUBLISH', events_prefix .. id, 'running')
    out[#out + 1] = id
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
    out[#out + 1] = f[4]
    out[#out + 1] = attempts
    out[#out + 1] = f[5]
    claimed = claimed + 1
  end
  if moved ~= '' then claim(moved) end
  local guard = 0
  while claimed < wanted and guard < wanted * 4 + 8 do
    guard = guard + 1
    local entry = redis.call('LMOVE', k.queue, k.inflight, 'LEFT', 'RIGHT')
    if not entry then break end
    claim(entry)
  end
  return out
end
