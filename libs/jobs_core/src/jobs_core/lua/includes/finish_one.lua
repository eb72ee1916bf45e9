--- @include "attempt_log"
--- @include "emit"
--- @include "release"
--- @include "tally"
--- @include "now"
-- finish_one(): end a worker's attempt; used by FINISH_CLAIM. c = {job, result, failed, pending,
-- history_ttl, tally (includes/tally.lua: the pending and history counts, the subscription cache)}; the
-- lease is not removed here: its id joins q.lease_rem, which the caller removes in one ZREM per queue
-- (flush_lease_rem) before anything reads the leases again; q = the queue block of the worker's queue the
-- job is in (by_name lookup of its 'queue' field); a = {id, worker, attempt, outcome, data, media,
-- result_ttl, record_ttl, error, delay_ms, channel}. Returns {'ok', status} | {'stale', current status or
-- ''}.
local OUTCOMES = {succeeded = true, failed = true, cancelled = true, retry = true, handback = true}
local function finish_one(c, queues, by_name, a, now)
  -- every field this finish needs, the webhook outbox's and the dependents' included, in one read
  local f = redis.call('HMGET', c.job, 'status', 'worker', 'attempts', 'owner', 'queue', 'priority', 'task',
    'error', 'cancel_requested', 'attempt_log', 'started_at', 'callback', 'dependents', 'reply_to', 'waiters')
  if f[1] ~= 'running' or f[2] ~= a.worker or f[3] ~= a.attempt then return {'stale', f[1] or ''} end
  local q = by_name[f[5]] or queues[1]
  local id = a.id
  local outcome = a.outcome
  local entry = '"' .. id .. '"'
  local now_s = now_arg(now) -- formatted once per call (includes/now.lua)
  -- one HSET per finish: the attempt log's end goes with the status change
  local set = {}
  local function put(field, value) set[#set + 1] = field; set[#set + 1] = value end
  local log = log_ended(f[10], outcome, now)
  -- the leases zset is the record of running jobs (KEDA counts it); no in-flight list to keep. After the
  -- log is decoded: a record that fails it keeps its status and its lease alike
  local rem = q.lease_rem
  if not rem then rem = {}; q.lease_rem = rem end
  rem[#rem + 1] = id
  if log then put('attempt_log', log) end
  local status
  if outcome == 'succeeded' then
    status = 'succeeded'
    put('status', status); put('finished_at', now_s); put('progress', '1'); put('result_type', a.media)
    redis.call('HSET', c.job, unpack(set))
    -- read above, so that the common case (neither set) costs no command
    if f[8] or f[9] then redis.call('HDEL', c.job, 'error', 'cancel_requested') end
    redis.call('SET', c.result, a.data, 'EX', a.result_ttl)
    redis.call('EXPIRE', c.job, a.record_ttl)
  elseif outcome == 'failed' or outcome == 'cancelled' then
    status = outcome
    put('status', status); put('finished_at', now_s)
    if a.error ~= '' then put('error', a.error) end
    redis.call('HSET', c.job, unpack(set))
    if outcome == 'failed' then redis.call('ZADD', c.failed, now_s, id) end
    redis.call('EXPIRE', c.job, a.record_ttl)
  else -- retry | handback
    status = 'queued'
    put('status', status)
    if outcome == 'retry' then
      if a.error ~= '' then put('error', a.error) end
      if tonumber(a.delay_ms) > 0 then put('run_at', int_arg(now + tonumber(a.delay_ms))) end
    end
    redis.call('HSET', c.job, unpack(set))
    redis.call('HDEL', c.job, 'worker', 'cancel_requested')
    tally_pending(c.tally, f[4], 1)
    if outcome == 'handback' then
      redis.call('HINCRBY', c.job, 'attempts', '-1')
      push_waiting(q, priority_of(f[6]), entry, true)
    else
      local delay = tonumber(a.delay_ms)
      if delay > 0 then
        redis.call('ZADD', q.delayed, int_arg(now + delay), id)
        flag_delayed(q.control, now + delay) -- claims promote from the zset once this is due
      else
        push_waiting(q, priority_of(f[6]), entry, false)
      end
    end
  end
  if status ~= 'queued' then  -- terminal: this transition happens once, so dependents are released once
    local hkey, hfield = history_field(q, f[7], status, now, f[11] and math.max(0, now - tonumber(f[11])) or nil)
    tally_history(c.tally, hkey, hfield, c.history_ttl)
    release_dependents(c.job, id, status, now, c.pending, events_prefix_of(a.channel, a.id), a.record_ttl,
                       {f[12], f[4], f[7], f[13]}, c.tally.subs)
  end
  if status == 'queued' then
    emit(events_prefix_of(a.channel, a.id), a.id, status, f[4], q.name)
  else
    emit_ended(events_prefix_of(a.channel, a.id), a.id, status, f[4], q.name, c.job,
               status == 'succeeded' and a.data or '', f[14], f[15])
  end
  return {'ok', status}
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
