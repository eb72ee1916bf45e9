--- @include "now"
--- @include "finish_one"
-- End a worker's attempt: succeeded | failed | cancelled | retry (queued again, maybe delayed) |
-- handback (queued at the head of the queue, attempt not charged).
-- KEYS: 1 job hash, 2 inflight list, 3 leases zset, 4 result key, 5 failed zset, 6 delayed zset,
--       7 queue list, 8 pending hash
-- ARGV: 1 id, 2 worker id, 3 attempt, 4 outcome, 5 result bytes, 6 result media type,
--       7 result TTL s, 8 record TTL s, 9 error JSON ('' = none), 10 retry delay ms, 11 events channel
-- Returns {'ok', status} | {'stale', current status or ''}
if not OUTCOMES[ARGV[4]] then return redis.error_reply('unknown outcome ' .. ARGV[4]) end
local k = {job = KEYS[1], inflight = KEYS[2], leases = KEYS[3], result = KEYS[4], failed = KEYS[5],
           delayed = KEYS[6], queue = KEYS[7], pending = KEYS[8]}
local a = {id = ARGV[1], worker = ARGV[2], attempt = ARGV[3], outcome = ARGV[4], data = ARGV[5],
           media = ARGV[6], result_ttl = ARGV[7], record_ttl = ARGV[8], error = ARGV[9], delay_ms = ARGV[10],
           channel = ARGV[11]}
return finish_one(k, a, now_ms())
