-- Delete a tenant's schedule (its jobs stay; its tick markers expire by themselves).
-- KEYS: 1 schedule hash, 2 schedules-due zset, 3 tenant's schedule names zset
-- ARGV: 1 due-zset member, 2 name
-- Returns 1 when deleted, 0 when there was no such schedule
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
