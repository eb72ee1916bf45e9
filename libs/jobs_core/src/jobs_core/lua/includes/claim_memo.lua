--- @include "now"
-- Claim memo (one string per worker, TTL = lease): the token and outcome of the worker's last CLAIM or
-- FINISH_CLAIM. The client re-sends a call whose reply was lost (timeout, dropped connection; numbered,
-- jobs_core/resend.py); the re-sent call carries the same token and gets the first run's answer instead of
-- claiming again, which would strand the jobs the first run leased to this worker until the reaper charged
-- them an attempt. A first send cannot have run before: it skips memo_replay (the memo is still saved).
local function memo_replay(key, token, prefix, worker)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local m = cjson.decode(raw)
  if m.t ~= token then return nil end
  local out = {}
  for i, id in ipairs(m.ids) do
    local f = redis.call('HMGET', prefix .. id, 'status', 'worker', 'attempts', 'task', 'params', 'timeout',
      'max_attempts', 'queue', 'owner')
    -- att: the attempts as the record holds them (a string; a number in a memo of the version before)
    if f[1] == 'running' and f[2] == worker and (f[3] == m.att[i] or tonumber(f[3]) == m.att[i]) then
      out[#out + 1] = id
      out[#out + 1] = f[4]
      out[#out + 1] = f[5]
      out[#out + 1] = f[6]
      out[#out + 1] = tonumber(f[3])
      out[#out + 1] = f[7]
      out[#out + 1] = f[8]
      out[#out + 1] = f[9]
    end
  end
  return {m.st, out}
end
local function memo_save(key, token, claimed, statuses, ttl_ms)
  if #claimed == 0 and #statuses == 0 then return end
  local ids, att = {}, {}
  -- the attempts as strings: cjson formats a number with snprintf("%.14g") (~2,000 instructions each)
  for i = 1, #claimed, 8 do
    ids[#ids + 1] = claimed[i]
    att[#att + 1] = int_arg(claimed[i + 4])
  end
  redis.call('SET', key, cjson.encode({t = token, ids = ids, att = att, st = statuses}), 'PX', ttl_ms)
end
