-- ringlimit: fixed-window checks, each atomic, on the Redis server's clock.
-- KEYS[i]    a user's key, "<prefix>{<user id>}"; its counter is KEYS[i] .. ":" .. window start
--            (the hash tag keeps both in one slot). One key per call unless the backend
--            batches checks, which it does only on a single server, never on a cluster.
-- ARGV[1]    window length in ms; ARGV[2] limit; ARGV[2 + i] the cost of KEYS[i]
-- returns    {ms until the window resets, allowed_1 (1 or 0), used_1, allowed_2, used_2, ...}
-- Kept lean: a script call is most of Redis's work per check, so numbers are converted
-- as little as possible (the cost goes to INCRBY as the string it came as).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local start = now - (now % window)
local reset = start + window - now
-- tostring prints an integer of up to 14 digits exactly (the ms timestamps have 13).
local suffix = ':' .. tostring(start)
-- Sized for the common single key, so that filling it in does not grow it.
local answers = {reset, 0, 0}
for i = 1, #KEYS do
  local counter = KEYS[i] .. suffix
  -- Count first (one command on the common, allowed path); take it back if it does not fit.
  local used = redis.call('INCRBY', counter, ARGV[2 + i])
  local cost = tonumber(ARGV[2 + i])
  if used == cost then
    -- The window's first hit: the counter goes when the window does.
    redis.call('PEXPIRE', counter, reset)
  end
  if used > limit then
    answers[2 * i] = 0
    answers[2 * i + 1] = redis.call('DECRBY', counter, cost)
  else
    answers[2 * i] = 1
    answers[2 * i + 1] = used
  end
end
return answers
