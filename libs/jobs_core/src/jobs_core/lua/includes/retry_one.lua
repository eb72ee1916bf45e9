--- @include "queues"
--- @include "emit"
-- retry_one(jk, id, owner, events_prefix, token, q, failed, pending): explicit retry of one job, failed |
-- cancelled -> queued with a fresh attempt budget, at the back of its priority in queue block q. owner ''
-- = any; token: a request token (a copy re-sent after a lost reply answers as the first run did while the
-- job has not finished again, not 409). Used by RETRY and BULK_CHUNK.
-- Returns {'queued'} | {'missing'} | {'illegal', status}
local function retry_one(jk, id, owner, events_prefix, token, q, failed, pending)
  local f = redis.call('HMGET', jk, 'status', 'owner', 'retry_token', 'priority')
  if not f[1] or (owner ~= '' and f[2] ~= owner) then return {'missing'} end
  if f[3] == token and (f[1] == 'queued' or f[1] == 'running') then return {'queued'} end
  if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return {'illegal', f[1]} end
  redis.call('PERSIST', jk)
  redis.call('HSET', jk, 'status', 'queued', 'attempts', 0, 'retry_token', token)
  redis.call('HDEL', jk, 'finished_at', 'started_at', 'worker', 'progress', 'message', 'error',
    'cancel_requested', 'result_type', 'run_at')
  redis.call('ZREM', failed, id)
  redis.call('HINCRBY', pending, f[2], 1)
  push_waiting(q, priority_of(f[4]), '"' .. id .. '"', false)
  emit(events_prefix, id, 'queued', f[2], q.name)
  return {'queued'}
end
