-- The attempt history the console shows: job hash field 'attempt_log', a JSON list of
-- {n, worker, start, end, outcome} (ms, Redis clock), the last 20 attempts kept. Outcomes: succeeded,
-- failed, cancelled, retry (failed, to run again), handback (the worker stopped; not charged), lost (the
-- worker died: its lease expired).
local function attempt_started(jk, n, worker, now)
  local raw = redis.call('HGET', jk, 'attempt_log')
  local log = raw and cjson.decode(raw) or {}
  log[#log + 1] = {n = n, worker = worker, start = now}
  while #log > 20 do table.remove(log, 1) end
  redis.call('HSET', jk, 'attempt_log', cjson.encode(log))
end
local function attempt_ended(jk, outcome, now)
  local raw = redis.call('HGET', jk, 'attempt_log')
  if not raw then return end
  local log = cjson.decode(raw)
  local last = log[#log]
  if last and last['end'] == nil then
    last['end'] = now
    last.outcome = outcome
    redis.call('HSET', jk, 'attempt_log', cjson.encode(log))
  end
end
