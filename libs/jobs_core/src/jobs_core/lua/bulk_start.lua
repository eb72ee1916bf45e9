--- @include "now"
--- @include "bulk_audit"
-- Start a planned console bulk action: planned -> running, held by the starting process's lease, and the
-- 'started' audit entry written in the same step (so an action that runs always has its start recorded).
-- KEYS: 1 bulk hash, 2 running zset (op id -> lease deadline ms), 3 audit stream
-- ARGV: 1 op id, 2 holder token, 3 lease ms, 4 'started' audit entry (JSON), 5 audit entries kept
-- Returns {'ok'} | {'again', state} (already started: a double submit) | {'missing'}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state ~= 'planned' then return {'again', state} end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'running', 'started_ms', now, 'updated_ms', now, 'holder', ARGV[2],
  'cursor', 0, 'done', 0, 'changed', 0, 'skipped', 0, 'claims', 0)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
audit_bulk_entry(KEYS[3], ARGV[5], cjson.decode(ARGV[4]), 'started', nil)
return {'ok'}
