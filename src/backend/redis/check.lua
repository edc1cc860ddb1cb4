-- ringlimit: one fixed-window check, atomically, on the Redis server's clock.
-- KEYS[1]  the user's key, "<prefix>{<user id>}"; the counter is KEYS[1] .. ":" .. window start
--          (the hash tag keeps both in one slot, so this works unchanged on Redis Cluster)
-- ARGV[1]  window length in ms; ARGV[2] limit; ARGV[3] cost
-- returns  {allowed (1 or 0), units used in the window, ms until the window resets}
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local start = now - (now % window)
local reset = start + window - now
local counter = KEYS[1] .. ':' .. string.format('%.0f', start)
-- Count first (one command on the common, allowed path); take it back if it does not fit.
local used = redis.call('INCRBY', counter, cost)
if used == cost then
  -- The window's first hit: the counter goes when the window does.
  redis.call('PEXPIRE', counter, reset)
end
if used > limit then
  used = redis.call('DECRBY', counter, cost)
  return {0, used, reset}
end
return {1, used, reset}
