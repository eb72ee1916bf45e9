--- @include "queues"
--- @include "audit"
-- Pause, resume or cap a queue. Pausing renames its waiting lists to its paused lists (O(1) each), so
-- KEDA, which counts only waiting lists, never scales pods up for a paused queue; while paused, whatever
-- is queued goes to the paused lists and no worker claims from the queue. Resuming renames them back
-- (entries pushed meanwhile by a hotqueue client stay behind the paused ones). A cap is the most jobs of
-- the queue holding a lease at once, cluster-wide (checked by every claim).
-- A change is appended to the event stream GET /events reads (`event: queue`, capped like the job events
-- of includes/emit.lua) and every request, changed or not, to the audit log, both in this same step.
-- KEYS: 1 queues set, 2 event stream, 3 audit stream, then the queue's block (includes/queues.lua)
-- ARGV: 1 action ('pause' | 'resume' | 'cap'), 2 cap ('' = none; for 'cap'), 3-6 the actor (tenant, key id,
--       role, via: includes/audit.lua), then the queue's ARGV block
-- Returns 1 when something changed, else 0
local q = queue_block(4, 7)
redis.call('SADD', KEYS[1], q.name)
local function move_all(from, to, front)
  if redis.call('EXISTS', from) == 0 then return end
  if redis.call('EXISTS', to) == 0 then
    redis.call('RENAME', from, to)
  elseif front then
    while redis.call('LMOVE', from, to, 'RIGHT', 'LEFT') do end
  else
    while redis.call('LMOVE', from, to, 'LEFT', 'RIGHT') do end
  end
end
local function record(changed)
  local cap = redis.call('HGET', q.control, 'cap') or ''
  local paused = redis.call('HGET', q.control, 'paused') == '1' and '1' or '0'
  audit(KEYS[3], 3, 'queue.' .. ARGV[1], 'queue:' .. q.name, changed, cap == '' and '' or ('cap=' .. cap))
  if changed == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'kind', 'queue', 'queue', q.name, 'change', ARGV[1],
      'paused', paused, 'cap', cap, 'by', ARGV[3], 'key', ARGV[4], 'role', ARGV[5], 'via', ARGV[6])
  end
  return changed
end
local paused = redis.call('HGET', q.control, 'paused') == '1'
if ARGV[1] == 'pause' then
  if paused then return record(0) end
  redis.call('HSET', q.control, 'paused', '1')
  for p = 0, 9 do move_all(q.waiting[p], q.paused[p], false) end
  return record(1)
elseif ARGV[1] == 'resume' then
  if not paused then return record(0) end
  redis.call('HDEL', q.control, 'paused')
  for p = 0, 9 do move_all(q.paused[p], q.waiting[p], true) end
  wake(q)
  return record(1)
elseif ARGV[1] == 'cap' then
  if ARGV[2] == '' then redis.call('HDEL', q.control, 'cap') else redis.call('HSET', q.control, 'cap', ARGV[2]) end
  wake(q)
  return record(1)
end
return redis.error_reply('unknown action ' .. ARGV[1])
