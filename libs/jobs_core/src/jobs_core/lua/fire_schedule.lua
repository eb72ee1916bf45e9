--- @include "now"
--- @include "create_job"
--- @include "queues"
--- @include "emit"
-- Enqueue the due ticks of one schedule, each EXACTLY ONCE however many tickers run this concurrently:
-- a tick is enqueued only if it is after the schedule's cursor (last tick accounted for) and has no
-- marker; its job (id derived from schedule and tick) and its marker are written in this same step, and
-- the cursor moves past it. A ticker that planned from an older definition (version) changes nothing.
-- Backpressure as on enqueue.lua: a tick whose job would take the queue past its pending cap or the
-- tenant past theirs is skipped, never queued later, and recorded on the schedule ('skipped' and
-- 'skipped_full' counters, 'last_skipped_full' tick; its marker says 'full'): never silently lost.
-- KEYS: 1 schedule hash, 2 schedules-due zset, 3 waiting list (the task's queue, the schedule's priority),
--       4 index zset, 5 owner index zset, 6 pending hash, 7 seq counter, 8 the paused list of that queue
--       and priority, 9 that queue's control hash, 10 its wake list, then that queue's block of KEYS
--       (includes/queues.lua; only its pending lists are read)
-- ARGV: 1 due-zset member, 2 planned version, 3 job key prefix, 4 tick marker prefix, 5 marker TTL s,
--       6 new cursor (ms), 7 next due (ms), 8 ticks passed over by the catch-up policy, 9 overlap
--       ('allow'|'skip'), 10 task, 11 params JSON, 12 max_attempts, 13 timeout, 14 owner,
--       15 schedule name, 16 queue name (of the waiting list KEYS[3]), 17 priority, 18 pending cap per
--       queue (0 = none), 19 per-tenant pending cap (0 = none), then pairs: tick ms, job id (oldest first)
-- Returns {'ok', fired job ids...} | {'stale'} (definition changed, paused or deleted meanwhile)
local s = redis.call('HMGET', KEYS[1], 'version', 'paused', 'cursor', 'last_job')
if not s[1] or s[1] ~= ARGV[2] or s[2] == '1' then return {'stale'} end
local cursor = tonumber(s[3] or '0')
local last_job = s[4]
local last_fired = nil
local now = now_ms()
local fired, skipped, full = {'ok'}, 0, 0
local cap, owner_cap = tonumber(ARGV[18]), tonumber(ARGV[19])
local block = queue_block(11, #ARGV + 1)  -- keys only: pending_in reads no names
local k = {queue = KEYS[3], index = KEYS[4], owner_index = KEYS[5], pending = KEYS[6], seq = KEYS[7]}
local p = priority_of(ARGV[17])
local q = {waiting = {[p] = KEYS[3]}, paused = {[p] = KEYS[8]}, control = KEYS[9], wake = KEYS[10]}
for i = 20, #ARGV, 2 do
  local tick, id = tonumber(ARGV[i]), ARGV[i + 1]
  local marker = ARGV[4] .. ARGV[i]
  if tick > cursor and redis.call('EXISTS', marker) == 0 then
    local busy = false
    if ARGV[9] == 'skip' and last_job then
      local st = redis.call('HGET', ARGV[3] .. last_job, 'status')
      busy = st == 'queued' or st == 'running' or st == 'waiting'
    end
    local over = (cap > 0 and pending_in(block) + 1 > cap)
      or (owner_cap > 0 and tonumber(redis.call('HGET', KEYS[6], ARGV[14]) or '0') + 1 > owner_cap)
    if busy then
      skipped = skipped + 1
      redis.call('SET', marker, 'skipped', 'EX', ARGV[5])
    elseif over then
      skipped, full = skipped + 1, full + 1
      redis.call('SET', marker, 'full', 'EX', ARGV[5])
      redis.call('HSET', KEYS[1], 'last_skipped_full', ARGV[i])
    else
      k.job = ARGV[3] .. id
      create_job(k, {id = id, task = ARGV[10], params = ARGV[11], max_attempts = ARGV[12], timeout = ARGV[13],
                     owner = ARGV[14], hold = true,
                     extra = {'schedule', ARGV[15], 'tick', ARGV[i], 'queue', ARGV[16], 'priority', p}}, now)
      push_waiting(q, p, '"' .. id .. '"', false)  -- the paused list while the queue is paused
      emit(events_prefix_from_jobs(ARGV[3]), id, 'queued', ARGV[14], ARGV[16])
      redis.call('HINCRBY', KEYS[6], ARGV[14], 1)
      redis.call('SET', marker, id, 'EX', ARGV[5])
      last_job = id
      last_fired = ARGV[i]
      fired[#fired + 1] = id
    end
  end
end
if tonumber(ARGV[6]) > cursor then
  redis.call('HSET', KEYS[1], 'cursor', ARGV[6])
  skipped = skipped + tonumber(ARGV[8])
end
if skipped > 0 then redis.call('HINCRBY', KEYS[1], 'skipped', skipped) end
if full > 0 then redis.call('HINCRBY', KEYS[1], 'skipped_full', full) end
-- GT: a ticker that planned before another moved the schedule on never sets an older due time
redis.call('ZADD', KEYS[2], 'GT', ARGV[7], ARGV[1])
redis.call('HSET', KEYS[1], 'next_due', redis.call('ZSCORE', KEYS[2], ARGV[1]))
if #fired > 1 then
  redis.call('HSET', KEYS[1], 'last_job', last_job, 'last_fired', last_fired)
  redis.call('HINCRBY', KEYS[1], 'fired', #fired - 1)
end
emit_flush() -- the fired jobs' events as one stream entry (includes/emit.lua)
return fired
