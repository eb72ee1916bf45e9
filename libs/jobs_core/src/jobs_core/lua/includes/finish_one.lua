--- @include "attempt_log"
--- @include "emit"
--- @include "release"
--- @include "tally"
--- @include "now"
-- finish_one(): end a worker's attempt; used by FINISH_CLAIM. c = the call's constants, built once per call
-- (no table per job: profile 21): {jobs (job key prefix), results (result key prefix), events (events
-- channel prefix), worker, failed, pending, result_ttl, record_ttl, history_ttl, tally (includes/tally.lua:
-- the pending and history counts, the subscription cache), tenant_subs (tenant -> its subscription's raw
-- JSON or false, for this call)}; the lease is not removed here: its id joins q.lease_rem, which the caller
-- removes in one ZREM per queue (flush_lease_rem) before anything reads the leases again; q = the queue
-- block of the worker's queue the job is in (by_name lookup of its 'queue' field). The attempt: id,
-- attempt, outcome, data (result bytes), media (its type), err (error JSON, '' = none), delay_ms (retry).
-- Returns true, status | false, current status or '' (stale).
local OUTCOMES = {succeeded = true, failed = true, cancelled = true, retry = true, handback = true}
local function finish_one(c, queues, by_name, id, attempt, outcome, data, media, err, delay_ms, now)
  local jk = c.jobs .. id
  -- every field this finish needs, the webhook outbox's and the dependents' included, in one read (the
  -- priority, which only a retry or a hand-back needs, is read by those: a field costs the HMGET a
  -- listpack walk)
  local f = redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'owner', 'queue', 'task', 'error',
    'cancel_requested', 'attempt_log', 'started_at', 'callback', 'dependents', 'reply_to', 'waiters')
  if f[1] ~= 'running' or f[2] ~= c.worker or f[3] ~= attempt then return false, f[1] or '' end
  local q = by_name[f[5]] or queues[1]
  local now_s = now_arg(now) -- formatted once per call (includes/now.lua)
  -- one HSET per finish: the attempt log's end goes with the status change
  local log = log_ended(f[9], outcome, now, attempt, c.worker, f[10])
  -- the leases zset is the record of running jobs (KEDA counts it); no in-flight list to keep. After the
  -- log is decoded: a record that fails it keeps its status and its lease alike
  local rem = q.lease_rem
  if not rem then rem = {}; q.lease_rem = rem end
  rem[#rem + 1] = id
  local status
  if outcome == 'succeeded' then
    status = 'succeeded'
    if log then
      redis.call('HSET', jk, 'attempt_log', log, 'status', status, 'finished_at', now_s, 'progress', '1',
        'result_type', media)
    else
      redis.call('HSET', jk, 'status', status, 'finished_at', now_s, 'progress', '1', 'result_type', media)
    end
    -- read above, so that the common case (neither set) costs no command
    if f[7] or f[8] then redis.call('HDEL', jk, 'error', 'cancel_requested') end
    -- the result is its own key, with its own TTL (shorter than the record's; Redis 7.0 has no per-field
    -- TTL): profile 21 weighs the alternatives
    redis.call('SET', c.results .. id, data, 'EX', c.result_ttl)
    redis.call('EXPIRE', jk, c.record_ttl)
  elseif outcome == 'failed' or outcome == 'cancelled' then
    status = outcome
    local set = {'status', status, 'finished_at', now_s}
    if log then set[#set + 1] = 'attempt_log'; set[#set + 1] = log end
    if err ~= '' then set[#set + 1] = 'error'; set[#set + 1] = err end
    redis.call('HSET', jk, unpack(set))
    if outcome == 'failed' then redis.call('ZADD', c.failed, now_s, id) end
    redis.call('EXPIRE', jk, c.record_ttl)
  else -- retry | handback
    status = 'queued'
    local set = {'status', status}
    if log then set[#set + 1] = 'attempt_log'; set[#set + 1] = log end
    local delay = tonumber(delay_ms)
    if outcome == 'retry' then
      if err ~= '' then set[#set + 1] = 'error'; set[#set + 1] = err end
      if delay > 0 then set[#set + 1] = 'run_at'; set[#set + 1] = int_arg(now + delay) end
    end
    redis.call('HSET', jk, unpack(set))
    redis.call('HDEL', jk, 'worker', 'cancel_requested')
    tally_pending(c.tally, f[4], 1)
    local entry = '"' .. id .. '"'
    if outcome == 'handback' then
      redis.call('HINCRBY', jk, 'attempts', '-1')
      push_waiting(q, priority_of(redis.call('HGET', jk, 'priority')), entry, true)
    elseif delay > 0 then
      redis.call('ZADD', q.delayed, int_arg(now + delay), id)
      flag_delayed(q.control, now + delay) -- claims promote from the zset once this is due
    else
      push_waiting(q, priority_of(redis.call('HGET', jk, 'priority')), entry, false)
    end
    emit(c.events, id, status, f[4], q.name)
    return true, status
  end
  -- terminal: this transition happens once, so dependents are released once
  local run_ms -- the attempt's run time (nil: no start time); no math.max (a C call, ~0.7 k instructions)
  if f[10] then
    run_ms = now - tonumber(f[10])
    if run_ms < 0 then run_ms = 0 end
  end
  local hkey, hfield = history_field(q, f[6], status, now, run_ms)
  tally_history(c.tally, hkey, hfield, c.history_ttl)
  -- the webhook outbox and the dependents (includes/release.lua) only when the job has a callback or
  -- dependents, or its tenant a subscription (looked up once per tenant per call): most jobs have none
  local tenant = f[4] or 'default'
  local sub = c.tenant_subs[tenant]
  if sub == nil then
    sub = redis.call('HGET', c.events .. 'subscriptions', tenant)
    c.tenant_subs[tenant] = sub
    c.tally.subs[c.events .. '\0' .. tenant] = sub -- outbox's cache (the same read)
  end
  if f[11] or f[12] or sub then
    release_dependents(jk, id, status, now, c.pending, c.events, c.record_ttl, {f[11], f[4], f[6], f[12]},
                       c.tally.subs)
  end
  emit_ended(c.events, id, status, f[4], q.name, jk, status == 'succeeded' and data or '', f[13], f[14])
  return true, status
end
-- remove the leases of the attempts finish_one ended: one ZREM per queue
local function flush_lease_rem(queues)
  for _, q in ipairs(queues) do
    if q.lease_rem then
      call_chunked('ZREM', q.leases, q.lease_rem)
      q.lease_rem = nil
    end
  end
end
