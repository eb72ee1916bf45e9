--- @include "now"
--- @include "create_job"
--- @include "queues"
--- @include "emit"
--- @include "release"
--- @include "admit"
-- Submit jobs with dependencies (one job with depends_on, or a whole workflow DAG) in one atomic step:
-- every node is created or none is. Nodes come in dependency order (the caller sorted them and refused
-- cycles). A node whose dependencies are all done is queued at once; one waiting on others is 'waiting'
-- (in no waiting list: KEDA does not count it) with deps_left = unfinished dependencies, and an edge
-- {node: policy} in each unfinished dependency's 'dependents' field, consumed by release_dependents when
-- that dependency ends. A dependency that already failed or was cancelled cancels the node (policy
-- 'fail') or counts as done ('ignore'); a node cancelled so gets its webhook events (includes/release.lua)
-- like any terminal transition. Dependencies outside the batch must be the same tenant's jobs.
-- A node with a delay gets run_at = now + delay: queued then, it goes to its queue's delayed set; waiting,
-- release_dependents puts it there if it is released before run_at. Backpressure as on enqueue.lua: every
-- node counts (waiting ones too) against the per-queue and the tenant's pending caps, all or none. An
-- Idempotency-Key (ARGV[7] == '1') stores '<ids> <digest>' like enqueue.lua: a repeat of the same request
-- answers with the first one's jobs, a different request under the key is a conflict.
-- KEYS: 1 index zset, 2 owner index zset, 3 seq counter, 4 pending hash, 5 workflow hash, 6 known queues set,
--       7 idempotency key, then Q queue blocks (includes/queues.lua), one per queue the nodes go to
-- ARGV: 1 job key prefix, 2 owner, 3 workflow id ('' = none), 4 workflow JSON, 5 record TTL s,
--       6 number of nodes N, 7 use the idempotency key '1'/'0', 8 request digest, 9 idempotency TTL s,
--       10 pending cap per queue (0 = none), 11 per-tenant pending cap (0 = none), 12 Q, then Q queue
--       blocks of ARGV, then per node: id, task, params JSON, max_attempts, timeout, queue name,
--       priority, release keys JSON ({waiting, paused, control, wake, delayed} of that queue and priority),
--       webhook callback URL ('' = none), delay ms, number of dependencies D, then D pairs: dependency id,
--       policy ('fail'|'ignore'); then, optional, the submission's W3C traceparent (tracing on: each
--       node's 'trace', so dependents released later run in the submission's trace)
-- Returns {'ok', status of each node...} | {'unknown', dependency id} | {'exists', id of each node...}
--         | {'conflict', first id} | {'full', 'global' | 'tenant', queue name}
local prefix, owner = ARGV[1], ARGV[2]
local n, nq = tonumber(ARGV[6]), tonumber(ARGV[12])
local _, queues = queue_blocks(8, 13, nq)
local nodes = {}
local batch = {}
local i = 13 + nq * QUEUE_ARGS
for _ = 1, n do
  local node = {id = ARGV[i], task = ARGV[i + 1], params = ARGV[i + 2], max_attempts = ARGV[i + 3],
                timeout = ARGV[i + 4], queue = ARGV[i + 5], priority = ARGV[i + 6], release = ARGV[i + 7],
                callback = ARGV[i + 8], delay = tonumber(ARGV[i + 9]), deps = {}}
  local d = tonumber(ARGV[i + 10])
  i = i + 11
  for _ = 1, d do
    node.deps[#node.deps + 1] = {ARGV[i], ARGV[i + 1]}
    i = i + 2
  end
  nodes[#nodes + 1] = node
  batch[node.id] = true
end
local traceparent = ARGV[i]
-- a re-sent call (lost reply) finds its first node: answer as the first run did
if redis.call('EXISTS', prefix .. nodes[1].id) == 1 then
  local out = {'ok'}
  for _, node in ipairs(nodes) do out[#out + 1] = redis.call('HGET', prefix .. node.id, 'status') or '' end
  return out
end
if ARGV[7] == '1' then
  local refused = idempotent_replay(redis.call('GET', KEYS[7]), ARGV[8], prefix)
  if refused then return refused end
end
local per_queue, by_queue = {}, {}
for _, node in ipairs(nodes) do
  local e = by_queue[node.queue]
  if not e then
    e = {q = queues[node.queue], count = 0}
    by_queue[node.queue], per_queue[#per_queue + 1] = e, e
  end
  e.count = e.count + 1
end
local full = over_caps(new_admission(KEYS[4]), per_queue, tonumber(ARGV[10]), owner, n, tonumber(ARGV[11]))
if full then return full end
for _, node in ipairs(nodes) do
  for _, dep in ipairs(node.deps) do
    if not batch[dep[1]] and redis.call('HGET', prefix .. dep[1], 'owner') ~= owner then
      return {'unknown', dep[1]}
    end
  end
end
local now = now_ms()
local out = {'ok'}
for _, node in ipairs(nodes) do redis.call('SADD', KEYS[6], node.queue) end
local k = {index = KEYS[1], owner_index = KEYS[2], seq = KEYS[3], pending = KEYS[4]}
for _, node in ipairs(nodes) do
  local left, failed_dep = 0, nil
  local edges = {}
  for _, dep in ipairs(node.deps) do
    local st = redis.call('HGET', prefix .. dep[1], 'status')
    if st == 'failed' or st == 'cancelled' then
      if dep[2] ~= 'ignore' then failed_dep = failed_dep or (dep[1] .. ' ended ' .. st) end
    elseif st ~= 'succeeded' then
      left = left + 1
      edges[#edges + 1] = dep
    end
  end
  local status = 'queued'
  if failed_dep then status = 'cancelled' elseif left > 0 then status = 'waiting' end
  local deps = {}
  for _, dep in ipairs(node.deps) do deps[#deps + 1] = dep[1] end
  k.job = prefix .. node.id
  create_job(k, {id = node.id, task = node.task, params = node.params, max_attempts = node.max_attempts,
                 timeout = node.timeout, owner = owner, status = status, hold = true,
                 extra = {'deps', cjson.encode(deps), 'deps_left', left, 'release', node.release,
                          'queue', node.queue, 'priority', node.priority, 'workflow', ARGV[3]}}, now)
  if traceparent and traceparent ~= '' then redis.call('HSET', k.job, 'trace', traceparent) end
  if node.callback ~= '' then redis.call('HSET', k.job, 'callback', node.callback) end
  if node.delay > 0 then redis.call('HSET', k.job, 'run_at', now + node.delay) end
  if status == 'queued' then
    local r = cjson.decode(node.release)
    local p = priority_of(node.priority)
    if node.delay > 0 then
      redis.call('ZADD', r.delayed, now + node.delay, node.id)
      if r.control then flag_delayed(r.control, now + node.delay) end -- claims promote once it is due
    else
      push_waiting({waiting = {[p] = r.waiting}, paused = {[p] = r.paused}, control = r.control, wake = r.wake},
                   p, '"' .. node.id .. '"', false)
    end
    redis.call('HINCRBY', KEYS[4], owner, 1)
  elseif status == 'cancelled' then
    local why = cjson.encode({type = 'DependencyFailed', message = 'dependency ' .. failed_dep,
                              traceback = cjson.null})
    redis.call('HSET', k.job, 'finished_at', now, 'error', why)
    redis.call('EXPIRE', k.job, ARGV[5])
    outbox(k.job, node.id, 'cancelled', now, events_prefix_from_jobs(prefix))
  elseif status == 'waiting' then
    for _, dep in ipairs(edges) do
      local dk = prefix .. dep[1]
      local raw = redis.call('HGET', dk, 'dependents')
      local map = raw and cjson.decode(raw) or {}
      map[node.id] = dep[2]
      redis.call('HSET', dk, 'dependents', cjson.encode(map))
    end
  end
  emit(events_prefix_from_jobs(prefix), node.id, status, owner, node.queue)
  out[#out + 1] = status
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[5], 'owner', owner, 'nodes', ARGV[4], 'created_at', now)
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[5]) * 2)
end
if ARGV[7] == '1' then
  local ids = {}
  for _, node in ipairs(nodes) do ids[#ids + 1] = node.id end
  redis.call('SET', KEYS[7], table.concat(ids, ',') .. ' ' .. ARGV[8], 'EX', ARGV[9])
end
emit_flush() -- the nodes' job events as one stream entry (includes/emit.lua)
return out
