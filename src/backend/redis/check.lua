-- ringlimit: fixed-window checks, each atomic, on the Redis server's clock.
-- KEYS[i]    a user's counter, "<prefix>{<user id>}": a hash of the window start ('s') and
--            the units used in it ('n'), expiring at the window's end. Only the declared
--            keys are touched (Redis Cluster, and servers that enforce declared keys).
--            One key per call unless the backend batches checks, which it does only on a
--            single server, never on a cluster.
-- ARGV[1]    window length in ms; ARGV[2] limit; ARGV[2 + i] the cost of KEYS[i]
-- returns    {ms until the window resets, allowed_1 (1 or 0), used_1, allowed_2, used_2, ...}
-- A counter of an earlier window counts as empty: the window start in the value decides,
-- not the expiry, so a check in a window's first millisecond never reads the last one's.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local start = now - (now % window)
local reset = start + window - now
-- tostring prints an integer of up to 14 digits exactly (the ms timestamps have 13).
local this_window = tostring(start)
-- Sized for the common single key, so that filling it in does not grow it.
local answers = {reset, 0, 0}
for i = 1, #KEYS do
  local counter = KEYS[i]
  local cost = tonumber(ARGV[2 + i])
  local held = redis.call('HMGET', counter, 's', 'n')
  local current = held[1] == this_window
  -- A clock behind the counter's window (a failover to a server behind) counts in that
  -- window, never afresh in an earlier one.
  local counted_in = this_window
  local held_start = tonumber(held[1])
  if held_start and held_start > start then
    current = true
    counted_in = held[1]
  end
  local used = 0
  if current then
    used = tonumber(held[2])
  end
  if used + cost > limit then
    answers[2 * i] = 0
  else
    used = used + cost
    answers[2 * i] = 1
    if current then
      redis.call('HSET', counter, 'n', used)
    else
      -- The window's first count: the counter goes when the window does (an expiry is
      -- only ever lengthened: the hash may hold another algorithm's state too).
      redis.call('HSET', counter, 's', counted_in, 'n', used)
      local ttl = redis.call('PTTL', counter)
      if ttl < reset then
        redis.call('PEXPIRE', counter, reset)
      end
    end
  end
  answers[2 * i + 1] = used
end
return answers
