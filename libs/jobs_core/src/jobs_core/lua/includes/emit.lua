-- emit(events_prefix, id, status, tenant, queue): a job changed status. Its event for the job event stream
-- that GET /events reads (resumable) goes into this call's buffer, and emit_flush() writes the buffer as ONE
-- stream entry (one XADD per script call, however many jobs it changed; issue 16). PUBLISH on the job's
-- channel only when the job ended, at once: its one listener, JobStore.wait (the long-poll), returns only
-- then (a 'queued' or 'running' message was a command per change that nobody acted on).
-- The stream is named by the events channel prefix + 'stream' (Keys.event_stream; a channel name is never
-- a key and no job id is 'stream') and keeps about the 10,000 newest events (keys.EVENT_STREAM_MAXLEN): an
-- entry of n events is added with MAXLEN ~ 10000 / n, so a stream of like entries holds about 10,000
-- events whatever their size (a cap of 10,000 entries would let 1,000-job batches hold 10 million). A mix:
-- the newest entry of s events or more trimmed the stream to 10000 / s entries, so at most that many such
-- entries are there; summed over s, at most 10,000 x (1 + 1/2 + ... + 1/largest) events: 7.5 x 10,000 at
-- worst for entries of up to 1,000 events.
-- Entry format (decoded by jobs_core.event_stream, the one reader every consumer uses):
--   one event:   job <id>, status <status>, tenant <tenant>, queue <queue>   (the form of before)
--   more events: jobs '[[id, status, tenant, queue], ...]' (JSON, in the order they happened)
--   (queue pause / resume / cap entries, written by queue_control.lua, have kind 'queue')
-- Every command that includes this file (directly or through another include) calls emit_flush() after
-- its last change, before it returns (tests/core/test_event_stream.py checks every command file: no return
-- after a call that may emit without an emit_flush() between). A command that needs the entry's id (its ms
-- part is the Redis clock, never going back: enqueue dates jobs by it) uses emit_flush()'s return value.
-- (Wrapping each command's body in a function that flushes after it was tried: the closure over ~30
-- include locals cost ~13,000 instructions per call in Redis 7.0's Lua, 4% of a single submission.)
-- This call's buffer, one table (one upvalue for the two functions below, its slots preallocated: the
-- includes' prelude runs on every call, and each upvalue and closure there costs instructions): [1] the
-- number of events, [2] the stream, [3]-[6] the first event's id, status, tenant, queue (no table for the
-- one event most calls have), then [7]... one {id, status, tenant, queue} per later event.
local emit_buf = {0, false, false, false, false, false}
-- Write the buffered events (if any) as one stream entry; returns its id ('<ms>-<n>'), nil when none.
-- MAXLEN is passed as a string: redis.call formats a Lua number with snprintf (~2,600 instructions).
local function emit_flush()
  local b = emit_buf
  local n = b[1]
  if n == 0 then return nil end
  b[1] = 0
  if n == 1 then
    return redis.call('XADD', b[2], 'MAXLEN', '~', '10000', '*', 'job', b[3], 'status', b[4], 'tenant', b[5],
      'queue', b[6])
  end
  local all = {{b[3], b[4], b[5], b[6]}}
  for i = 2, n do all[i] = b[5 + i] end
  return redis.call('XADD', b[2], 'MAXLEN', '~', string.format('%d', math.max(1, math.floor(10000 / n))), '*',
    'jobs', cjson.encode(all))
end
-- the stream's name for the last events prefix seen: a call emits in one namespace in practice, so the
-- name is built once per call, not per event (profile 21)
local emit_prefix, emit_stream
local function emit_buffered(events_prefix, id, status, tenant, queue)
  local b = emit_buf
  if events_prefix ~= emit_prefix then emit_prefix, emit_stream = events_prefix, events_prefix .. 'stream' end
  local stream = emit_stream
  if b[1] > 0 and stream ~= b[2] then emit_flush() end
  b[2] = stream
  local n = b[1] + 1
  b[1] = n
  if n == 1 then
    b[3], b[4], b[5], b[6] = id, status, tenant or '', queue or ''
  else
    b[5 + n] = {id, status, tenant or '', queue or ''}
  end
end
local ENDED = {succeeded = true, failed = true, cancelled = true}
-- Whether reply_to (a record's 'reply_to', false/nil/'' = none: records of before reply channels) names a
-- reply channel of this deployment (a name outside its events prefix is ignored).
local function is_reply_to(events_prefix, reply_to)
  return reply_to and reply_to ~= '' and string.sub(reply_to, 1, #events_prefix) == events_prefix
end
-- emit(events_prefix, id, status, tenant, queue[, jk, reply_to]): a job changed status (buffered as above).
-- An end (a cancel, the reaper's failure, a workflow cascade's cancel: every end but a worker's finish,
-- which uses emit_ended) is published at once as the bare status on the job's channel, and, when the caller
-- passes the record's key and 'reply_to' (read by the HMGET it already does: no command when the job has
-- none), delivered on the submitter's reply channel as emit_ended delivers it:
-- '<id>\n<status>\n<record>\n' (no result: only a worker's success has one), so a reply waiter
-- (JobStore.wait, POST /jobs with Prefer: wait) hears every end at once and reads nothing. Call it after
-- the record's last change that the waiter sees (status, finished_at, error, run_at).
local function emit(events_prefix, id, status, tenant, queue, jk, reply_to)
  if ENDED[status] then
    redis.call('PUBLISH', events_prefix .. id, status)
    if jk and is_reply_to(events_prefix, reply_to) then
      local record = cjson.encode(redis.call('HGETALL', jk))
      redis.call('PUBLISH', reply_to, id .. '\n' .. status .. '\n' .. record .. '\n')
    end
  end
  emit_buffered(events_prefix, id, status, tenant, queue)
end
-- emit_ended(events_prefix, id, status, tenant, queue, jk, result, reply_to, waiters): emit() for a job a
-- worker just ended, delivering the job to whoever waits on it as '<status>\n<record>\n<result>' (record:
-- the hash as a JSON array of field, value; cjson writes no raw newline, so the result after the second one
-- is binary-safe; '' when none), so the waiter reads neither (JobStore.wait, issue 16's round trip):
-- - on the job's channel only when the record's 'waiters' count (read by the finish's own HMGET) is above
--   0: a GET ?wait long-poll, a waiter of a job submitted without reply_to, counts itself in before it
--   subscribes (lua/waiters.lua; a PUBSUB NUMSUB per finished job before, issue 16). The field goes with
--   the message (its waiters all return with it). A waiter of the version before the count (rolling
--   upgrade) is not counted: it learns of the end by its once-a-second re-read of the record (<= 1 s late);
-- - on the submitter's reply channel (the record's 'reply_to', read by the finish's own HMGET; '' = none)
--   prefixed with '<id>\n', with no NUMSUB: a job carries reply_to only when its submitter said it would
--   wait (JobStore.enqueue(reply=True), POST /jobs with Prefer: wait), and that thread subscribed to the
--   channel once, before the job existed. A name outside this deployment's events prefix is ignored.
-- The PUBLISHes go out before the buffered stream entry is written: no client sees the order inside a
-- script (a subscriber reads its message once the script has ended).
local function emit_ended(events_prefix, id, status, tenant, queue, jk, result, reply_to, waiters)
  emit_buffered(events_prefix, id, status, tenant, queue)
  -- nobody waits (most jobs): two field tests, no string built, no command
  if not waiters and not reply_to then return end
  local listening = (tonumber(waiters) or 0) > 0
  local reply = is_reply_to(events_prefix, reply_to)
  if listening or reply then
    if listening then redis.call('HDEL', jk, 'waiters') end
    local body = status .. '\n' .. cjson.encode(redis.call('HGETALL', jk)) .. '\n' .. result
    if listening then redis.call('PUBLISH', events_prefix .. id, body) end
    if reply then redis.call('PUBLISH', reply_to, id .. '\n' .. body) end
  end
end
-- The events prefix of a job's channel (channel = prefix .. id).
local function events_prefix_of(channel, id)
  return string.sub(channel, 1, #channel - #id)
end
-- The events prefix from the job key prefix ('<prefix>:job:' -> '<prefix>:events:', as Keys builds both).
local function events_prefix_from_jobs(job_prefix)
  return string.sub(job_prefix, 1, #job_prefix - 4) .. 'events:'
end
