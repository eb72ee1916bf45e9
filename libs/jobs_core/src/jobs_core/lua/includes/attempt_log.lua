--- @include "now"
-- The attempt history the console shows: job hash field 'attempt_log', a JSON list of
-- {n, worker, start, end, outcome} (ms, Redis clock), the last 20 attempts kept. Outcomes: succeeded,
-- failed, cancelled, retry (failed, to run again), handback (the worker stopped; not charged), lost (the
-- worker died: its lease expired).
-- The log with an attempt started / ended, from the field's raw value (nil: none yet); the hot path
-- reads the field in its own HMGET and writes the result in its own HSET (no extra commands).
-- Hot path without cjson (issue 16, profile 21): every job's claim and finish decoded and re-encoded the
-- log, and cjson formats each number with snprintf (~3,500 instructions: 5 per job). The claim writes an
-- attempt's open entry as text in one fixed key order, '{"n":<n>,"worker":<JSON string>,"start":<ms>}'
-- (the same JSON as before: every reader, and a worker of the version before, decodes it as it did), and
-- the finish that ends it appends ',"end":<ms>,"outcome":"<outcome>"' inside it when the log ends with
-- exactly that entry (its n, worker and start are the record's 'attempts', 'worker' and 'started_at',
-- which the finish reads anyway). Any other log (written by a version before this, a retried job's, a
-- corrupt one) goes through cjson as before.
-- The entry is made with what goes before and after it in the same concatenation ('[' and ']' for a first
-- attempt's log, ']' for the tail a finish looks for): one string made instead of two (~1 k Redis
-- instructions each; issue 16, profile 35).
-- The last worker id JSON-encoded: one worker per script call, encoded once.
local log_worker, log_worker_json
local function log_open_entry(n, worker, start, before, after)
  if worker ~= log_worker then log_worker, log_worker_json = worker, cjson.encode(worker) end
  return before .. '{"n":' .. n .. ',"worker":' .. log_worker_json .. ',"start":' .. start .. '}' .. after
end
-- n: the attempt number, or its digits (a string: the claim has them already)
local function log_started(raw, n, worker, now)
  if type(n) ~= 'string' then n = int_arg(n) end
  if not raw then return log_open_entry(n, worker, now_arg(now), '[', ']') end -- the first attempt: most jobs
  local entry = log_open_entry(n, worker, now_arg(now), '', '')
  local log = cjson.decode(raw)
  while #log >= 20 do table.remove(log, 1) end
  if #log == 0 then return '[' .. entry .. ']' end -- (cjson writes an empty list as '{}')
  local text = cjson.encode(log)
  return string.sub(text, 1, #text - 1) .. ',' .. entry .. ']'
end
-- nil when there is nothing to change (no log, or its last attempt already ended). n, worker, start
-- (optional: strings as the record holds them): the attempt being ended, for the fast path above.
local function log_ended(raw, outcome, now, n, worker, start)
  if not raw then return nil end
  if n and worker and start then
    local tail = log_open_entry(n, worker, start, '', ']')
    if string.sub(raw, -#tail) == tail then
      return string.sub(raw, 1, #raw - 2) .. ',"end":' .. now_arg(now) .. ',"outcome":"' .. outcome .. '"}]'
    end
  end
  local log = cjson.decode(raw)
  local last = log[#log]
  if last and last['end'] == nil then
    last['end'] = now
    last.outcome = outcome
    return cjson.encode(log)
  end
  return nil
end
local function attempt_started(jk, n, worker, now)
  redis.call('HSET', jk, 'attempt_log', log_started(redis.call('HGET', jk, 'attempt_log'), n, worker, now))
end
local function attempt_ended(jk, outcome, now)
  local log = log_ended(redis.call('HGET', jk, 'attempt_log'), outcome, now)
  if log then redis.call('HSET', jk, 'attempt_log', log) end
end
