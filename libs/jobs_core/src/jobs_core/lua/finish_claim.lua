--- @include "now"
--- @include "queues"
--- @include "finish_one"
--- @include "claim_batch"
--- @include "claim_memo"
--- @include "tally"
-- The worker's hot path in one round trip: end any number of attempts (succeeded | failed | cancelled |
-- retry: queued again, maybe delayed | handback: queued at the front of its priority, attempt not
-- charged), then claim up to N queued jobs for the slots that are free, from the worker's queues in its
-- order. Outcomes are all checked before anything changes. CLAIM and FINISH are this script with no
-- finishes or N = 0.
-- KEYS: 1 pending hash, 2 failed zset, 3 this worker's claim memo, then one claim block (17 keys) per queue
--       the worker consumes, in its order (includes/queues.lua, claim_block)
-- ARGV: 1 worker id, 2 lease ms, 3 job key prefix, 4 result key prefix, 5 events channel prefix,
--       6 result TTL s, 7 record TTL s, 8 history TTL s, 9 N to claim (-N: the claim follows the worker's
--       blocking wait on its wake lists and passes a wake token on, includes/claim_batch.lua), 10 tasks the
--       worker offers (JSON array; '' = any), 11 number of queues Q, 12 number of finishes F, then Q claim
--       blocks of ARGV (4 each), then F groups of 7: id, attempt, outcome, result bytes, result media type, error
--       JSON ('' = none), retry delay ms; last: claim token (new per call; repeated by a re-send, which gets
--       the first run's reply) and ':' and the send number (jobs_core/resend.py: 1 on the first send, which
--       skips the memo read; a token without it, from an older client, is checked)
-- Returns {{status or 'stale:<current status>' per finish}, {claimed jobs, 8 fields each: id, task,
--          params, timeout, attempts, max_attempts, queue, owner}}
local token, send = string.match(ARGV[#ARGV], '^(.*):(%d+)$')
if not token then token = ARGV[#ARGV] end
if send ~= '1' then
  local replay = memo_replay(KEYS[3], token, ARGV[3], ARGV[1])
  if replay then return replay end
end
local nq, nf = tonumber(ARGV[11]), tonumber(ARGV[12])
local queues, by_name = queue_blocks(4, 13, nq, true)
local fb = 13 + nq * CLAIM_ARGS
for i = 0, nf - 1 do
  local outcome = ARGV[fb + i * 7 + 2]
  if not OUTCOMES[outcome] then return redis.error_reply('unknown outcome ' .. outcome) end
end
local now = now_ms()
local statuses = {}
local claimed = {}
-- the per-call tallies (includes/tally.lua): pending counts, history counts, subscription cache
local tally = tally_new()
local function run()
  -- the finishes' constants, once per call (includes/finish_one.lua: no table per job)
  local fc = nf > 0 and {jobs = ARGV[3], results = ARGV[4], events = ARGV[5], worker = ARGV[1],
    failed = KEYS[2], pending = KEYS[1], result_ttl = ARGV[6], record_ttl = ARGV[7], history_ttl = ARGV[8],
    tally = tally, tenant_subs = {}}
  for i = 0, nf - 1 do
    local b = fb + i * 7
    local ok, status = finish_one(fc, queues, by_name, ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
                                  ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], now)
    statuses[#statuses + 1] = ok and status or ('stale:' .. status)
  end
  -- the ended attempts' leases go before the claim's cap checks count the leases zsets
  flush_lease_rem(queues)
  local wanted = tonumber(ARGV[9])
  local waited = wanted < 0
  if waited then wanted = -wanted end
  if wanted > 0 then
    local c = {worker = ARGV[1], lease_ms = tonumber(ARGV[2]), prefix = ARGV[3], events = ARGV[5],
               pending = KEYS[1], offers = ARGV[10] ~= '' and ARGV[10] or nil, tally = tally, waited = waited}
    claimed = claim_batch(c, queues, wanted, now)
  end
end
-- A script's effects are not rolled back on an error: with one command per job, every change made before
-- the error had happened in full. The tallied ones are written here in any case so that stays true (the
-- jobs ended or claimed before the error keep their lease removal / lease and their counts), then the
-- error goes back to the caller.
local ok, err = pcall(run)
flush_lease_rem(queues)
for _, q in ipairs(queues) do
  if q.lease_add and #q.lease_add > 0 then call_chunked('ZADD', q.leases, q.lease_add) end
  q.lease_add = nil
end
tally_flush(tally, KEYS[1])
-- every finish's and claim's job event as one stream entry (includes/emit.lua); before the error too, so
-- the transitions completed before it keep their events, as they did with one XADD per change
emit_flush()
if not ok then error(err, 0) end
memo_save(KEYS[3], token, claimed, statuses, ARGV[2], now_arg(now))
return {statuses, claimed}
