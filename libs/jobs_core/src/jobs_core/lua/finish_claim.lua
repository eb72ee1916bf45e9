--- @include "now"
--- @include "finish_one"
--- @include "claim_batch"
--- @include "claim_memo"
-- The worker's hot path in one round trip: end any number of attempts (as FINISH), then claim up to N
-- queued jobs for the slots that are free (as CLAIM). Outcomes are all checked before anything changes.
-- KEYS: 1 queue list, 2 inflight list, 3 leases zset, 4 pending hash, 5 delayed zset, 6 orphans zset,
--       7 dead-letter list, 8 failed zset, 9 this worker's claim memo
-- ARGV: 1 worker id, 2 lease ms, 3 job key prefix, 4 result key prefix, 5 events channel prefix,
--       6 result TTL s, 7 record TTL s, 8 N to claim, 9 number of finishes F, then F groups of 7:
--       id, attempt, outcome, result bytes, result media type, error JSON ('' = none), retry delay ms;
--       last: claim token (new per call; repeated by a re-send, which gets the first run's reply)
-- Returns {{status or 'stale:<current status>' per finish}, {claimed jobs, 6 fields each as CLAIM}}
local token = ARGV[#ARGV]
local replay = memo_replay(KEYS[9], token, ARGV[3], ARGV[1])
if replay then return replay end
local nf = tonumber(ARGV[9])
for i = 0, nf - 1 do
  local outcome = ARGV[10 + i * 7 + 2]
  if not OUTCOMES[outcome] then return redis.error_reply('unknown outcome ' .. outcome) end
end
local now = now_ms()
local statuses = {}
for i = 0, nf - 1 do
  local b = 10 + i * 7
  local id = ARGV[b]
  local k = {job = ARGV[3] .. id, inflight = KEYS[2], leases = KEYS[3], result = ARGV[4] .. id,
             failed = KEYS[8], delayed = KEYS[5], queue = KEYS[1], pending = KEYS[4]}
  local a = {id = id, worker = ARGV[1], attempt = ARGV[b + 1], outcome = ARGV[b + 2], data = ARGV[b + 3],
             media = ARGV[b + 4], result_ttl = ARGV[6], record_ttl = ARGV[7], error = ARGV[b + 5],
             delay_ms = ARGV[b + 6], channel = ARGV[5] .. id}
  local r = finish_one(k, a, now)
  statuses[#statuses + 1] = r[1] == 'ok' and r[2] or ('stale:' .. r[2])
end
local claimed = {}
local wanted = tonumber(ARGV[8])
if wanted > 0 then
  local k = {queue = KEYS[1], inflight = KEYS[2], leases = KEYS[3], pending = KEYS[4], delayed = KEYS[5],
             orphans = KEYS[6], dead = KEYS[7]}
  claimed = claim_batch(k, wanted, ARGV[1], tonumber(ARGV[2]), ARGV[3], '', ARGV[5], now)
end
memo_save(KEYS[9], token, claimed, statuses, tonumber(ARGV[2]))
return {statuses, claimed}
