"""Lua scripts: every change that touches more than one key happens in one of these, atomically.

Each script documents its KEYS and ARGV. Times come from the Redis server clock (``TIME``), so workers
and API pods with skewed clocks agree on leases and due times. Queue entries are JSON-encoded ids
(``"<uuid>"``), as ``hotqueue`` with ``serializer=json`` writes them. Job hashes are found from ids with
the job key prefix passed in ARGV (the deployment is a single Redis, not a cluster).
"""

from __future__ import annotations

# Shared Lua helpers, prepended to scripts that need them.
_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

ENQUEUE = _NOW + """
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
"""

# claim_batch(): take up to `wanted` queued jobs for a worker (queued -> running); shared by CLAIM and
# FINISH_CLAIM. k = {queue, inflight, leases, pending, delayed, orphans, dead}; returns a flat list, 6
# fields per claimed job: id, task, params, timeout, attempts, max_attempts.
_CLAIM_FN = """
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
"""

# Claim memo (one string per worker, TTL = lease): the token and outcome of the worker's last CLAIM or
# FINISH_CLAIM. redis-py re-sends a call whose reply was lost (timeout, dropped connection); the re-sent
# call carries the same token and gets the first run's answer instead of claiming again, which would
# strand the jobs the first run leased to this worker until the reaper charged them an attempt.
_MEMO_FN = """
local function memo_replay(key, token, prefix, worker)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local m = cjson.decode(raw)
  if m.t ~= token then return nil end
  local out = {}
  for i, id in ipairs(m.ids) do
    local f = redis.call('HMGET', prefix .. id, 'status', 'worker', 'attempts', 'task', 'params', 'timeout',
      'max_attempts')
    if f[1] == 'running' and f[2] == worker and tonumber(f[3]) == m.att[i] then
      out[#out + 1] = id
      out[#out + 1] = f[4]
      out[#out + 1] = f[5]
      out[#out + 1] = f[6]
      out[#out + 1] = tonumber(f[3])
      out[#out + 1] = f[7]
    end
  end
  return {m.st, out}
end
local function memo_save(key, token, claimed, statuses, ttl_ms)
  if #claimed == 0 and #statuses == 0 then return end
  local ids, att = {}, {}
  for i = 1, #claimed, 6 do
    ids[#ids + 1] = claimed[i]
    att[#att + 1] = claimed[i + 4]
  end
  redis.call('SET', key, cjson.encode({t = token, ids = ids, att = att, st = statuses}), 'PX', ttl_ms)
end
"""

CLAIM = _NOW + _CLAIM_FN + _MEMO_FN + """
-- Promote due delayed jobs, then take up to N queued jobs for a worker: queued -> running.
-- KEYS: 1 queue list, 2 inflight list, 3 leases zset, 4 pending hash, 5 delayed zset,
--       6 orphans zset, 7 dead-letter list, 8 this worker's claim memo
-- ARGV: 1 N, 2 worker id, 3 lease ms, 4 job key prefix, 5 an entry already moved into inflight by
--       BLMOVE ('' if none), 6 events channel prefix, 7 claim token (new per call; repeated by a re-send)
-- Returns a flat list, 6 fields per claimed job: id, task, params, timeout, attempts, max_attempts
local replay = memo_replay(KEYS[8], ARGV[7], ARGV[4], ARGV[2])
if replay then return replay[2] end
local k = {queue = KEYS[1], inflight = KEYS[2], leases = KEYS[3], pending = KEYS[4], delayed = KEYS[5],
           orphans = KEYS[6], dead = KEYS[7]}
local out = claim_batch(k, tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], now_ms())
memo_save(KEYS[8], ARGV[7], out, {}, tonumber(ARGV[3]))
return out
"""

HEARTBEAT = _NOW + """
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
"""

PROGRESS = """
-- Record progress of a running job, only if this worker still holds this attempt.
-- KEYS: 1 job hash
-- ARGV: 1 worker id, 2 attempt, 3 progress (0..1 or ''), 4 message ('' = keep)
-- Returns 1 when written, 0 when the attempt is no longer this worker's.
local f = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempts')
if f[1] ~= 'running' or f[2] ~= ARGV[1] or f[3] ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'message', ARGV[4]) end
return 1
"""

# finish_one(): end a worker's attempt; shared by FINISH and FINISH_CLAIM. k = {job, inflight, leases,
# result, failed, delayed, queue, pending}; a = {id, worker, attempt, outcome, data, media, result_ttl,
# record_ttl, error, delay_ms, channel}. Returns {'ok', status} | {'stale', current status or ''}.
_FINISH_FN = """
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
"""

FINISH = _NOW + _FINISH_FN + """
-- End a worker's attempt: succeeded | failed | cancelled | retry (queued again, maybe delayed) |
-- handback (queued at the head of the queue, attempt not charged).
-- KEYS: 1 job hash, 2 inflight list, 3 leases zset, 4 result key, 5 failed zset, 6 delayed zset,
--       7 queue list, 8 pending hash
-- ARGV: 1 id, 2 worker id, 3 attempt, 4 outcome, 5 result bytes, 6 result media type,
--       7 result TTL s, 8 record TTL s, 9 error JSON ('' = none), 10 retry delay ms, 11 events channel
-- Returns {'ok', status} | {'stale', current status or ''}
if not OUTCOMES[ARGV[4]] then return redis.error_reply('unknown outcome ' .. ARGV[4]) end
local k = {job = KEYS[1], inflight = KEYS[2], leases = KEYS[3], result = KEYS[4], failed = KEYS[5],
           delayed = KEYS[6], queue = KEYS[7], pending = KEYS[8]}
local a = {id = ARGV[1], worker = ARGV[2], attempt = ARGV[3], outcome = ARGV[4], data = ARGV[5],
           media = ARGV[6], result_ttl = ARGV[7], record_ttl = ARGV[8], error = ARGV[9], delay_ms = ARGV[10],
           channel = ARGV[11]}
return finish_one(k, a, now_ms())
"""

FINISH_CLAIM = _NOW + _FINISH_FN + _CLAIM_FN + _MEMO_FN + """
-- The worker's hot path in one round trip: end any number of attempts (as FINISH), then claim up to N
-- queued jobs for the slots that are free (as CLAIM). Outcomes are all checked before anything changes.
-- KEYS: 1 queue list, 2 inflight list, 3 leases zset, 4 pending hash, 5 delayed zset, 6 orphans zset,
--       7 dead-letter list, 8 failed zset, 9 this worker's claim memo
-- ARGV: 1 worker id, 2 lease ms, 3 job key prefix, 4 result key prefix, 5 events channel prefix,
--       6 result TTL s, 7 record TTL s, 8 N to claim, 9 number of finishes F, then F groups of 7:
--       id, attempt, outcome, result bytes, result media type, error JSON ('' = none), retry delay ms;
--       last: claim token (new per call; repeated by a re-send, which gets the first run's reply)
-- Returns {{status or 'stale:<current status>' per finish}, {claimed jobs, 6 fields each as CLAIM}}
local token = ARGV[#ARGV]
local replay = memo_replay(KEYS[9], token, ARGV[3], ARGV[1])
if replay then return replay end
local nf = tonumber(ARGV[9])
for i = 0, nf - 1 do
  local outcome = ARGV[10 + i * 7 + 2]
  if not OUTCOMES[outcome] then return redis.error_reply('unknown outcome ' .. outcome) end
end
local now = now_ms()
local statuses = {}
for i = 0, nf - 1 do
  local b = 10 + i * 7
  local id = ARGV[b]
  local k = {job = ARGV[3] .. id, inflight = KEYS[2], leases = KEYS[3], result = ARGV[4] .. id,
             failed = KEYS[8], delayed = KEYS[5], queue = KEYS[1], pending = KEYS[4]}
  local a = {id = id, worker = ARGV[1], attempt = ARGV[b + 1], outcome = ARGV[b + 2], data = ARGV[b + 3],
             media = ARGV[b + 4], result_ttl = ARGV[6], record_ttl = ARGV[7], error = ARGV[b + 5],
             delay_ms = ARGV[b + 6], channel = ARGV[5] .. id}
  local r = finish_one(k, a, now)
  statuses[#statuses + 1] = r[1] == 'ok' and r[2] or ('stale:' .. r[2])
end
local claimed = {}
local wanted = tonumber(ARGV[8])
if wanted > 0 then
  local k = {queue = KEYS[1], inflight = KEYS[2], leases = KEYS[3], pending = KEYS[4], delayed = KEYS[5],
             orphans = KEYS[6], dead = KEYS[7]}
  claimed = claim_batch(k, wanted, ARGV[1], tonumber(ARGV[2]), ARGV[3], '', ARGV[5], now)
end
memo_save(KEYS[9], token, claimed, statuses, tonumber(ARGV[2]))
return {statuses, claimed}
"""

CANCEL = _NOW + """
-- Cancel a job: queued -> cancelled at once (removed from the queue); running -> cancel requested.
-- KEYS: 1 job hash, 2 queue list, 3 delayed zset, 4 pending hash
-- ARGV: 1 id, 2 owner ('' = any), 3 record TTL s, 4 events channel, 5 request token (fresh per call:
--       a copy re-sent by the client after a lost reply answers as the first run did, not 409)
-- Returns {'cancelled'} | {'requested'} | {'missing'} | {'illegal', status}
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'cancel_token')
if not f[1] or (ARGV[2] ~= '' and f[2] ~= ARGV[2]) then return {'missing'} end
if f[3] == ARGV[5] then
  if f[1] == 'cancelled' then return {'cancelled'} end
  if f[1] == 'running' then return {'requested'} end
end
if f[1] == 'queued' then
  redis.call('LREM', KEYS[2], 1, '"' .. ARGV[1] .. '"')
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now_ms(), 'cancel_token', ARGV[5])
  redis.call('HDEL', KEYS[1], 'run_at')
  redis.call('HINCRBY', KEYS[4], f[2], -1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[4], 'cancelled')
  return {'cancelled'}
elseif f[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1, 'cancel_token', ARGV[5])
  return {'requested'}
end
return {'illegal', f[1]}
"""

RETRY = """
-- Explicit retry: failed | cancelled -> queued with a fresh attempt budget.
-- KEYS: 1 job hash, 2 queue list, 3 failed zset, 4 pending hash
-- ARGV: 1 id, 2 owner ('' = any), 3 events channel, 4 request token (fresh per call: a copy re-sent after
--       a lost reply answers as the first run did while the job has not finished again, not 409)
-- Returns {'queued'} | {'missing'} | {'illegal', status}
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'retry_token')
if not f[1] or (ARGV[2] ~= '' and f[2] ~= ARGV[2]) then return {'missing'} end
if f[3] == ARGV[4] and (f[1] == 'queued' or f[1] == 'running') then return {'queued'} end
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return {'illegal', f[1]} end
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'retry_token', ARGV[4])
redis.call('HDEL', KEYS[1], 'finished_at', 'started_at', 'worker', 'progress', 'message', 'error',
  'cancel_requested', 'result_type', 'run_at')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], f[2], 1)
redis.call('RPUSH', KEYS[2], '"' .. ARGV[1] .. '"')
redis.call('PUBLISH', ARGV[3], 'queued')
return {'queued'}
"""

REAP = _NOW + """
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
"""

BROWSE = """
-- The console's job search: page through an index newest first with filters, examining at most a budget
-- of index entries (so no request scans every job), skipping and pruning ids whose records expired.
-- Creation times grow with seq (both come from the same script call), so once a job is older than the
-- created_from bound every later one is too: the scan stops there.
-- KEYS: 1 index zset
-- ARGV: 1 exclusive upper bound on seq ('+inf' for the first page), 2 limit, 3 scan budget,
--       4 job key prefix, 5 status ('' = any), 6 task ('' = any), 7 queue ('' = any),
--       8 queue of jobs recorded without one, 9 created_from ms ('' = none), 10 created_to ms ('' = none),
--       11 params field path, dot-separated ('' = no params filter), 12 wanted value as text
-- Returns {next cursor ('' = no more), entries examined, id...}
local bound = ARGV[1]
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local from = tonumber(ARGV[9])
local to = tonumber(ARGV[10])
local path = {}
for part in string.gmatch(ARGV[11], '[^.]+') do path[#path + 1] = part end
local function params_match(raw)
  local ok, v = pcall(cjson.decode, raw or '{}')
  if not ok then return false end
  for _, part in ipairs(path) do
    if type(v) ~= 'table' then return false end
    v = v[part]
  end
  if type(v) == 'string' then return v == ARGV[12] end
  if type(v) == 'boolean' or type(v) == 'number' then
    if type(v) == 'number' and v == math.floor(v) and math.abs(v) < 1e15 then
      return string.format('%d', v) == ARGV[12]
    end
    return tostring(v) == ARGV[12]
  end
  return false
end
local ids = {}
local scanned = 0
local last = nil
local exhausted = false
while #ids < limit and scanned < budget and not exhausted do
  local upper = bound == '+inf' and '+inf' or ('(' .. bound)
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], upper, '-inf', 'WITHSCORES', 'LIMIT', 0, 100)
  if #batch == 0 then exhausted = true break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    scanned = scanned + 1
    bound = score
    last = score
    local f = redis.call('HMGET', ARGV[4] .. id, 'status', 'task', 'queue', 'created_at', 'params')
    if not f[1] then
      redis.call('ZREM', KEYS[1], id)
    else
      local created = tonumber(f[4]) or 0
      if from and created < from then exhausted = true break end
      if (ARGV[5] == '' or f[1] == ARGV[5]) and (ARGV[6] == '' or f[2] == ARGV[6])
          and (ARGV[7] == '' or (f[3] or ARGV[8]) == ARGV[7]) and (not to or created <= to)
          and (#path == 0 or params_match(f[5])) then
        ids[#ids + 1] = id
      end
    end
    if #ids >= limit or scanned >= budget then break end
  end
end
local cursor = ''
if not exhausted and last then
  local more = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. last, '-inf', 'LIMIT', 0, 1)
  if #more > 0 then cursor = last end
end
local out = {cursor, scanned}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
"""
