--- @include "now"
--- @include "release"
--- @include "queues"
--- @include "emit"
--- @include "attempt_log"
-- Hand back one queue's jobs whose lease expired (their worker died): queued again at the front of their
-- priority (they keep their place in line), or failed with WorkerLost when attempts are spent; the lease
-- gone, the queue's concurrency cap counts them no more. Also recovers entries moved into the inflight list
-- by a worker of before the leases zset became the record of running jobs (BLMOVE era; rolling upgrade) that
-- died before claiming: current claims never write that list (the pass is O(inflight), normally 0). Runs at
-- most once per interval per queue across all workers (KEYS[3] is a lock that simply expires).
-- KEYS: 1 failed zset, 2 pending hash, 3 lock key, then the queue's block (includes/queues.lua)
-- ARGV: 1 lock token, 2 lock TTL ms, 3 job key prefix, 4 events channel prefix, 5 record TTL s,
--       6 orphan grace ms, 7 max jobs per pass, 8 WorkerLost error JSON, 9 history TTL s, then the
--       queue's ARGV block
-- Returns {-1} when another reaper ran this interval, else {requeued ids..., '|', failed ids...}
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {-1} end
local q = queue_block(4, 10)
local now = now_ms()
local requeued, failed = {}, {}
local expired = redis.call('ZRANGEBYSCORE', q.leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(expired) do
  local jk = ARGV[3] .. id
  local entry = '"' .. id .. '"'
  redis.call('ZREM', q.leases, id)
  redis.call('LREM', q.inflight, 1, entry) -- an old worker's copy, if any (rolling upgrade)
  local f = redis.call('HMGET', jk, 'status', 'attempts', 'max_attempts', 'owner', 'priority', 'task',
    'reply_to')
  if f[1] == 'running' then
    attempt_ended(jk, 'lost', now)
    redis.call('HDEL', jk, 'worker', 'cancel_requested')
    if tonumber(f[2]) >= tonumber(f[3]) then
      redis.call('HSET', jk, 'status', 'failed', 'finished_at', now, 'error', ARGV[8])
      redis.call('ZADD', KEYS[1], now, id)
      redis.call('EXPIRE', jk, ARGV[5])
      count_finished(q, f[6], 'failed', now, ARGV[9])
      emit(ARGV[4], id, 'failed', f[4], q.name, jk, f[7]) -- and to its reply_to (includes/emit.lua)
      release_dependents(jk, id, 'failed', now, KEYS[2], ARGV[4], ARGV[5])
      failed[#failed + 1] = id
    else
      redis.call('HSET', jk, 'status', 'queued', 'error', ARGV[8])
      redis.call('HINCRBY', KEYS[2], f[4], 1)
      push_waiting(q, priority_of(f[5]), entry, true)
      emit(ARGV[4], id, 'queued', f[4], q.name)
      requeued[#requeued + 1] = id
    end
  end
end
-- inflight entries without a lease: a worker of the previous version moved them and died before claiming
local entries = redis.call('LRANGE', q.inflight, 0, 999)
for _, entry in ipairs(entries) do
  local ok, id = pcall(cjson.decode, entry)
  if ok and type(id) == 'string' and not redis.call('ZSCORE', q.leases, id) then
    local first = redis.call('ZSCORE', q.orphans, id)
    if not first then
      redis.call('ZADD', q.orphans, now, id)
      redis.call('HSET', q.control, 'orphans', '1') -- claims clear a claimed id from orphans only while set
    elseif now - tonumber(first) > tonumber(ARGV[6]) then
      redis.call('ZREM', q.orphans, id)
      redis.call('LREM', q.inflight, 1, entry)
      local f = redis.call('HMGET', ARGV[3] .. id, 'status', 'priority')
      if f[1] == 'queued' then
        push_waiting(q, priority_of(f[2]), entry, true)
        requeued[#requeued + 1] = id
      elseif f[1] == 'running' then
        -- running without a lease cannot be produced by a claim; give it an expired lease to reap next pass
        -- (the leases zset alone records it from now on)
        redis.call('ZADD', q.leases, now, id)
      end
    end
  end
end
redis.call('ZREMRANGEBYSCORE', q.orphans, '-inf', now - 10 * tonumber(ARGV[6]))
-- the control hash's flags of a non-empty orphans zset and parked set (read by every claim instead of an
-- EXISTS each), made right once per pass: also for sets filled by workers of before these flags
local ctl = redis.call('HMGET', q.control, 'orphans', 'parked', 'delayed')
local has_orphans, has_parked = redis.call('EXISTS', q.orphans) == 1, redis.call('EXISTS', q.parked) == 1
if has_orphans ~= (ctl[1] == '1') then
  if has_orphans then redis.call('HSET', q.control, 'orphans', '1') else redis.call('HDEL', q.control, 'orphans') end
end
if has_parked ~= (ctl[2] == '1') then
  if has_parked then redis.call('HSET', q.control, 'parked', '1') else redis.call('HDEL', q.control, 'parked') end
end
-- and its earliest-due-time flag of the delayed zset (includes/queues.lua flag_delayed), which claims read
-- before they promote: lowered to the zset's first entry, so an entry added by a submitter or worker of the
-- version before the flag is promoted at most one reaper interval after it is due
local first = redis.call('ZRANGE', q.delayed, 0, 0, 'WITHSCORES')
if first[1] then flag_delayed(q.control, tonumber(first[2]), ctl[3]) end
emit_flush() -- the pass's job events as one stream entry (includes/emit.lua)
requeued[#requeued + 1] = '|'
for _, id in ipairs(failed) do requeued[#requeued + 1] = id end
return requeued
