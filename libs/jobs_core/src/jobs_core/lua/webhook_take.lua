--- @include "now"
-- Take webhook events to attempt now, for one dispatcher (a consumer of the outbox's group). The schedule
-- of every event being worked on lives in the due zset (entry id -> ms of its next attempt), shared by
-- every dispatcher, so retries keep their backoff through a dispatcher's death and N API processes retry
-- on one clock. A taken event's due time is pushed a lease ahead (ARGV[3]), so no other dispatcher takes
-- it while it is being attempted; webhook_attempt.lua then sets the next attempt or ends the event. New
-- events are read (XREADGROUP) and scheduled in this same step: none is ever held without a due time.
-- KEYS: 1 outbox stream, 2 due zset, 3 attempts hash (entry id -> failed attempts)
-- ARGV: 1 group, 2 consumer, 3 lease ms, 4 count, 5 adopt '1' | '0': also take events pending in the group
--       without a due time and idle for a lease (read by a dispatcher of an older version that died)
-- Returns {ms until the next due event (-1: none), id of the stream's last entry ('0-0': empty),
--          entry...}, each entry {id, {field, value, ...}} as XCLAIM gives it.
local now, lease, count = now_ms(), tonumber(ARGV[3]), tonumber(ARGV[4])
local taken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, count)) do
  local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
  if got[1] and got[1][2] then
    redis.call('ZADD', KEYS[2], now + lease, id)
    taken[#taken + 1] = got[1]
  else  -- acknowledged or deleted meanwhile: nothing owed
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
if ARGV[5] == '1' and #taken < count then
  local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], lease, '0-0', 'COUNT', count)
  for _, entry in ipairs(claimed[2]) do
    if entry[2] and not redis.call('ZSCORE', KEYS[2], entry[1]) and #taken < count then
      redis.call('ZADD', KEYS[2], now + lease, entry[1])
      taken[#taken + 1] = entry
    end
  end
end
if #taken < count then
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count - #taken, 'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      redis.call('ZADD', KEYS[2], now + lease, entry[1])
      taken[#taken + 1] = entry
    end
  end
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local out = {nxt[2] and math.max(0, tonumber(nxt[2]) - now) or -1, last[1] and last[1][1] or '0-0'}
for _, entry in ipairs(taken) do out[#out + 1] = entry end
return out
