--- @include "now"
--- @include "release"
--- @include "queues"
--- @include "emit"
-- Cancel a job: queued or waiting (on dependencies; its dependents are released: cancelled in turn
-- unless their edge says 'ignore') -> cancelled at once (removed from its waiting, paused or parked list, or from the
-- delayed set); running -> cancel requested.
-- KEYS: 1 job hash, 2 pending hash, then the block of the job's queue (includes/queues.lua)
-- ARGV: 1 id, 2 owner ('' = any), 3 record TTL s, 4 events channel, 5 request token (fresh per call:
--       a copy re-sent by the client after a lost reply answers as the first run did, not 409), then the
--       queue's ARGV block
-- Returns {'cancelled'} | {'requested'} | {'missing'} | {'illegal', status}
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'cancel_token', 'priority', 'task')
if not f[1] or (ARGV[2] ~= '' and f[2] ~= ARGV[2]) then return {'missing'} end
if f[3] == ARGV[5] then
  if f[1] == 'cancelled' then return {'cancelled'} end
  if f[1] == 'running' then return {'requested'} end
end
if f[1] == 'queued' then
  local q = queue_block(3, 6)
  local p = priority_of(f[4])
  local entry = '"' .. ARGV[1] .. '"'
  if redis.call('LREM', q.waiting[p], 1, entry) == 0 and redis.call('LREM', q.paused[p], 1, entry) == 0 then
    redis.call('LREM', q.parked_prefix .. f[5], 1, entry)
  end
  redis.call('ZREM', q.delayed, ARGV[1])
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now_ms(), 'cancel_token', ARGV[5])
  redis.call('HDEL', KEYS[1], 'run_at')
  redis.call('HINCRBY', KEYS[2], f[2], -1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  emit(events_prefix_of(ARGV[4], ARGV[1]), ARGV[1], 'cancelled', f[2], q.name)
  release_dependents(KEYS[1], ARGV[1], 'cancelled', now_ms(), KEYS[2], events_prefix_of(ARGV[4], ARGV[1]),
                     ARGV[3])
  return {'cancelled'}
elseif f[1] == 'waiting' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now_ms(), 'cancel_token', ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  local fq = redis.call('HGET', KEYS[1], 'queue')
  emit(events_prefix_of(ARGV[4], ARGV[1]), ARGV[1], 'cancelled', f[2], fq)
  release_dependents(KEYS[1], ARGV[1], 'cancelled', now_ms(), KEYS[2], events_prefix_of(ARGV[4], ARGV[1]),
                     ARGV[3])
  return {'cancelled'}
elseif f[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1, 'cancel_token', ARGV[5])
  return {'requested'}
end
return {'illegal', f[1]}
