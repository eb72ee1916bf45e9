-- emit(events_prefix, id, status, tenant, queue): a job changed status. PUBLISH on the job's channel
-- (long-polls wait on it) and XADD to the job event stream that GET /events reads (resumable by entry id).
-- The stream is named by the events channel prefix + 'stream' (Keys.event_stream; a channel name is never
-- a key and no job id is 'stream') and capped at about 10,000 entries (keys.EVENT_STREAM_MAXLEN).
local function emit(events_prefix, id, status, tenant, queue)
  redis.call('PUBLISH', events_prefix .. id, status)
  redis.call('XADD', events_prefix .. 'stream', 'MAXLEN', '~', 10000, '*', 'job', id, 'status', status,
    'tenant', tenant or '', 'queue', queue or '')
end
-- The events prefix of a job's channel (channel = prefix .. id).
local function events_prefix_of(channel, id)
  return string.sub(channel, 1, #channel - #id)
end
-- The events prefix from the job key prefix ('<prefix>:job:' -> '<prefix>:events:', as Keys builds both).
local function events_prefix_from_jobs(job_prefix)
  return string.sub(job_prefix, 1, #job_prefix - 4) .. 'events:'
end
