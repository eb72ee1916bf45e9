--- @include "now"
--- @include "claim_batch"
--- @include "claim_memo"
-- Promote due delayed jobs, then take up to N queued jobs for a worker: queued -> running.
-- KEYS: 1 queue list, 2 inflight list, 3 leases zset, 4 pending hash, 5 delayed zset,
--       6 orphans zset, 7 dead-letter list, 8 this worker's claim memo
-- ARGV: 1 N, 2 worker id, 3 lease ms, 4 job key prefix, 5 an entry already moved into inflight by
--       BLMOVE ('' if none), 6 events channel prefix, 7 claim token (new per call; repeated by a re-send)
-- Returns a flat list, 6 fields per claimed job: id, task, params, timeout, attempts, max_attempts
local replay = memo_replay(KEYS[8], ARGV[7], ARGV[4], ARGV[2])
if replay then return replay[2] end
local k = {queue = KEYS[1], inflight = KEYS[2], leases = KEYS[3], pending = KEYS[4], delayed = KEYS[5],
           orphans = KEYS[6], dead = KEYS[7]}
local out = claim_batch(k, tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], now_ms())
memo_save(KEYS[8], ARGV[7], out, {}, tonumber(ARGV[3]))
return out
