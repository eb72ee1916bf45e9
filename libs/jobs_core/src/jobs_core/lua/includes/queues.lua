-- Queue blocks: a script that touches a queue takes its keys as one block of KEYS (QUEUE_KEYS of them, in
-- the order of jobs_core.keys.Keys.block) and its names as one block of ARGV (QUEUE_ARGS, Keys.block_args):
--   KEYS: 10 waiting lists (p9..p0), 10 paused lists (p9..p0), inflight list, leases zset, delayed zset,
--         orphans zset, dead-letter list, control hash, wake list, parked set
--   ARGV: queue name, parked list prefix, history key prefix
local QUEUE_KEYS, QUEUE_ARGS = 28, 3
local function queue_block(kbase, abase)
  local q = {waiting = {}, paused = {}}
  for i = 0, 9 do
    q.waiting[9 - i] = KEYS[kbase + i]
    q.paused[9 - i] = KEYS[kbase + 10 + i]
  end
  q.inflight, q.leases, q.delayed = KEYS[kbase + 20], KEYS[kbase + 21], KEYS[kbase + 22]
  q.orphans, q.dead, q.control = KEYS[kbase + 23], KEYS[kbase + 24], KEYS[kbase + 25]
  q.wake, q.parked = KEYS[kbase + 26], KEYS[kbase + 27]
  q.name, q.parked_prefix, q.history_prefix = ARGV[abase], ARGV[abase + 1], ARGV[abase + 2]
  q.waiting_desc = {} -- p9..p0, as in KEYS
  for i = 0, 9 do q.waiting_desc[i + 1] = KEYS[kbase + i] end
  return q
end
-- n queue blocks from KEYS[kbase] / ARGV[abase] on: a list in order, and a table by name
local function queue_blocks(kbase, abase, n)
  local list, by_name = {}, {}
  for i = 0, n - 1 do
    local q = queue_block(kbase + i * QUEUE_KEYS, abase + i * QUEUE_ARGS)
    list[#list + 1] = q
    by_name[q.name] = q
  end
  return list, by_name
end
-- a job's priority from its hash field (jobs queued before priorities existed have none: the default)
local function priority_of(raw)
  local p = tonumber(raw)
  if not p or p < 0 or p > 9 then return 5 end
  return math.floor(p)
end
-- one token in the wake list tells an idle worker (BLPOP) there is work; more would only wake it in vain
local function wake(q)
  if redis.call('LLEN', q.wake) == 0 then redis.call('RPUSH', q.wake, '1') end
end
-- queue an entry at its priority: at the back (new work) or the front (a job handed back or reaped keeps
-- its place in line); into the paused list while the queue is paused (KEDA counts only waiting lists)
local function push_waiting(q, priority, entry, front)
  local paused = redis.call('HGET', q.control, 'paused') == '1'
  local list = paused and q.paused[priority] or q.waiting[priority]
  redis.call(front and 'LPUSH' or 'RPUSH', list, entry)
  if not paused then wake(q) end
end
-- jobs waiting to run in a queue, paused or not, and scheduled (backpressure counts them all)
local function pending_in(q)
  local n = redis.call('ZCARD', q.delayed)
  for p = 0, 9 do n = n + redis.call('LLEN', q.waiting[p]) + redis.call('LLEN', q.paused[p]) end
  return n
end
-- per-minute history counters, read by GET /queues and the console; run_ms (the attempt's run time, nil
-- when unknown: a job the reaper failed) adds one to the task's run-time histogram field
-- 'rt:<task>:<bucket>', bucket = floor(4 * log2(ms)) (4 per doubling; 0 for under 1 ms): one HINCRBY,
-- in the same hash, so it costs one command per job and expires with the minute (jobs_core.histogram)
local LOG2 = math.log(2)
local function count_finished(q, task, status, now, ttl, run_ms)
  local key = q.history_prefix .. math.floor(now / 60000)
  if redis.call('HINCRBY', key, 'finished', 1) == 1 then redis.call('EXPIRE', key, ttl) end -- minute's first
  redis.call('HINCRBY', key, 'finished:' .. task, 1)
  if run_ms then
    local b = run_ms >= 1 and math.floor(4 * math.log(run_ms) / LOG2 + 1e-9) or 0
    redis.call('HINCRBY', key, 'rt:' .. task .. ':' .. b, 1)
  end
  if status == 'failed' then
    redis.call('HINCRBY', key, 'failed', 1)
    redis.call('HINCRBY', key, 'failed:' .. task, 1)
  end
end
