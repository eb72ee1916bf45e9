-- Count one failed API-key authentication against the client address and the key prefix presented, in
-- fixed windows that start at the first failure (so the counts are shared by every API process and pod).
-- KEYS: 1 address counter, 2 key-prefix counter (Keys.auth_failures)
-- ARGV: 1 window ms
-- Returns {address count, its ms left, prefix count, its ms left}
local out = {}
for i = 1, 2 do
  local n = redis.call('INCR', KEYS[i])
  local left = redis.call('PTTL', KEYS[i])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    left = tonumber(ARGV[1])
  end
  out[#out + 1] = n
  out[#out + 1] = left
end
return out
