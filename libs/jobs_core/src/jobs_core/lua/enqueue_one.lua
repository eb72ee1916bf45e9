--- @include "queues"
--- @include "emit"
--- @include "admit"
--- @include "now"
-- A lone submission of one job (JobStore.enqueue / POST /jobs with no concurrent submission to group with:
-- jobs_core.group_commit sends a group of one such part here): what enqueue.lua does for one submission of
-- one job, with the same record, event, index entries, counters, refusals and re-send answer, but only the
-- keys that job touches (11 KEYS instead of 34; 29 when the queue's cap is checked) and no per-call tables
-- (enqueue.lua's queue blocks, submission, admission and gather tables: ~100 k Redis instructions of a lone
-- call, profile 14). The caps cost no read of their own in the common case: the job is pushed first and the
-- push's reply is the queue's count (when none of the queue's other lists nor its delayed set exists), the
-- tenant's HINCRBY is its pending count; a push past a cap is taken back in the same script (no client sees
-- it) and the submission refused as enqueue.lua refuses it.
-- KEYS: 1 index zset, 2 pending hash, 3 seq counter, 4 known queues set, 5 the tenant's owner index zset,
--       6 the idempotency key (unused unless the submission uses one), 7 the queue's control hash, 8 its
--       wake list, 9 its delayed zset, 10 its waiting list of the job's priority, 11 its paused list of that
--       priority, then only when a per-queue cap is given: the queue's 18 other waiting and paused lists
-- ARGV: 1 job key prefix, 2 idempotency TTL s, 3 queue name, then enqueue.lua's submission header of 9
--       (4 owner, 5 pending cap per queue (0 = none), 6 per-owner pending cap (0 = none), 7 use the
--       idempotency key '1'/'0', 8 request digest, 9 number of jobs (1), 10 traceparent, 11 callback URL,
--       12 reply channel), then its job's 8 (13 id, 14 task, 15 params JSON, 16 max_attempts, 17 timeout,
--       18 delay ms, 19 queue number (1), 20 priority 0..9); 21 (optional) the send number
-- Returns {reply}: enqueue.lua's reply list for its one submission ({'ok', created_ms, seq} | {'exists',
--         id} | {'conflict', id} | {'full', 'global' | 'tenant', queue name} | {'invalid', what}).
local prefix, qname, owner, id = ARGV[1], ARGV[3], ARGV[4], ARGV[13]
if #ARGV < 20 or ARGV[9] ~= '1' or ARGV[19] ~= '1' then return {{'invalid', 'malformed submission'}} end
-- what the library sends (a priority digit, no delay: '0') is taken as text, anything else through tonumber
-- as before: a tonumber costs Redis ~1.5 k instructions and a string.format ~1.8 k, a comparison of strings
-- ~0.1 k (issue 16, profile 29)
local prio_s = ARGV[20]
local b = #prio_s == 1 and string.byte(prio_s)
if not b or b < 48 or b > 57 then
  local priority = tonumber(prio_s)
  if not priority or priority < 0 or priority > 9 or priority % 1 ~= 0 then return {{'invalid', 'priority must be 0..9'}} end
  prio_s = string.format('%d', priority)
end
local delay = 0
if ARGV[18] ~= '0' then
  delay = tonumber(ARGV[18])
  if not delay or delay < 0 then return {{'invalid', 'delay must be >= 0'}} end
end
if not tonumber(ARGV[16]) or not tonumber(ARGV[17]) then
  return {{'invalid', 'max_attempts and timeout must be numbers'}}
end
local jk = prefix .. id
-- a re-send (the send number is not 1, or missing: an older client) of a call that ran answers as it did
if #ARGV ~= 21 or ARGV[21] ~= '1' then
  local done = redis.call('HMGET', jk, 'created_at', 'seq')
  if done[1] then return {{'ok', tonumber(done[1]), tonumber(done[2])}} end
end
local idem = ARGV[7] == '1'
if idem then
  local replay = idempotent_replay(redis.call('GET', KEYS[6]), ARGV[8], prefix)
  if replay then return {replay} end
end
local ctl = redis.call('HMGET', KEYS[7], 'paused', 'known', 'delayed')
local paused = ctl[1] == '1'
local list, other = KEYS[10], KEYS[11]
if paused then list, other = KEYS[11], KEYS[10] end
local cap, owner_cap = 0, 0
if ARGV[5] ~= '0' then cap = tonumber(ARGV[5]) or 0 end
if ARGV[6] ~= '0' then owner_cap = tonumber(ARGV[6]) or 0 end
-- the queue's cap (pending_in's count: every waiting and paused list and the delayed set). `extra`: the
-- jobs outside the list this job goes to: none when no other key exists (one EXISTS), the delayed set's
-- when it is the only one (+ ZCARD), else each list counted
local extra = 0
if cap > 0 then
  local others = {KEYS[9], other}
  for i = 12, #KEYS do others[#others + 1] = KEYS[i] end
  if delay > 0 then others[#others + 1] = list end
  local found = redis.call('EXISTS', unpack(others))
  if found > 0 then
    extra = redis.call('ZCARD', KEYS[9])
    if found > (extra > 0 and 1 or 0) then -- a list besides the delayed set exists: count each
      for i = 2, #others do extra = extra + redis.call('LLEN', others[i]) end
    end
  end
  if delay > 0 and extra + 1 > cap then return {{'full', 'global', qname}} end
end
local len -- the list's length after the push (not delayed)
if delay == 0 then
  len = redis.call('RPUSH', list, '"' .. id .. '"')
  if cap > 0 and extra + len > cap then
    redis.call('RPOP', list)
    return {{'full', 'global', qname}}
  end
end
local pending = redis.call('HINCRBY', KEYS[2], owner, '1')
if owner_cap > 0 and pending > owner_cap then
  redis.call('HINCRBY', KEYS[2], owner, '-1')
  if len then redis.call('RPOP', list) end
  return {{'full', 'tenant', ''}}
end
-- admitted: nothing below refuses
if not ctl[2] then
  redis.call('HSET', KEYS[7], 'known', '1')
  redis.call('SADD', KEYS[4], qname)
end
local seq = redis.call('INCRBY', KEYS[3], '1')
local seq_s = int_arg(seq)
emit(events_prefix_from_jobs(prefix), id, 'queued', owner, qname)
local now_s = string.match(emit_flush(), '^%d+') -- the event's id dates the job (as enqueue.lua)
local fields = {'id', id, 'task', ARGV[14], 'params', ARGV[15], 'status', 'queued', 'attempts', '0',
  'max_attempts', ARGV[16], 'timeout', ARGV[17], 'owner', owner, 'created_at', now_s, 'seq', seq_s,
  'queue', qname, 'priority', prio_s}
local nf = #fields
if ARGV[10] ~= '' then fields[nf + 1], fields[nf + 2], nf = 'trace', ARGV[10], nf + 2 end
if ARGV[11] ~= '' then fields[nf + 1], fields[nf + 2], nf = 'callback', ARGV[11], nf + 2 end
if ARGV[12] ~= '' then fields[nf + 1], fields[nf + 2], nf = 'reply_to', ARGV[12], nf + 2 end
local now = tonumber(now_s)
if delay > 0 then
  local run_at = int_arg(now + delay)
  fields[nf + 1], fields[nf + 2] = 'run_at', run_at
  redis.call('ZADD', KEYS[9], run_at, id)
  flag_delayed(KEYS[7], now + delay, ctl[3])
elseif len == 1 and not paused then
  -- push_waiting's rule: a token only when the list was empty, and at most one token (includes/queues.lua
  -- wake). A lone job to an empty list is an idle queue's, whose idle workers block on the wake list and
  -- have taken its token: push first (one command, not wake's LLEN + RPUSH) and take back a second token.
  if redis.call('RPUSH', KEYS[8], '1') > 1 then redis.call('RPOP', KEYS[8]) end
end
redis.call('HSET', jk, unpack(fields))
redis.call('ZADD', KEYS[1], seq_s, id)
redis.call('ZADD', KEYS[5], seq_s, id)
if idem then redis.call('SET', KEYS[6], id .. ' ' .. ARGV[8], 'EX', ARGV[2]) end
return {{'ok', now, seq}}
