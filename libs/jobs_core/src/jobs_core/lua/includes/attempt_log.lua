-- The attempt history the console shows: job hash field 'attempt_log', a JSON list of
-- {n, worker, start, end, outcome} (ms, Redis clock), the last 20 attempts kept. Outcomes: succeeded,
-- failed, cancelled, retry (failed, to run again), handback (the worker stopped; not charged), lost (the
-- worker died: its lease expired).
-- The log with an attempt started / ended, from the field's raw value (nil: none yet); the hot path
-- reads the field in its own HMGET and writes the result in its own HSET (no extra commands).
local function log_started(raw, n, worker, now)
  local log = raw and cjson.decode(raw) or {}
  log[#log + 1] = {n = n, worker = worker, start = now}
  while #log > 20 do table.remove(log, 1) end
  return cjson.encode(log)
end
-- nil when there is nothing to change (no log, or its last attempt already ended)
local function log_ended(raw, outcome, now)
  if not raw then return nil end
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
