-- Record one webhook delivery attempt on the job's record (shown as 'webhook' in its representation);
-- nothing when the record has expired. Keeps the last ARGV[3] attempts; 'delivered' stays true once set.
-- KEYS: 1 job hash
-- ARGV: 1 attempt JSON object, 2 delivered '1' | '0', 3 attempts kept
-- Returns 1 when recorded, 0 when the record is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[1], 'webhook')
local hook = raw and cjson.decode(raw) or {attempts = {}, delivered = false}
local attempts = hook.attempts or {}
attempts[#attempts + 1] = cjson.decode(ARGV[1])
while #attempts > tonumber(ARGV[3]) do table.remove(attempts, 1) end
hook.attempts = attempts
hook.delivered = hook.delivered == true or ARGV[2] == '1'
redis.call('HSET', KEYS[1], 'webhook', cjson.encode(hook))
return 1
