-- emit(events_prefix, id, status, tenant, queue): a job changed status. XADD to the job event stream that
-- GET /events reads (resumable by entry id), every status; PUBLISH on the job's channel only when the job
-- ended: its one listener, JobStore.wait (the long-poll), returns only then (a 'queued' or 'running' message
-- was a command per change that nobody acted on; issue 16).
-- The stream is named by the events channel prefix + 'stream' (Keys.event_stream; a channel name is never
-- a key and no job id is 'stream') and capped at about 10,000 entries (keys.EVENT_STREAM_MAXLEN).
local ENDED = {succeeded = true, failed = true, cancelled = true}
-- Returns the stream entry's id ('<ms>-<n>': the Redis clock, never going back).
local function emit(events_prefix, id, status, tenant, queue)
  if ENDED[status] then redis.call('PUBLISH', events_prefix .. id, status) end
  return redis.call('XADD', events_prefix .. 'stream', 'MAXLEN', '~', 10000, '*', 'job', id, 'status', status,
    'tenant', tenant or '', 'queue', queue or '')
end
-- emit_ended(events_prefix, id, status, tenant, queue, jk, result, reply_to): emit() for a job a worker just
-- ended, delivering the job to whoever waits on it as '<status>\n<record>\n<result>' (record: the hash as a
-- JSON array of field, value; cjson writes no raw newline, so the result after the second one is
-- binary-safe; '' when none), so the waiter reads neither (JobStore.wait, issue 16's round trip):
-- - on the job's channel only when it has a subscriber (PUBSUB NUMSUB, one command like the PUBLISH it
--   replaces otherwise: a GET ?wait long-poll, a waiter of a job submitted without reply_to);
-- - on the submitter's reply channel (the record's 'reply_to', read by the finish's own HMGET; '' = none)
--   prefixed with '<id>\n', with no NUMSUB: a job carries reply_to only when its submitter said it would
--   wait (JobStore.enqueue(reply=True), POST /jobs with Prefer: wait), and that thread subscribed to the
--   channel once, before the job existed. A name outside this deployment's events prefix is ignored.
local function emit_ended(events_prefix, id, status, tenant, queue, jk, result, reply_to)
  redis.call('XADD', events_prefix .. 'stream', 'MAXLEN', '~', 10000, '*', 'job', id, 'status', status,
    'tenant', tenant or '', 'queue', queue or '')
  local channel = events_prefix .. id
  local listening = redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0
  local reply = reply_to and reply_to ~= '' and string.sub(reply_to, 1, #events_prefix) == events_prefix
  if listening or reply then
    local body = status .. '\n' .. cjson.encode(redis.call('HGETALL', jk)) .. '\n' .. result
    if listening then redis.call('PUBLISH', channel, body) end
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
