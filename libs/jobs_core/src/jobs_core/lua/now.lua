-- now_ms(): the Redis server clock in ms (every process agrees on it, whatever its own clock says)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
