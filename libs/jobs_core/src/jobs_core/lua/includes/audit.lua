-- audit(stream, actor_base, action, target, count, detail): append one entry to the audit log stream
-- (Keys.audit, capped at about 100,000 entries: keys.AUDIT_STREAM_MAXLEN) in the same script as the
-- action it records. The actor is 4 ARGV from actor_base on: tenant, key id (never the key), role, via.
local function audit(stream, actor_base, action, target, count, detail)
  redis.call('XADD', stream, 'MAXLEN', '~', 100000, '*', 'action', action, 'target', target,
    'count', tostring(count), 'outcome', 'ok', 'tenant', ARGV[actor_base], 'key', ARGV[actor_base + 1],
    'role', ARGV[actor_base + 2], 'via', ARGV[actor_base + 3], 'detail', detail or '')
end
