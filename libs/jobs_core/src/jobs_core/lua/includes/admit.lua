-- Admission of a submission (enqueue.lua, submit_flow.lua): the Idempotency-Key replay and the pending
-- caps, checked before anything is written, answered as a refusal (a reply, never a Lua error).
-- Needs includes/queues.lua (pending_in).
--
-- idempotent_replay(stored, digest, prefix, born): the answer to a submission whose Idempotency-Key holds
-- `stored` ('<ids> <digest>', or false/nil when unused): nil when the key is free (unused, or its jobs
-- expired), {'conflict', first id} for another request under the key, {'exists', id of each job...} for a
-- repeat. `born` (optional): ids this very call admits but has not written yet (they count as existing).
local function idempotent_replay(stored, digest, prefix, born)
  if not stored then return nil end
  local sp = string.find(stored, ' ', 1, true)
  if not sp then return nil end
  local ids = string.sub(stored, 1, sp - 1)
  local first = string.match(ids, '^[^,]+')
  if string.sub(stored, sp + 1) ~= digest then return {'conflict', first} end
  if (born and born[first]) or redis.call('EXISTS', prefix .. first) == 1 then
    local out = {'exists'}
    for id in string.gmatch(ids, '[^,]+') do out[#out + 1] = id end
    return out
  end
  return nil
end
-- new_admission(pending_key): what one script call has admitted so far, so that the caps of a later
-- submission of the same call count the earlier ones (written at the end, all together). Each queue's
-- pending jobs (pending_in: 21 commands) and each tenant's pending count are read once per call.
local function new_admission(pending_key)
  return {pending_key = pending_key, base_q = {}, added_q = {}, base_o = {}, added_o = {}}
end
-- over_caps(adm, per_queue, cap, owner, n, owner_cap): {'full', 'global', queue name} when a queue of
-- per_queue ({{q = queue block, count = jobs}...}) would pass `cap` (0 = none), {'full', 'tenant', ''} when
-- `owner` would pass `owner_cap` (0 = none) with its n jobs, else nil.
local function over_caps(adm, per_queue, cap, owner, n, owner_cap)
  if cap > 0 then
    for _, e in ipairs(per_queue) do
      local name = e.q.name
      if adm.base_q[name] == nil then adm.base_q[name] = pending_in(e.q) end
      if adm.base_q[name] + (adm.added_q[name] or 0) + e.count > cap then return {'full', 'global', name} end
    end
  end
  if owner_cap > 0 then
    if adm.base_o[owner] == nil then adm.base_o[owner] = tonumber(redis.call('HGET', adm.pending_key, owner) or '0') end
    if adm.base_o[owner] + (adm.added_o[owner] or 0) + n > owner_cap then return {'full', 'tenant', ''} end
  end
  return nil
end
-- admitted(adm, per_queue, owner, n): count an admitted submission for the caps of the next ones.
local function admitted(adm, per_queue, owner, n)
  for _, e in ipairs(per_queue) do adm.added_q[e.q.name] = (adm.added_q[e.q.name] or 0) + e.count end
  adm.added_o[owner] = (adm.added_o[owner] or 0) + n
end
