-- int_arg(n): a number as a redis.call argument. Redis 7.0 formats every Lua number it is passed with
-- snprintf("%.17g") (~2,600 instructions each; profile 14); an integer-valued one is formatted here with
-- '%d' instead (the same digits, exact below 2^53), anything else is passed as it is (its exact value).
local function int_arg(n)
  if n % 1 == 0 and n > -9007199254740992 and n < 9007199254740992 then return string.format('%d', n) end
  return n
end
-- now_ms(): the Redis server clock in ms, so workers and API pods with skewed clocks agree. The script's
-- `now` is passed to many commands (timestamps, scores): now_arg(now) is it formatted once per call.
local now_num, now_str
local function now_ms()
  local t = redis.call('TIME')
  now_num = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  now_str = string.format('%d', now_num)
  return now_num
end
local function now_arg(now)
  if now ~= now_num then now_num, now_str = now, int_arg(now) end
  return now_str
end
