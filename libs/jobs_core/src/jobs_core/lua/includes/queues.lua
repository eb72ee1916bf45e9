-- Queue blocks: a script that touches a queue takes its keys as one block of KEYS (QUEUE_KEYS of them, in
-- the order of jobs_core.keys.Keys.block) and its names as one block of ARGV (QUEUE_ARGS, Keys.block_args):
--   KEYS: 10 waiting lists (p9..p0), 10 paused lists (p9..p0), inflight list (written by workers of before
--         the leases zset was the record of running jobs; only the reaper still reads it), leases zset, delayed zset,
--         orphans zset, dead-letter list, control hash, wake list, parked set
--   ARGV: queue name, parked list prefix, history key prefix
local QUEUE_KEYS, QUEUE_ARGS = 28, 3
-- FINISH_CLAIM's blocks (claim_block): CLAIM_KEYS keys, the block's without the 10 paused lists and the
-- in-flight list (waiting lists p9..p0, leases zset, delayed zset, orphans zset, dead-letter list, control
-- hash, wake list, parked set: jobs_core.keys.Keys.claim_block), and CLAIM_ARGS names, the block's and the
-- paused lists' prefix (Keys.claim_block_args). A worker's call touches a paused list only when a job goes
-- back to a paused queue, and the in-flight list never; each key of a call costs Redis ~1 k instructions
-- (issue 16, profile 29).
local CLAIM_KEYS, CLAIM_ARGS = 17, 4
-- The priority tables (q.waiting[p], q.paused[p]) are built on first use: the hot calls need neither (a
-- worker's claim pops with LMPOP over KEYS[q.k] .. KEYS[q.k + 9]; its finishes touch a list only on a retry
-- or hand-back), and building both for every block of every call was most of the block's cost (profile 29).
-- A claim block names its paused lists by their prefix and the priority.
local function queue_lists(q, name)
  local k = q.k
  if name == 'waiting' then
    local t = {[0] = KEYS[k + 9], KEYS[k + 8], KEYS[k + 7], KEYS[k + 6], KEYS[k + 5], KEYS[k + 4], KEYS[k + 3],
               KEYS[k + 2], KEYS[k + 1], KEYS[k]}
    q.waiting = t
    return t
  elseif name == 'paused' then
    local t
    local pp = q.paused_prefix
    if pp then
      t = {[0] = pp .. '0', pp .. '1', pp .. '2', pp .. '3', pp .. '4', pp .. '5', pp .. '6', pp .. '7', pp .. '8',
           pp .. '9'}
    else
      t = {[0] = KEYS[k + 19], KEYS[k + 18], KEYS[k + 17], KEYS[k + 16], KEYS[k + 15], KEYS[k + 14],
           KEYS[k + 13], KEYS[k + 12], KEYS[k + 11], KEYS[k + 10]}
    end
    q.paused = t
    return t
  end
  return nil
end
-- the blocks' metatable, made by the first block of a call
local queue_lists_mt
local function queue_block(kbase, abase)
  local k = kbase
  if not queue_lists_mt then queue_lists_mt = {__index = queue_lists} end
  -- one constructor, so Lua sizes the table once (profile 20)
  return setmetatable({
    k = k, inflight = KEYS[k + 20], leases = KEYS[k + 21], delayed = KEYS[k + 22], orphans = KEYS[k + 23],
    dead = KEYS[k + 24], control = KEYS[k + 25], wake = KEYS[k + 26], parked = KEYS[k + 27],
    name = ARGV[abase], parked_prefix = ARGV[abase + 1], history_prefix = ARGV[abase + 2],
  }, queue_lists_mt)
end
local function claim_block(kbase, abase)
  local k = kbase
  if not queue_lists_mt then queue_lists_mt = {__index = queue_lists} end
  -- the history fields a finish sets (history_field) are there from the start, false: a field missing from
  -- a table with a metatable calls its __index function when read (~1 k instructions each)
  return setmetatable({
    k = k, leases = KEYS[k + 10], delayed = KEYS[k + 11], orphans = KEYS[k + 12], dead = KEYS[k + 13],
    control = KEYS[k + 14], wake = KEYS[k + 15], parked = KEYS[k + 16],
    name = ARGV[abase], parked_prefix = ARGV[abase + 1], history_prefix = ARGV[abase + 2],
    paused_prefix = ARGV[abase + 3], history_at = false, h_run = false, h_fb = false,
  }, queue_lists_mt)
end
-- n queue blocks from KEYS[kbase] / ARGV[abase] on: a list in order, and a table by name (claim: claim blocks)
local function queue_blocks(kbase, abase, n, claim)
  local list, by_name = {}, {}
  local nk, na = QUEUE_KEYS, QUEUE_ARGS
  if claim then nk, na = CLAIM_KEYS, CLAIM_ARGS end
  for i = 0, n - 1 do
    local q
    if claim then q = claim_block(kbase + i * nk, abase + i * na) else q = queue_block(kbase + i * nk, abase + i * na) end
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
-- its place in line); into the paused list while the queue is paused (KEDA counts only waiting lists).
-- A wake token only when the list was empty: an idle worker went idle after a claim that found the lists
-- empty, so a list that already held entries has a token out for them or a claim coming (the claim after
-- a wait that runs out of room wakes the next worker: claim_batch's wake rule). A token lost anyway (a
-- worker stopping right after taking one) costs at most the idle worker's block timeout (it claims after
-- every BLPOP timeout).
-- Saves the LLEN per submission while a queue is backed up.
-- q.is_paused, when the caller has read the control hash already (enqueue: once per queue per call), saves
-- the HGET per entry.
local function push_waiting(q, priority, entry, front)
  local paused = q.is_paused
  if paused == nil then paused = redis.call('HGET', q.control, 'paused') == '1' end
  local list = paused and q.paused[priority] or q.waiting[priority]
  local len = redis.call(front and 'LPUSH' or 'RPUSH', list, entry)
  if not paused and len == 1 then wake(q) end
end
-- The control hash's 'delayed' field: a time (ms) no later than the earliest due time in the delayed zset,
-- missing when the zset is empty; a claim promotes due jobs (ZRANGEBYSCORE) only once it is reached, not on
-- every call (issue 16). Whoever adds to the zset lowers it to the new entry's due time (here); the claim
-- that promotes sets it to the next due time or removes it; a removal elsewhere (a cancel) leaves it lower
-- than need be, which costs one promotion pass that finds nothing. The reaper re-flags the zset every pass
-- (entries added by a submitter or worker of the version before this field: rolling upgrade). `known`: the
-- field as the caller read it already (false = missing), nil = read it here.
local function flag_delayed(control, at, known)
  local cur = known
  if cur == nil then cur = redis.call('HGET', control, 'delayed') end
  cur = tonumber(cur)
  if not cur or at < cur then redis.call('HSET', control, 'delayed', at) end
end
-- jobs waiting to run in a queue, paused or not, and scheduled (backpressure counts them all). Most
-- queues use the default priority only and are not paused: one EXISTS over the 19 other lists (an empty
-- list is no key) tells so, and then 3 commands count exactly what 21 did; otherwise each list is counted.
local function pending_in(q)
  local n = redis.call('ZCARD', q.delayed) + redis.call('LLEN', q.waiting[5])
  local others = {}
  for p = 0, 9 do
    if p ~= 5 then others[#others + 1] = q.waiting[p] end
    others[#others + 1] = q.paused[p]
  end
  if redis.call('EXISTS', unpack(others)) == 0 then return n end
  for _, list in ipairs(others) do n = n + redis.call('LLEN', list) end
  return n
end
-- per-minute history counters, read by GET /queues and the console: ONE field per finish, whose name
-- carries the status, the attempt's run-time bucket and the task, 'j:<status>:<bucket>:<task>', so one
-- HINCRBY counts the job for the finished / failed totals, per task, and the run-time histogram at once
-- (2-5 before); jobs_core.browse.history_totals sums the fields into finished, failed, finished:<task>,
-- failed:<task> and rt:<task>:<bucket> on read. run_ms: the attempt's run time, nil when unknown (a job
-- the reaper failed: bucket '-', not in the histogram); bucket = floor(4 * log2(ms)), 4 per doubling, 0
-- under 1 ms (jobs_core.histogram). The EXPIRE runs when a field is first counted in the minute (a few
-- times a minute, not per job).
local LOG2 = math.log(2)
-- the history key and field of one finish (FINISH_CLAIM tallies them per call: includes/tally.lua)
-- Numbers formatted with '%d' (an integer's digits; concatenating a Lua number formats it with "%.14g",
-- ~2,500 instructions each), the key once per queue block and `now` (profile 21).
-- A block that counts several finishes in a call (FINISH_CLAIM) keeps the last run time's bucket and the last
-- field name it made (q.h_*): the jobs of a call mostly end alike (same task, status and bucket), and a
-- bucket's string.format and log (~3 k instructions) and a field's concatenation (~1.5 k) are then paid once
-- per call instead of per finish. One entry, not a table per status or task: a call that ends one job (a
-- 1-slot worker) would pay more for the tables than it saves (issue 16, profile 35).
local function history_field(q, task, status, now, run_ms)
  local b = '-'
  if run_ms then
    if run_ms < 1 then
      b = '0'
    elseif run_ms == q.h_run then
      b = q.h_bucket
    else
      b = string.format('%d', math.floor(4 * math.log(run_ms) / LOG2 + 1e-9))
      q.h_run, q.h_bucket = run_ms, b
    end
  end
  if q.history_at ~= now then q.history_at, q.history_key = now, q.history_prefix .. string.format('%d', math.floor(now / 60000)) end
  if b == q.h_fb and status == q.h_status and task == q.h_task then return q.history_key, q.h_field end
  local field = 'j:' .. status .. ':' .. b .. ':' .. task
  q.h_fb, q.h_status, q.h_task, q.h_field = b, status, task, field
  return q.history_key, field
end
local function count_finished(q, task, status, now, ttl, run_ms)
  local key, field = history_field(q, task, status, now, run_ms)
  if redis.call('HINCRBY', key, field, 1) == 1 then
    redis.call('EXPIRE', key, ttl)
  end
end
