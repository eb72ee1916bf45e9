--- @include "queues"
--- @include "emit"
-- Create job records and queue them (or schedule them) in one step: all of them, or none.
-- KEYS: 1 index zset, 2 owner index zset, 3 pending hash, 4 seq counter, 5 idempotency key (unused unless
--       ARGV[6] == '1'), 6 known queues set, then Q queue blocks (includes/queues.lua), one per queue the
--       jobs go to
-- ARGV: 1 owner, 2 pending cap per queue (0 = none), 3 per-owner pending cap (0 = none), 4 job key prefix,
--       5 Q, 6 use idempotency key '1'/'0', 7 request digest, 8 idempotency TTL s, 9 number of jobs N,
--       then Q queue blocks of ARGV, then N groups of 8: id, task, params JSON, max_attempts, timeout,
--       delay ms, queue number (1..Q), priority (0..9); then, optional, the submission's W3C traceparent
--       (tracing on: stored as the records' 'trace' field, read by the worker for its run spans; '' = none),
--       then, optional, the jobs' webhook callback URL (stored as 'callback'; includes/release.lua writes
--       the webhook event when the job ends)
-- Returns {'ok', created_ms, seq of each job...} | {'exists', id of each job...} | {'conflict', first id}
--         | {'full', 'global' | 'tenant', queue name}
-- The ids are new for every call, so a record under the first means this very call already ran: the
-- client's retry after a lost reply (timeout, dropped connection). Answer as the first run did.
local prefix, nq, n = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[9])
local queues = queue_blocks(7, 10, nq)
local jb = 10 + nq * QUEUE_ARGS
local function item(i, f) return ARGV[jb + (i - 1) * 8 + f] end
local traceparent = ARGV[jb + n * 8]
local callback = ARGV[jb + n * 8 + 1]
local done = redis.call('HMGET', prefix .. item(1, 0), 'created_at', 'seq')
if done[1] then
  local out = {'ok', tonumber(done[1]), tonumber(done[2])}
  for i = 2, n do out[#out + 1] = tonumber(redis.call('HGET', prefix .. item(i, 0), 'seq')) end
  return out
end
if ARGV[6] == '1' then
  local existing = redis.call('GET', KEYS[5])
  if existing then
    local sp = string.find(existing, ' ', 1, true)
    local ids = string.sub(existing, 1, sp - 1)
    local first = string.match(ids, '^[^,]+')
    if string.sub(existing, sp + 1) ~= ARGV[7] then return {'conflict', first} end
    if redis.call('EXISTS', prefix .. first) == 1 then
      local out = {'exists'}
      for id in string.gmatch(ids, '[^,]+') do out[#out + 1] = id end
      return out
    end
  end
end
local cap, owner_cap = tonumber(ARGV[2]), tonumber(ARGV[3])
if cap > 0 then
  local per_queue = {}
  for i = 1, n do
    local qi = tonumber(item(i, 6))
    per_queue[qi] = (per_queue[qi] or 0) + 1
  end
  for qi, count in pairs(per_queue) do
    if pending_in(queues[qi]) + count > cap then return {'full', 'global', queues[qi].name} end
  end
end
if owner_cap > 0 and tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') + n > owner_cap then
  return {'full', 'tenant', ''}
end
-- each queue's control hash once per call: its paused flag for every job pushed, and whether the queue is
-- in the known-queues set already ('known', set once with the SADD; the set only grows), instead of an
-- HGET per job and an SADD per call
for _, q in ipairs(queues) do
  local ctl = redis.call('HMGET', q.control, 'paused', 'known')
  q.is_paused = ctl[1] == '1'
  if not ctl[2] then
    redis.call('SADD', KEYS[6], q.name)
    redis.call('HSET', q.control, 'known', '1')
  end
end
-- the 'queued' events first, written now as one stream entry (no one sees the order inside a script): its
-- id is the Redis clock in ms, which then dates the jobs, instead of a TIME command per call
local events = events_prefix_from_jobs(prefix)
for i = 1, n do emit(events, item(i, 0), 'queued', ARGV[1], queues[tonumber(item(i, 6))].name) end
local now = tonumber(string.match(emit_flush(), '^%d+'))
local out = {'ok', now}
local ids = {}
for i = 1, n do
  local id, q, priority = item(i, 0), queues[tonumber(item(i, 6))], tonumber(item(i, 7))
  local jk = prefix .. id
  local seq = redis.call('INCR', KEYS[4])
  local fields = {'id', id, 'task', item(i, 1), 'params', item(i, 2), 'status', 'queued',
    'attempts', 0, 'max_attempts', item(i, 3), 'timeout', item(i, 4), 'owner', ARGV[1],
    'created_at', now, 'seq', seq, 'queue', q.name, 'priority', priority}
  local function put(field, value) fields[#fields + 1] = field; fields[#fields + 1] = value end
  if traceparent and traceparent ~= '' then put('trace', traceparent) end
  if callback and callback ~= '' then put('callback', callback) end
  local delay = tonumber(item(i, 5))
  if delay > 0 then put('run_at', now + delay) end
  redis.call('HSET', jk, unpack(fields))
  if delay > 0 then
    redis.call('ZADD', q.delayed, now + delay, id)
  else
    push_waiting(q, priority, '"' .. id .. '"', false)
  end
  redis.call('ZADD', KEYS[1], seq, id)
  redis.call('ZADD', KEYS[2], seq, id)
  out[#out + 1] = seq
  ids[#ids + 1] = id
end
redis.call('HINCRBY', KEYS[3], ARGV[1], n)
if ARGV[6] == '1' then
  redis.call('SET', KEYS[5], table.concat(ids, ',') .. ' ' .. ARGV[7], 'EX', ARGV[8])
end
return out
