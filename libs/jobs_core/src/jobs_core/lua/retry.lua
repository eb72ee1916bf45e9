--- @include "retry_one"
-- Explicit retry: failed | cancelled -> queued with a fresh attempt budget, at the back of its priority.
-- KEYS: 1 job hash, 2 failed zset, 3 pending hash, then the block of the job's queue (includes/queues.lua)
-- ARGV: 1 id, 2 owner ('' = any), 3 events channel, 4 request token (fresh per call: a copy re-sent after
--       a lost reply answers as the first run did while the job has not finished again, not 409), then
--       the queue's ARGV block
-- Returns {'queued'} | {'missing'} | {'illegal', status}
local reply = retry_one(KEYS[1], ARGV[1], ARGV[2], events_prefix_of(ARGV[3], ARGV[1]), ARGV[4],
  queue_block(4, 5), KEYS[2], KEYS[3])
emit_flush() -- its job event as one stream entry (includes/emit.lua)
return reply
