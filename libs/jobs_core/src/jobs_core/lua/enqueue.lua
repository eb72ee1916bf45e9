--- @include "queues"
--- @include "emit"
--- @include "admit"
-- Create job records and queue them (or schedule them) for S submissions in one script call, each
-- submission all or none and each with its own outcome: one submission's refusal (a cap, an
-- Idempotency-Key conflict or replay, an invalid item) leaves the others as if it had not been sent. A
-- submission is one job (POST /jobs; the API's group commit sends the submissions of concurrent requests
-- together) or a batch (POST /jobs/batch, enqueue_many: all of its jobs or none). Every submission is
-- checked before anything is written, then the admitted ones are written together: per call one HMGET of
-- each queue's control hash, one INCRBY of the sequence, one RPUSH per waiting list (variadic), one ZADD
-- per index and delayed set, one HINCRBY per tenant; per job its record (HSET) and its 'queued' event.
-- KEYS: 1 index zset, 2 pending hash, 3 seq counter, 4 known queues set, then Q queue blocks
--       (includes/queues.lua), one per queue the jobs go to, then per submission 2: its tenant's owner
--       index zset, its idempotency key (unused unless the submission uses one)
-- ARGV: 1 job key prefix, 2 Q, 3 S, 4 idempotency TTL s, then Q queue blocks of ARGV, then per submission a
--       header of 9: owner, pending cap per queue (0 = none), per-owner pending cap (0 = none), use the
--       idempotency key '1'/'0', request digest, number of jobs N, the submission's W3C traceparent
--       ('' = none; stored as the records' 'trace' field), webhook callback URL ('' = none; stored as
--       'callback', includes/release.lua writes the webhook event when the job ends), the submitter's reply
--       channel ('' = none; stored as 'reply_to': the finish publishes the ended job there, includes/emit.lua)
--       ; then N groups of 8:
--       id, task, params JSON, max_attempts, timeout, delay ms, queue number (1..Q), priority (0..9);
--       last (optional): the send number, 1 on the call's first send (jobs_core/resend.py)
-- Returns one reply per submission, in order: {'ok', created_ms, seq of each job...} | {'exists', id of
--         each job...} | {'conflict', first id} | {'full', 'global' | 'tenant', queue name}
--         | {'invalid', what}
-- The ids are new for every call, so a record under a submission's first id means this very call already
-- ran (the client's re-send after a lost reply: timeout, dropped connection): that submission is
-- answered as the first run did (one EXISTS over every first id tells whether any is; only then each is
-- read). A first send (send number 1) skips that check; a call without the number (an older client) or a
-- re-send pays it.
local prefix, nq, ns, idem_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local queues = queue_blocks(5, 5, nq)
local kunits = 5 + nq * QUEUE_KEYS
local replies, subs = {}, {}
-- parse and validate every submission first: an invalid one is refused alone, never a Lua error
local a = 5 + nq * QUEUE_ARGS
local parsed = true
for s = 1, ns do
  local n = tonumber(ARGV[a + 5])
  local sub = {slot = s, owner = ARGV[a], cap = tonumber(ARGV[a + 1]) or 0, owner_cap = tonumber(ARGV[a + 2]) or 0,
               idem = ARGV[a + 3] == '1', digest = ARGV[a + 4], n = n, trace = ARGV[a + 6],
               callback = ARGV[a + 7], reply_to = ARGV[a + 8], owner_index = KEYS[kunits + (s - 1) * 2],
               idem_key = KEYS[kunits + (s - 1) * 2 + 1], jobs = {}}
  if not n or n < 1 or not sub.owner or #ARGV < a + 8 + n * 8 then
    -- the layout itself is broken: this submission and the ones after it cannot be read
    for t = s, ns do replies[t] = {'invalid', 'malformed submission'} end
    parsed = false
    break
  end
  local b = a + 9
  local per_queue, by_queue = {}, {}
  for i = 0, n - 1 do
    local c = b + i * 8
    local qi, priority, delay = tonumber(ARGV[c + 6]), tonumber(ARGV[c + 7]), tonumber(ARGV[c + 5])
    local q = qi and queues[qi]
    if not q then
      sub.bad = 'unknown queue number ' .. tostring(ARGV[c + 6])
    elseif not priority or priority < 0 or priority > 9 or priority % 1 ~= 0 then
      sub.bad = 'priority must be 0..9'
    elseif not delay or delay < 0 then
      sub.bad = 'delay must be >= 0'
    elseif not tonumber(ARGV[c + 3]) or not tonumber(ARGV[c + 4]) then
      sub.bad = 'max_attempts and timeout must be numbers'
    end
    if sub.bad then break end
    sub.jobs[#sub.jobs + 1] = {id = ARGV[c], task = ARGV[c + 1], params = ARGV[c + 2], max_attempts = ARGV[c + 3],
                               timeout = ARGV[c + 4], delay = delay, q = q, priority = priority}
    local e = by_queue[qi]
    if not e then
      e = {q = q, count = 0}
      by_queue[qi], per_queue[#per_queue + 1] = e, e
    end
    e.count = e.count + 1
  end
  sub.per_queue = per_queue
  if sub.bad then replies[s] = {'invalid', sub.bad} end
  subs[s] = sub
  a = b + n * 8
end
-- a possibly re-sent call: one EXISTS over the first ids; 0 means no submission of it ran. The first send
-- (the number right after the last submission is 1) cannot have run before: no check.
local first_send = parsed and #ARGV == a and ARGV[a] == '1'
local firsts = {}
for s = 1, ns do
  if not replies[s] and not first_send then firsts[#firsts + 1] = prefix .. subs[s].jobs[1].id end
end
if #firsts > 0 and redis.call('EXISTS', unpack(firsts)) > 0 then
  for s = 1, ns do
    local sub = subs[s]
    if not replies[s] then
      local done = redis.call('HMGET', prefix .. sub.jobs[1].id, 'created_at', 'seq')
      if done[1] then
        local out = {'ok', tonumber(done[1]), tonumber(done[2])}
        for i = 2, sub.n do out[#out + 1] = tonumber(redis.call('HGET', prefix .. sub.jobs[i].id, 'seq')) end
        replies[s] = out
      end
    end
  end
end
-- Idempotency-Keys: one MGET over the keys in use (a repeat inside this very call sees the earlier one)
local idem_keys, idem_of = {}, {}
for s = 1, ns do
  if not replies[s] and subs[s].idem then
    idem_keys[#idem_keys + 1] = subs[s].idem_key
    idem_of[#idem_keys] = s
  end
end
local stored_idem = {}
if #idem_keys > 0 then
  local vals = redis.call('MGET', unpack(idem_keys))
  for i, v in ipairs(vals) do stored_idem[idem_of[i]] = v end
end
local adm = new_admission(KEYS[2])
local claimed, born = {}, {}
local admitted_subs = {}
for s = 1, ns do
  local sub = subs[s]
  if not replies[s] and sub.idem then
    local stored = claimed[sub.idem_key]
    if stored == nil then stored = stored_idem[s] end
    replies[s] = idempotent_replay(stored, sub.digest, prefix, born)
  end
  if not replies[s] then
    replies[s] = over_caps(adm, sub.per_queue, sub.cap, sub.owner, sub.n, sub.owner_cap)
  end
  if not replies[s] then
    admitted(adm, sub.per_queue, sub.owner, sub.n)
    local ids = {}
    for i, j in ipairs(sub.jobs) do
      ids[i] = j.id
      born[j.id] = true
    end
    if sub.idem then claimed[sub.idem_key] = table.concat(ids, ',') .. ' ' .. sub.digest end
    sub.ids = ids
    admitted_subs[#admitted_subs + 1] = sub
    replies[s] = {'ok', 0}
  end
end
if #admitted_subs == 0 then return replies end
-- write: every admitted submission together
-- each queue's control hash once per call: its paused flag for every job pushed, and whether the queue is
-- in the known-queues set already ('known', set once with the SADD; the set only grows)
local used, unknown = {}, {}
for _, sub in ipairs(admitted_subs) do
  for _, e in ipairs(sub.per_queue) do
    local q = e.q
    if not used[q.name] then
      used[q.name] = true
      local ctl = redis.call('HMGET', q.control, 'paused', 'known', 'delayed')
      q.is_paused = ctl[1] == '1'
      q.delayed_at = ctl[3] -- the earliest due time flag (includes/queues.lua flag_delayed)
      if not ctl[2] then
        unknown[#unknown + 1] = q.name
        redis.call('HSET', q.control, 'known', '1')
      end
    end
  end
end
if #unknown > 0 then redis.call('SADD', KEYS[4], unpack(unknown)) end
local total = 0
for _, sub in ipairs(admitted_subs) do total = total + sub.n end
local seq = redis.call('INCRBY', KEYS[3], total) - total
-- the 'queued' events first, written now as one stream entry (no one sees the order inside a script): its
-- id is the Redis clock in ms, which then dates the jobs, instead of a TIME command per call
local events = events_prefix_from_jobs(prefix)
for _, sub in ipairs(admitted_subs) do
  for _, j in ipairs(sub.jobs) do emit(events, j.id, 'queued', sub.owner, j.q.name) end
end
local now = tonumber(string.match(emit_flush(), '^%d+'))
-- variadic writes, gathered in order: list/zset key -> arguments
local order, argv = {}, {}
local function gather(key, x, y)
  local t = argv[key]
  if not t then
    t = {}
    argv[key] = t
    order[#order + 1] = key
  end
  t[#t + 1] = x
  if y ~= nil then t[#t + 1] = y end
end
local lists = {} -- waiting or paused list -> queue block (for the wake token)
local delayed_min, delayed_qs = {}, {} -- queue block -> earliest due time of the jobs it delays in this call
local pending_by_owner, owners = {}, {}
for _, sub in ipairs(admitted_subs) do
  local out = {'ok', 0}
  for _, j in ipairs(sub.jobs) do
    seq = seq + 1
    local fields = {'id', j.id, 'task', j.task, 'params', j.params, 'status', 'queued',
      'attempts', 0, 'max_attempts', j.max_attempts, 'timeout', j.timeout, 'owner', sub.owner,
      'created_at', now, 'seq', seq, 'queue', j.q.name, 'priority', j.priority}
    local function put(field, value) fields[#fields + 1] = field; fields[#fields + 1] = value end
    if sub.trace and sub.trace ~= '' then put('trace', sub.trace) end
    if sub.callback and sub.callback ~= '' then put('callback', sub.callback) end
    if sub.reply_to and sub.reply_to ~= '' then put('reply_to', sub.reply_to) end
    if j.delay > 0 then put('run_at', now + j.delay) end
    redis.call('HSET', prefix .. j.id, unpack(fields))
    if j.delay > 0 then
      gather(j.q.delayed, now + j.delay, j.id)
      if not delayed_min[j.q] then delayed_qs[#delayed_qs + 1] = j.q end
      delayed_min[j.q] = math.min(delayed_min[j.q] or math.huge, now + j.delay)
    else
      local list = j.q.is_paused and j.q.paused[j.priority] or j.q.waiting[j.priority]
      lists[list] = j.q
      gather(list, '"' .. j.id .. '"')
    end
    gather(KEYS[1], seq, j.id)
    gather(sub.owner_index, seq, j.id)
    out[#out + 1] = seq
  end
  out[2] = now
  if not pending_by_owner[sub.owner] then owners[#owners + 1] = sub.owner end
  pending_by_owner[sub.owner] = (pending_by_owner[sub.owner] or 0) + sub.n
  if sub.idem then redis.call('SET', sub.idem_key, claimed[sub.idem_key], 'EX', idem_ttl) end
  replies[sub.slot] = out
end
-- unpack takes a bounded number of values: long argument lists go in chunks (pairs kept together)
local CHUNK = 4000
local function variadic(cmd, key, t)
  local last
  for i = 1, #t, CHUNK do last = redis.call(cmd, key, unpack(t, i, math.min(i + CHUNK - 1, #t))) end
  return last
end
for _, key in ipairs(order) do
  local q = lists[key]
  if q then
    -- push_waiting's rule, for several entries at once: a wake token only when the list was empty before
    local t = argv[key]
    local len = variadic('RPUSH', key, t)
    if not q.is_paused and len == #t then wake(q) end
  else
    variadic('ZADD', key, argv[key])
  end
end
for _, q in ipairs(delayed_qs) do flag_delayed(q.control, delayed_min[q], q.delayed_at) end
for _, owner in ipairs(owners) do redis.call('HINCRBY', KEYS[2], owner, pending_by_owner[owner]) end
return replies
