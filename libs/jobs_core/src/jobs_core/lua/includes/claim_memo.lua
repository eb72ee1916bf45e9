--- @include "now"
-- Claim memo (one string per worker, TTL = lease): the token and outcome of the worker's last CLAIM or
-- FINISH_CLAIM. The client re-sends a call whose reply was lost (timeout, dropped connection; numbered,
-- jobs_core/resend.py); the re-sent call carries the same token and gets the first run's answer instead of
-- claiming again, which would strand the jobs the first run leased to this worker until the reaper charged
-- them an attempt. A first send cannot have run before: it skips memo_replay (the memo is still saved).
-- The value is text, '<token>\n<now>\n<statuses>\n<ids>' (the call's clock in ms, its finishes' statuses
-- and its claimed ids, each list comma-separated: no status or job id holds a comma or a newline), built
-- by two table.concat (cjson of {t, ids, att, st} with the attempts as strings before: ~45 k Redis
-- instructions per call, issue 16 profile 29). A memo of the version before (JSON, '{...') is still read.
-- Only the worker that wrote a memo reads it (its key is the worker's own; a worker id is new per process).
local function memo_replay(key, token, prefix, worker)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local ids, st, started, att = {}, {}, nil, nil
  if string.byte(raw, 1) == 123 then -- '{': JSON, the version before
    local m = cjson.decode(raw)
    if m.t ~= token then return nil end
    ids, st, att = m.ids, m.st, m.att
  else
    local t, now, statuses, claimed = string.match(raw, '^(.-)\n(%d*)\n([^\n]*)\n([^\n]*)$')
    if t ~= token then return nil end
    started = now
    for s in string.gmatch(statuses, '[^,]+') do st[#st + 1] = s end
    for id in string.gmatch(claimed, '[^,]+') do ids[#ids + 1] = id end
  end
  local out = {}
  for i, id in ipairs(ids) do
    local f = redis.call('HMGET', prefix .. id, 'status', 'worker', 'attempts', 'task', 'params', 'timeout',
      'max_attempts', 'queue', 'owner', 'started_at')
    -- still this claim's: running for this worker, and claimed at the memo's time (this worker made no call
    -- since: the memo is its last call's) or, in a memo of the version before, at the attempt it recorded (a
    -- string; a number in older memos still)
    local same
    if att then
      same = f[3] == att[i] or tonumber(f[3]) == att[i]
    else
      same = f[10] == started
    end
    if f[1] == 'running' and f[2] == worker and same then
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
  return {st, out}
end
-- now_s: the call's clock as its claims wrote it to 'started_at' (now_arg)
local function memo_save(key, token, claimed, statuses, ttl_ms, now_s)
  if #claimed == 0 and #statuses == 0 then return end
  local ids = {}
  for i = 1, #claimed, 8 do ids[#ids + 1] = claimed[i] end
  redis.call('SET', key, token .. '\n' .. now_s .. '\n' .. table.concat(statuses, ',') .. '\n' ..
    table.concat(ids, ','), 'PX', ttl_ms)
end
