-- Console bulk actions in the audit log stream (Keys.audit, fields as jobs_core.audit describes them), in
-- the same step as the state change they record. `entry` is the template the plan keeps in its hash
-- ('audit': who 'tenant/role (key id)', tenant, action, bulk id, planned; a 'started' entry adds filter).
-- audit_bulk_entry(audit, keep, entry, event, counts): event 'started' | 'finished' | 'failed';
-- counts: {done, changed, skipped} (nil for 'started').
local function audit_bulk_entry(audit, keep, entry, event, counts)
  local _, _, role, key = string.find(entry['who'] or '', '^[^/]*/([a-z]*) %(key ([^)]*)%)$')
  local detail = {planned = entry['planned']}
  if entry['filter'] then detail['filter'] = entry['filter'] end
  local count = tonumber(entry['planned'] or 0)
  if counts then
    detail['done'], detail['changed'], detail['skipped'] = counts[1], counts[2], counts[3]
    count = counts[2]
  end
  local outcome = ({started = 'started', finished = 'ok', failed = 'failed'})[event] or event
  redis.call('XADD', audit, 'MAXLEN', '~', tonumber(keep), '*', 'action', 'bulk.' .. (entry['action'] or ''),
    'target', 'bulk:' .. (entry['bulk'] or ''), 'count', tostring(count), 'outcome', outcome,
    'tenant', entry['tenant'] or '', 'key', key or '', 'role', role or '', 'via', 'console',
    'detail', cjson.encode(detail))
end
-- bulk_audit(bk, audit, keep, event, now): the end of the action in hash `bk` ('finished' or 'failed'),
-- with its counts. (`now` is the stream entry's own time; kept for the callers' signature.)
local function bulk_audit(bk, audit, keep, event, now)
  local b = redis.call('HMGET', bk, 'audit', 'done', 'changed', 'skipped')
  audit_bulk_entry(audit, keep, cjson.decode(b[1] or '{}'), event,
    {tonumber(b[2] or 0), tonumber(b[3] or 0), tonumber(b[4] or 0)})
end
