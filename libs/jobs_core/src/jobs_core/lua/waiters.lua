-- A waiter on a job's channel (JobStore.wait without a reply channel: GET /jobs/<id>?wait) counts itself in
-- the record's 'waiters' field before it subscribes, and out when it stops without having seen the end: a
-- worker's finish publishes the ended job on the channel only while the field is above 0 (read by the
-- finish's own HMGET, no PUBSUB NUMSUB per job; includes/emit.lua), and drops the field when it does (its
-- waiters all return then). A waiter that crashed leaves its count: that job's end then costs one PUBLISH
-- no one reads. A record that does not exist (yet, or any more) is left alone: no ghost record.
-- KEYS: 1 job key
-- ARGV: 1 change (1 | -1)
-- Returns the count after the change, -1 when there is no record
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'waiters', tonumber(ARGV[1]))
if n <= 0 then redis.call('HDEL', KEYS[1], 'waiters') end
return n
