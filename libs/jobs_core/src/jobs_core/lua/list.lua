-- Page through an index newest first, skipping ids whose records expired (and pruning them).
-- KEYS: 1 index zset
-- ARGV: 1 exclusive upper bound on seq ('+inf' for the first page), 2 limit, 3 status filter ('' = any),
--       4 task filter ('' = any), 5 job key prefix, 6 scan budget (index entries examined at most)
-- Returns {next cursor ('' = no more), id...}
local bound = ARGV[1]
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[6])
local ids = {}
local scanned = 0
local last = nil
local exhausted = false
while #ids < limit and scanned < budget do
  local upper = bound == '+inf' and '+inf' or ('(' .. bound)
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], upper, '-inf', 'WITHSCORES', 'LIMIT', 0, 100)
  if #batch == 0 then exhausted = true break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    scanned = scanned + 1
    bound = score
    last = score
    local f = redis.call('HMGET', ARGV[5] .. id, 'status', 'task')
    if not f[1] then
      redis.call('ZREM', KEYS[1], id)
    elseif (ARGV[3] == '' or f[1] == ARGV[3]) and (ARGV[4] == '' or f[2] == ARGV[4]) then
      ids[#ids + 1] = id
    end
    if #ids >= limit or scanned >= budget then break end
  end
end
local cursor = ''
if not exhausted and last then
  local more = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. last, '-inf', 'LIMIT', 0, 1)
  if #more > 0 then cursor = last end
end
local out = {cursor}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
