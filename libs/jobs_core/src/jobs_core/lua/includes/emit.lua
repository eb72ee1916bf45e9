-- emit(events_prefix, id, status, tenant): a job changed status. PUBLISH on the job's channel (long-polls
-- wait on it) and XADD to the job event stream that GET /events reads (resumable by entry id). The stream is
-- named by the events channel prefix + 'stream' (Keys.event_stream; a channel name is never a key and no
-- job id is 'stream') and capped at about 10,000 entries (Keys.EVENT_STREAM_MAXLEN).
local function emit(events_prefix, id, status, tenant)
  redis.call('PUBLISH', events_prefix .. id, status)
  redis.call('XADD', events_prefix .. 'stream', 'MAXLEN', '~', 10000, '*', 'job', id, 'status', status,
    'tenant', tenant or '')
end
-- The events prefix of a job's channel (channel = prefix .. id).
local function events_prefix_of(channel, id)
  return string.sub(channel, 1, #channel - #id)
end
