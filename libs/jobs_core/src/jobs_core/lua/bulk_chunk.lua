--- @include "retry_one"
--- @include "cancel_one"
--- @include "bulk_audit"
-- Apply the next chunk of a running console bulk action and checkpoint it in the same step: the cursor
-- (position in the plan's id list), the counts and the lease move together with the jobs' changes, so a
-- chunk is never applied twice nor skipped, whichever process resumes the action. Only the holder whose
-- token and cursor match may apply it (a process that lost its lease is refused). The last chunk ends the
-- action (state 'done') and writes its 'finished' audit entry.
-- KEYS: 1 bulk hash, 2 plan id list, 3 running zset, 4 audit stream, 5 pending hash, 6 failed zset, then NQ
--       queue blocks (includes/queues.lua): the queues of the chunk's jobs
-- ARGV: 1 op id, 2 holder token, 3 cursor the caller read, 4 chunk size, 5 job key prefix, 6 events channel
--       prefix, 7 record TTL s, 8 lease ms, 9 audit entries kept, 10 default queue (jobs from before
--       queues), 11 NQ, then NQ queue ARGV blocks
-- Returns {'more' | 'done', done, changed, skipped} | {'lost', state} | {'queues'} (a job's queue is not
-- among the blocks: read the chunk again)
local b = redis.call('HMGET', KEYS[1], 'state', 'holder', 'cursor', 'action', 'owner', 'planned')
if b[1] ~= 'running' or b[2] ~= ARGV[2] or b[3] ~= ARGV[3] then return {'lost', b[1] or ''} end
local cursor = tonumber(b[3])
local ids = redis.call('LRANGE', KEYS[2], cursor, cursor + tonumber(ARGV[4]) - 1)
local _, by_name = queue_blocks(7, 12, tonumber(ARGV[11]))
local queue_of = {}
for i, id in ipairs(ids) do
  local q = by_name[redis.call('HGET', ARGV[5] .. id, 'queue') or ARGV[10]]
  if not q then return {'queues'} end
  queue_of[i] = q
end
local token = 'bulk:' .. ARGV[1]
local changed, skipped = 0, 0
for i, id in ipairs(ids) do
  local r
  if b[4] == 'retry' then
    r = retry_one(ARGV[5] .. id, id, b[5] or '', ARGV[6], token, queue_of[i], KEYS[6], KEYS[5])
  else
    r = cancel_one(ARGV[5] .. id, id, b[5] or '', ARGV[7], ARGV[6], token, queue_of[i], KEYS[5])
  end
  if r[1] == 'missing' or r[1] == 'illegal' then skipped = skipped + 1 else changed = changed + 1 end
end
emit_flush() -- the chunk's job events as one stream entry (includes/emit.lua)
local now = now_ms()
cursor = cursor + #ids
local done = redis.call('HINCRBY', KEYS[1], 'done', #ids)
changed = redis.call('HINCRBY', KEYS[1], 'changed', changed)
skipped = redis.call('HINCRBY', KEYS[1], 'skipped', skipped)
redis.call('HSET', KEYS[1], 'cursor', cursor, 'updated_ms', now)
if #ids == 0 or cursor >= tonumber(b[6]) then
  redis.call('HSET', KEYS[1], 'state', 'done', 'finished_ms', now)
  redis.call('HDEL', KEYS[1], 'holder')
  redis.call('ZREM', KEYS[3], ARGV[1])
  bulk_audit(KEYS[1], KEYS[4], ARGV[9], 'finished', now)
  return {'done', done, changed, skipped}
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[8]), ARGV[1])
return {'more', done, changed, skipped}
