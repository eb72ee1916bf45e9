-- bulk_audit(bk, audit, keep, event, now): append the end of a console bulk action to the audit log: the
-- entry template kept in its hash ('audit': who, tenant, action, bulk id, planned) with event, counts and
-- time, newest first, the last `keep` kept (as jobs_core.browse.Browse.audit writes them).
local function bulk_audit(bk, audit, keep, event, now)
  local b = redis.call('HMGET', bk, 'audit', 'done', 'changed', 'skipped')
  local entry = cjson.decode(b[1] or '{}')
  entry['event'] = event
  entry['done'] = tonumber(b[2] or 0)
  entry['changed'] = tonumber(b[3] or 0)
  entry['skipped'] = tonumber(b[4] or 0)
  entry['at_ms'] = now
  redis.call('LPUSH', audit, cjson.encode(entry))
  redis.call('LTRIM', audit, 0, tonumber(keep) - 1)
end
