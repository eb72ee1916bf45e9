--- @include "now"
--- @include "release"
--- @include "queues"
--- @include "emit"
-- cancel_one(jk, id, owner, record_ttl, events_prefix, token, q, pending): cancel one job: queued or
-- waiting (on dependencies; its dependents are released: cancelled in turn unless their edge says
-- 'ignore') -> cancelled at once (removed from its waiting, paused or parked list in queue block q, or from
-- the delayed set); running -> cancel requested. owner '' = any; token: a request token (a copy re-sent
-- after a lost reply answers as the first run did, not 409). Used by CANCEL and BULK_CHUNK.
-- Returns {'cancelled'} | {'requested'} | {'missing'} | {'illegal', status}
local function cancel_one(jk, id, owner, record_ttl, events_prefix, token, q, pending)
  local f = redis.call('HMGET', jk, 'status', 'owner', 'cancel_token', 'priority', 'task', 'reply_to')
  if not f[1] or (owner ~= '' and f[2] ~= owner) then return {'missing'} end
  if f[3] == token then
    if f[1] == 'cancelled' then return {'cancelled'} end
    if f[1] == 'running' then return {'requested'} end
  end
  if f[1] == 'queued' then
    local p = priority_of(f[4])
    local entry = '"' .. id .. '"'
    if redis.call('LREM', q.waiting[p], 1, entry) == 0 and redis.call('LREM', q.paused[p], 1, entry) == 0 then
      redis.call('LREM', q.parked_prefix .. f[5], 1, entry)
    end
    redis.call('ZREM', q.delayed, id)
    redis.call('HSET', jk, 'status', 'cancelled', 'finished_at', now_ms(), 'cancel_token', token)
    redis.call('HDEL', jk, 'run_at')
    redis.call('HINCRBY', pending, f[2], -1)
    redis.call('EXPIRE', jk, record_ttl)
    emit(events_prefix, id, 'cancelled', f[2], q.name, jk, f[6]) -- and to its reply_to
    release_dependents(jk, id, 'cancelled', now_ms(), pending, events_prefix, record_ttl)
    return {'cancelled'}
  elseif f[1] == 'waiting' then
    redis.call('HSET', jk, 'status', 'cancelled', 'finished_at', now_ms(), 'cancel_token', token)
    redis.call('EXPIRE', jk, record_ttl)
    local fq = redis.call('HGET', jk, 'queue')
    emit(events_prefix, id, 'cancelled', f[2], fq, jk, f[6])
    release_dependents(jk, id, 'cancelled', now_ms(), pending, events_prefix, record_ttl)
    return {'cancelled'}
  elseif f[1] == 'running' then
    redis.call('HSET', jk, 'cancel_requested', 1, 'cancel_token', token)
    return {'requested'}
  end
  return {'illegal', f[1]}
end
