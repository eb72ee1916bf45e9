--- @include "attempt_log"
--- @include "emit"
--- @include "tally"
--- @include "now"
-- claim_batch(): take up to `wanted` queued jobs for a worker (queued -> running) from its queues in strict
-- order (the first queue with work first; within a queue the highest priority first, FIFO within a
-- priority), after promoting due delayed jobs (when the control hash says some are due). A paused queue
-- gives nothing; a capped queue gives at most cap - (jobs holding a lease in it): a dead worker's jobs
-- hold theirs until the reaper frees them. A job whose task the worker does not offer is not run: it is
-- parked for a worker that offers it (no attempt charged), and such workers take parked jobs first.
-- c = {worker, lease_ms, prefix, events, pending, offers (the JSON array of task names the worker sent, nil =
-- any: offers_task below), tally
-- (includes/tally.lua: the pending counts, flushed by the caller), waited (the call follows the worker's
-- blocking wait on its wake lists, which may have taken a token: the wake rule below)}.
-- The leases zset is the record of running jobs (KEDA's running trigger counts it): an entry is popped from
-- its list and decided in this script (claimed, dropped, parked), never parked in an in-flight list; a
-- queue's new leases are added in one ZADD before the next queue's cap check. Returns a flat list, 8 fields
-- per claimed job: id, task, params, timeout, attempts, max_attempts, queue, owner (tenant).
-- promote the delayed jobs that are due; due_at: the control hash's 'delayed' field (includes/queues.lua,
-- flag_delayed: never later than the earliest due time in the zset, missing when it is empty), so a call
-- before it costs no command. Afterwards the field is the zset's next due time, or gone with the zset.
local function promote_due(q, prefix, now, due_at)
  local at = tonumber(due_at)
  if not at or at > now then return end
  local due = redis.call('ZRANGEBYSCORE', q.delayed, '-inf', now_arg(now), 'LIMIT', '0', '200')
  for _, id in ipairs(due) do
    redis.call('ZREM', q.delayed, id)
    local jk = prefix .. id
    local f = redis.call('HMGET', jk, 'status', 'priority')
    if f[1] == 'queued' then
      redis.call('HDEL', jk, 'run_at')
      push_waiting(q, priority_of(f[2]), '"' .. id .. '"', false)
    end
  end
  local first = redis.call('ZRANGE', q.delayed, 0, 0, 'WITHSCORES')
  if first[1] then
    redis.call('HSET', q.control, 'delayed', first[2])
  else
    redis.call('HDEL', q.control, 'delayed')
  end
end
-- Whether the JSON array of names `offers` (as the worker sends it: orjson, compact) holds `task`. A name
-- of plain characters is looked up in the text instead of decoding the array (cjson and a table of
-- names on every call before: ~20 k instructions, profile 20): such a name is written '"<name>"', and a
-- match preceded by '[', ',' or JSON whitespace is a whole element (an escaped quote inside an element is
-- preceded by a backslash; a closing quote is followed by ',' or ']', which such a name cannot start
-- with). Any other name: the array is decoded, as before.
local function offers_task(offers, task)
  if string.find(task, '^[%w_%.:/%-]+$') then
    local needle = '"' .. task .. '"'
    local at = string.find(offers, needle, 1, true)
    while at do
      local before = string.byte(offers, at - 1)
      if before == 91 or before == 44 or before == 32 or before == 10 or before == 13 or before == 9 then
        return true
      end
      at = string.find(offers, needle, at + 1, true)
    end
    return false
  end
  for _, t in ipairs(cjson.decode(offers)) do
    if t == task then return true end
  end
  return false
end
-- Whether a queue holds work an idle worker could claim: an entry in a waiting list (an emptied list is
-- deleted, so EXISTS counts the non-empty ones), or with `parked` a parked one (for a worker that offers
-- its task); one command, run only by a claim after a wait that filled up (the wake rule in claim_batch).
local function work_left(q, parked)
  local k = q.k -- the waiting lists p9..p0 are the block's first 10 KEYS (includes/queues.lua)
  if parked then
    return redis.call('EXISTS', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
      KEYS[k + 6], KEYS[k + 7], KEYS[k + 8], KEYS[k + 9], q.parked) > 0
  end
  return redis.call('EXISTS', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
    KEYS[k + 6], KEYS[k + 7], KEYS[k + 8], KEYS[k + 9]) > 0
end
local function claim_batch(c, queues, wanted, now)
  local out = {}
  local budget = wanted * 4 + 8 -- entries examined at most (stale ones are dropped, not counted as claims)
  -- numbers passed to redis.call formatted once per call (includes/now.lua: int_arg)
  local now_s, lease_until = now_arg(now), int_arg(now + c.lease_ms)
  local seen = {} -- offers_task's answer per task name, for the rest of this call
  local function offered(task)
    if c.offers == nil then return true end
    local yes = seen[task]
    if yes == nil then
      yes = offers_task(c.offers, task)
      seen[task] = yes
    end
    return yes
  end
  -- claim one entry just popped from a waiting or parked list; true when it became this worker's job
  local function take(q, entry)
    -- an entry is a JSON string, '"<id>"' (queue_entry); ids have no quote or backslash, so the match is
    -- the decoding (cjson and a pcall per job before); anything else is decoded as it was
    local id = string.match(entry, '^"([^"\\]*)"$')
    if not id then
      local ok, decoded = pcall(cjson.decode, entry)
      if not ok or type(decoded) ~= 'string' then
        redis.call('RPUSH', q.dead, entry)
        return false
      end
      id = decoded
    end
    local jk = c.prefix .. id
    local f = redis.call('HMGET', jk, 'status', 'task', 'params', 'timeout', 'max_attempts', 'owner', 'attempts',
      'attempt_log')
    if f[1] ~= 'queued' then
      -- cancelled while waiting, expired, or a stale duplicate entry: drop it
      if not f[1] then redis.call('RPUSH', q.dead, entry) end
      return false
    end
    if not offered(f[2]) then
      redis.call('RPUSH', q.parked_prefix .. f[2], entry)
      redis.call('SADD', q.parked, f[2])
      redis.call('HSET', q.control, 'parked', '1') -- claims look at the parked set only while this is set
      wake(q) -- an idle worker that offers the task may be waiting
      return false
    end
    -- the fields were read by the HMGET above: one HSET (attempt log included), a ZREM only when the queue
    -- has orphans at all, and an HDEL of what an earlier attempt may have left (progress, message; a
    -- cancel request and an end time are dropped by whatever queues a job again, this is belt and braces)
    -- only for a job that ran before: it has an attempt log (every claim writes one, the version before's
    -- too). Reading those 4 fields for every claim cost ~2.5 k Redis instructions each: an absent field is a
    -- walk of the whole record (profile 29).
    -- a first attempt (most claims) without tonumber and string.format (~1.5 k and ~1.8 k instructions)
    local attempts, att_s = 1, '1'
    if f[7] ~= '0' then
      attempts = (tonumber(f[7]) or 0) + 1
      att_s = int_arg(attempts)
    end
    redis.call('HSET', jk, 'status', 'running', 'worker', c.worker, 'started_at', now_s, 'queue', q.name,
      'attempts', att_s, 'attempt_log', log_started(f[8], att_s, c.worker, now))
    local leases = q.lease_add -- the lease and the count right after the HSET: see decide()
    leases[#leases + 1] = lease_until
    leases[#leases + 1] = id
    tally_pending(c.tally, f[6], -1)
    if f[8] then redis.call('HDEL', jk, 'progress', 'message', 'cancel_requested', 'finished_at') end
    if q.has_orphans then redis.call('ZREM', q.orphans, id) end
    emit_buffered(c.events, id, 'running', f[6], q.name) -- emit() without its ended check: never an end
    local n = #out -- the reply's 8 fields, without a table per job
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, f[2], f[3], f[4]
    out[n + 5], out[n + 6], out[n + 7], out[n + 8] = attempts, f[5], q.name, f[6]
    return true
  end
  -- take() guarded: a popped entry is held by this script alone, so an error in take() (a corrupt attempt
  -- log, say) must not lose it (an in-flight list kept it for the reaper before). Not leased yet: it goes
  -- to the dead-letter list, where an operator sees it; leased (the error came after the HSET): the lease
  -- is added with the others and expires, and the reaper hands the job back. The claim goes on.
  local function decide(q, entry)
    local n = #q.lease_add
    local ok, claimed = pcall(take, q, entry)
    if ok then return claimed end
    if #q.lease_add == n then redis.call('RPUSH', q.dead, entry) end
    return false
  end
  -- pop entries from `list` and claim them while there is room; the room left
  local function drain(q, list, room)
    while room > 0 and budget > 0 do
      local entry = redis.call('LPOP', list)
      if not entry then return room, true end
      budget = budget - 1
      if decide(q, entry) then room = room - 1 end
    end
    return room, false
  end
  -- the same from the waiting lists, highest priority first: LMPOP takes up to `room` entries from the
  -- first non-empty list in one command (a LMOVE per entry plus one per empty list before); each entry is
  -- decided right here, in this script, so no in-flight copy is needed while it is
  local function drain_waiting(q, room)
    -- numkeys, the waiting lists p9..p0 (the block's first 10 KEYS), LEFT, COUNT n: one constructor
    local k = q.k
    local args = {'10', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6],
                  KEYS[k + 7], KEYS[k + 8], KEYS[k + 9], 'LEFT', 'COUNT', false}
    while room > 0 and budget > 0 do
      args[14] = int_arg(math.min(room, budget))
      local got = redis.call('LMPOP', unpack(args))
      if not got then return room end
      for _, entry in ipairs(got[2]) do
        budget = budget - 1
        if decide(q, entry) then room = room - 1 end
      end
    end
    return room
  end
  -- The wake rule: a token is taken only by a worker's blocking wait (BLPOP on all its queues' wake lists),
  -- and the claim that follows that wait (c.waited) passes it on when it stops with work left behind (out
  -- of room or budget), or when it fills up before reaching some of its queues that hold work (the token
  -- may have been meant for it: a submission wakes only when a list was empty, push_waiting). Any other
  -- claim (a busy worker refilling its slots) took no token, so a token that was out is still out and an
  -- idle worker's claim is still to come: it wakes nobody, which saves an LLEN per call (issue 16,
  -- profile 20). A worker of the version before this passes one on after every full claim (harmless).
  -- "Work left" is looked up (work_left), not assumed from a full claim: a 1-slot worker's wake claim is
  -- always full, and the token it passed on for nothing sent it, idle again after the job, through a
  -- blocking wait that returned at once and a claim that found nothing: one BLPOP and one claim more per
  -- job, and the 1-slot round trip's ~27 ms p50 (profile 26).
  for i, q in ipairs(queues) do
    local left = wanted - #out / 8 -- 8 fields per claimed job (7 before 'owner' joined: it under-claimed)
    if left <= 0 or budget <= 0 then
      if c.waited then
        for j = i, #queues do
          if work_left(queues[j], true) then wake(queues[j]) end -- not looked at: any parked job counts
        end
      end
      break
    end
    q.lease_add = {}
    -- the control hash also flags a non-empty parked set and orphans zset (set by whoever adds to them,
    -- cleared when they empty; the reaper re-flags any it finds), which saves an EXISTS each per call, and
    -- holds the delayed zset's earliest due time (or less), which saves the ZRANGEBYSCORE until it is due
    local ctl = redis.call('HMGET', q.control, 'paused', 'cap', 'parked', 'orphans', 'delayed')
    q.has_orphans = ctl[4] == '1'
    q.is_paused = ctl[1] == '1' -- read: promote_due's pushes need no HGET each
    promote_due(q, c.prefix, now, ctl[5])
    if ctl[1] ~= '1' then
      local room, capped = left, false
      if ctl[2] then
        local cap_room = tonumber(ctl[2]) - redis.call('ZCARD', q.leases)
        if cap_room <= left then room, capped = cap_room, true end
      end
      -- parked jobs of tasks this worker offers maybe left (the wake rule above). Parked jobs of tasks it
      -- lacks got a token when parked; one it took is not passed on for them (nor by a claim that did not
      -- fill up, before): a worker that offers their task claims them at its wait's timeout at the latest,
      -- and a task no worker offers any more leaves no token cycling through every wake claim
      local parked_left = false
      if room > 0 and ctl[3] == '1' then
        for _, task in ipairs(redis.call('SMEMBERS', q.parked)) do
          if offered(task) then
            local empty = false
            if room > 0 then room, empty = drain(q, q.parked_prefix .. task, room) end
            if empty then
              redis.call('SREM', q.parked, task)
              if redis.call('SCARD', q.parked) == 0 then redis.call('HDEL', q.control, 'parked') end
            else
              parked_left = true
            end
          end
        end
      end
      if room > 0 and budget > 0 then room = drain_waiting(q, room) end
      -- out of room with work left behind: wake an idle worker for it (the wake rule above)
      if c.waited and (room <= 0 or budget <= 0) and not capped and (parked_left or work_left(q, false)) then
        wake(q)
      end
    end
    -- this queue's leases in one ZADD, before a later queue block's cap check could read the zset
    if #q.lease_add > 0 then call_chunked('ZADD', q.leases, q.lease_add) end
    q.lease_add = nil
  end
  return out
end
