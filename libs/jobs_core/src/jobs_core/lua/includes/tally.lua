-- Per-call tallies (issue 16): a worker's FINISH_CLAIM ends and claims several jobs per call, and writes
-- that were one command per job are one command per call here: the lease ZADD / ZREM per leases zset,
-- the pending HINCRBY per tenant (claims -1, retries and hand-backs +1: a tenant whose changes cancel out
-- costs nothing), the history HINCRBY per distinct field. Nothing in the same script reads these keys
-- between the tally and its flush except the claim's cap check (ZCARD leases), which is why claim_batch
-- flushes a queue's new leases before it moves on to the next queue. The script is atomic, so no other
-- client sees the keys between the tally and the flush either.
-- Variadic commands in chunks: Lua's unpack() is bounded by the C stack (LUAI_MAXCSTACK, 8000 slots).
local TALLY_CHUNK = 4000
local function call_chunked(cmd, key, args)
  for i = 1, #args, TALLY_CHUNK do
    redis.call(cmd, key, unpack(args, i, math.min(#args, i + TALLY_CHUNK - 1)))
  end
end
local function tally_new()
  return {pending = {}, tenants = {}, history = {}, hfields = {}, subs = {}, h_last = false}
end
-- add delta to a tenant's pending count (flushed in first-seen order: deterministic)
local function tally_pending(t, tenant, delta)
  local n = t.pending[tenant]
  if n == nil then
    t.tenants[#t.tenants + 1] = tenant
    n = 0
  end
  t.pending[tenant] = n + delta
end
-- count one finish in a history hash field; the EXPIRE runs when the flush's HINCRBY created the field
-- (its result is the tallied increment), as count_finished does for one. The same field as the last one
-- (history_field hands the same string back for alike finishes) is counted without the '<key>\0<field>'
-- name and its lookup (~2 k Redis instructions a finish; issue 16, profile 35).
local function tally_history(t, key, field, ttl)
  local h = t.h_last
  if h and field == h.field and key == h.key then
    h.n = h.n + 1
    return
  end
  local id = key .. '\0' .. field
  h = t.history[id]
  if not h then
    h = {key = key, field = field, ttl = ttl, n = 0}
    t.history[id] = h
    t.hfields[#t.hfields + 1] = h
  end
  h.n = h.n + 1
  t.h_last = h
end
-- A tally is flushed once, at the end of its call (FINISH_CLAIM makes a new one per call): it is not emptied
-- for reuse (four new tables, ~3 k Redis instructions a call; issue 16, profile 35).
local function tally_flush(t, pending_key)
  for _, tenant in ipairs(t.tenants) do
    local n = t.pending[tenant]
    -- counts are integers: '%d' instead of Redis' "%.17g" of a Lua number (profile 18)
    if n ~= 0 then redis.call('HINCRBY', pending_key, tenant, string.format('%d', n)) end
  end
  for _, h in ipairs(t.hfields) do
    if redis.call('HINCRBY', h.key, h.field, string.format('%d', h.n)) == h.n then redis.call('EXPIRE', h.key, h.ttl) end
  end
end
