-- create_job(k, j, now): store a new job record (status j.status, 'queued' unless given) and index it;
-- a queued job is pushed to its waiting list and counted as pending for its tenant (unless j.hold: the
-- caller queues it itself).
-- k = {job, queue, index, owner_index, pending, seq}
-- j = {id, task, params, max_attempts, timeout, owner, status?, hold?, extra? (flat list of field, value)}
-- Returns the job's creation sequence number.
local function create_job(k, j, now)
  local seq = redis.call('INCR', k.seq)
  local status = j.status or 'queued'
  redis.call('HSET', k.job, 'id', j.id, 'task', j.task, 'params', j.params, 'status', status,
    'attempts', 0, 'max_attempts', j.max_attempts, 'timeout', j.timeout, 'owner', j.owner,
    'created_at', now, 'seq', seq)
  if j.extra and #j.extra > 0 then redis.call('HSET', k.job, unpack(j.extra)) end
  if status == 'queued' and not j.hold then
    redis.call('RPUSH', k.queue, '"' .. j.id .. '"')
    redis.call('HINCRBY', k.pending, j.owner, 1)
  end
  redis.call('ZADD', k.index, seq, j.id)
  redis.call('ZADD', k.owner_index, seq, j.id)
  return seq
end
