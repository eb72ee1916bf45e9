--- @include "queues"
--- @include "emit"
-- subscribed(raw, status, task): the URL of the tenant's subscription (raw: its JSON from
-- Keys.webhook_subscriptions, false when none) when its filters take this transition, else nil. A filter
-- that is null takes every status / task.
local function subscribed(raw, status, task)
  if not raw then return nil end
  local sub = cjson.decode(raw)
  local function takes(list, value)
    if type(list) ~= 'table' then return true end
    for _, v in ipairs(list) do if v == value then return true end end
    return false
  end
  if takes(sub.statuses, status) and takes(sub.tasks, task) then return sub.url end
  return nil
end
-- outbox(jk, id, status, now, events_prefix): the job at jk has just become terminal; record its webhook
-- events in the outbox stream (Keys.webhook_outbox = events prefix .. 'webhooks', uncapped: an event is
-- deleted only once delivered or given up) in this same atomic step, so no crash loses one and no
-- transition that did not happen emits one: one for the job's own callback, one for its tenant's
-- subscription (Keys.webhook_subscriptions = events prefix .. 'subscriptions', read now: a subscription
-- changed later does not alter events already written) when its filters take this transition. Event ids
-- are stable for receivers, one per (job, transition, destination): '<id>:<n>' to the callback,
-- '<id>:<n>:subscription' to the subscription (n counts the job's terminal transitions that had a
-- destination: a retried job that ends again is a new event).
-- pre: {callback, owner, task} already read by the caller's own HMGET (the finish path), else nil.
-- subs (optional): a table caching each tenant's subscription for the rest of this script call (a
-- worker's FINISH_CLAIM ends several jobs, mostly of one tenant: one HGET per tenant per call, not per
-- job; only PUT_WEBHOOK_SUBSCRIPTION changes the hash, never inside this script, so the cache is exact).
local function outbox(jk, id, status, now, events_prefix, pre, subs)
  local f = pre or redis.call('HMGET', jk, 'callback', 'owner', 'task')
  local callback = f[1] and f[1] ~= '' and f[1] or nil
  local tenant = f[2] or 'default'
  local raw
  if subs then
    local ck = events_prefix .. '\0' .. tenant
    raw = subs[ck]
    if raw == nil then
      raw = redis.call('HGET', events_prefix .. 'subscriptions', tenant)
      subs[ck] = raw
    end
  else
    raw = redis.call('HGET', events_prefix .. 'subscriptions', tenant)
  end
  local sub = subscribed(raw, status, f[3])
  if not callback and not sub then return end
  local n = redis.call('HINCRBY', jk, 'terminal_seq', 1)
  local function add(event, url, dest)
    redis.call('XADD', events_prefix .. 'webhooks', '*', 'event', event, 'job', id, 'status', status,
      'tenant', f[2] or '', 'task', f[3] or '', 'url', url, 'at', now, 'dest', dest)
  end
  if callback then add(id .. ':' .. n, callback, 'callback') end
  if sub then add(id .. ':' .. n .. ':subscription', sub, 'subscription') end
end
-- release_dependents(jk, id, status, now, pending, events_prefix, record_ttl): the job at key jk (id) has
-- just become terminal with `status`, inside a script that made that transition (guarded by the job's
-- status, so a duplicate or stale finish never gets here). Every dependency edge is consumed exactly once:
-- the job's 'dependents' field ({dependent id: policy}) is read and deleted here, so a job that is
-- retried and ends again releases nothing a second time.
-- A waiting dependent whose last dependency ended is queued: pushed at its priority to its queue's
-- waiting list, or paused list while that queue is paused, or to its delayed set when it was submitted
-- with a delay whose run_at is still ahead ('release': JSON of those key names, written by submit_flow
-- from jobs_core.keys), and counted as pending; a failed or cancelled dependency cancels its waiting dependents, transitively,
-- unless the edge's policy is 'ignore' (then it counts as done). The job prefix is jk minus the id.
-- Every job made terminal here (the first and each cascaded one) gets its webhook event (outbox above).
-- pre (optional): the first job's {callback, owner, task, dependents} as the caller's HMGET read them, so
-- the finish path pays no read of its own here (false = field absent). subs (optional): outbox's cache.
-- Returns the number of dependents queued.
local function release_dependents(jk, id, status, now, pending, events_prefix, record_ttl, pre, subs)
  local prefix = string.sub(jk, 1, #jk - #id)
  local queued = 0
  local stack = {{jk, id, status}}
  while #stack > 0 do
    local top = table.remove(stack)
    local first = pre and top[1] == jk
    outbox(top[1], top[2], top[3], now, events_prefix, first and {pre[1], pre[2], pre[3]} or nil, subs)
    local raw
    if first then raw = pre[4] else raw = redis.call('HGET', top[1], 'dependents') end
    if raw then
      redis.call('HDEL', top[1], 'dependents')
      for did, policy in pairs(cjson.decode(raw)) do
        local dk = prefix .. did
        local f = redis.call('HMGET', dk, 'status', 'owner', 'release', 'priority', 'queue', 'reply_to')
        if f[1] == 'waiting' then
          if top[3] == 'succeeded' or policy == 'ignore' then
            if redis.call('HINCRBY', dk, 'deps_left', -1) <= 0 then
              redis.call('HSET', dk, 'status', 'queued')
              local r = cjson.decode(f[3])
              local p = priority_of(f[4])
              local run_at = tonumber(redis.call('HGET', dk, 'run_at') or '0')
              if run_at > now and r.delayed then  -- submitted with a delay not over yet: due then
                redis.call('ZADD', r.delayed, run_at, did)
                if r.control then flag_delayed(r.control, run_at) end -- claims promote once due
              else
                push_waiting({waiting = {[p] = r.waiting}, paused = {[p] = r.paused}, control = r.control,
                              wake = r.wake}, p, '"' .. did .. '"', false)
              end
              redis.call('HINCRBY', pending, f[2], 1)
              emit(events_prefix, did, 'queued', f[2], f[5])
              queued = queued + 1
            end
          else
            local why = cjson.encode({type = 'DependencyFailed', traceback = cjson.null,
                                      message = 'dependency ' .. top[2] .. ' ended ' .. top[3]})
            redis.call('HSET', dk, 'status', 'cancelled', 'finished_at', now, 'error', why)
            redis.call('EXPIRE', dk, record_ttl)
            emit(events_prefix, did, 'cancelled', f[2], f[5], dk, f[6]) -- and to its reply_to
            stack[#stack + 1] = {dk, did, 'cancelled'}
          end
        end
      end
    end
  end
  return queued
end
