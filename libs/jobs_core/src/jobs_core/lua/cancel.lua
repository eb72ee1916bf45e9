--- @include "cancel_one"
-- Cancel a job: queued or waiting (on dependencies; its dependents are released: cancelled in turn
-- unless their edge says 'ignore') -> cancelled at once (removed from its waiting, paused or parked list, or from the
-- delayed set); running -> cancel requested.
-- KEYS: 1 job hash, 2 pending hash, then the block of the job's queue (includes/queues.lua)
-- ARGV: 1 id, 2 owner ('' = any), 3 record TTL s, 4 events channel, 5 request token (fresh per call:
--       a copy re-sent by the client after a lost reply answers as the first run did, not 409), then the
--       queue's ARGV block
-- Returns {'cancelled'} | {'requested'} | {'missing'} | {'illegal', status}
local reply = cancel_one(KEYS[1], ARGV[1], ARGV[2], ARGV[3], events_prefix_of(ARGV[4], ARGV[1]), ARGV[5],
  queue_block(3, 6), KEYS[2])
emit_flush() -- its job events as one stream entry (includes/emit.lua)
return reply
