-- The console's job search: page through an index newest first with filters, examining at most a budget
-- of index entries (so no request scans every job), skipping and pruning ids whose records expired.
-- Creation times grow with seq (both come from the same script call), so once a job is older than the
-- created_from bound every later one is too: the scan stops there.
-- KEYS: 1 index zset
-- ARGV: 1 exclusive upper bound on seq ('+inf' for the first page), 2 limit, 3 scan budget,
--       4 job key prefix, 5 status ('' = any), 6 task ('' = any), 7 queue ('' = any),
--       8 queue of jobs recorded without one, 9 created_from ms ('' = none), 10 created_to ms ('' = none),
--       11 params field path, dot-separated ('' = no params filter), 12 wanted value as text
-- Returns {next cursor ('' = no more), entries examined, id...}
local bound = ARGV[1]
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local from = tonumber(ARGV[9])
local to = tonumber(ARGV[10])
local path = {}
for part in string.gmatch(ARGV[11], '[^.]+') do path[#path + 1] = part end
local function params_match(raw)
  local ok, v = pcall(cjson.decode, raw or '{}')
  if not ok then return false end
  for _, part in ipairs(path) do
    if type(v) ~= 'table' then return false end
    v = v[part]
  end
  if type(v) == 'string' then return v == ARGV[12] end
  if type(v) == 'boolean' or type(v) == 'number' then
    if type(v) == 'number' and v == math.floor(v) and math.abs(v) < 1e15 then
      return string.format('%d', v) == ARGV[12]
    end
    return tostring(v) == ARGV[12]
  end
  return false
end
local ids = {}
local scanned = 0
local last = nil
local exhausted = false
while #ids < limit and scanned < budget and not exhausted do
  local upper = bound == '+inf' and '+inf' or ('(' .. bound)
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], upper, '-inf', 'WITHSCORES', 'LIMIT', 0, 100)
  if #batch == 0 then exhausted = true break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    scanned = scanned + 1
    bound = score
    last = score
    local f = redis.call('HMGET', ARGV[4] .. id, 'status', 'task', 'queue', 'created_at', 'params')
    if not f[1] then
      redis.call('ZREM', KEYS[1], id)
    else
      local created = tonumber(f[4]) or 0
      if from and created < from then exhausted = true break end
      if (ARGV[5] == '' or f[1] == ARGV[5]) and (ARGV[6] == '' or f[2] == ARGV[6])
          and (ARGV[7] == '' or (f[3] or ARGV[8]) == ARGV[7]) and (not to or created <= to)
          and (#path == 0 or params_match(f[5])) then
        ids[#ids + 1] = id
      end
    end
    if #ids >= limit or scanned >= budget then break end
  end
end
local cursor = ''
if not exhausted and last then
  local more = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. last, '-inf', 'LIMIT', 0, 1)
  if #more > 0 then cursor = last end
end
local out = {cursor, scanned}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
