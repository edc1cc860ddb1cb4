-- ringlimit: sliding-window and GCRA checks, each atomic, on the Redis server's clock.
-- Follows algorithms.lua (the arithmetic) and a line `local algorithm_id = <2 or 3>`.
-- KEYS[i]    a user's state, "<prefix>{<user id>}": a hash holding the algorithm's numbers
--            in fields named for it ('2a', '2b', '2c' for the sliding window, '3a', '3b'
--            for GCRA; a fixed window's are 's' and 'n'), so that policies of different
--            algorithms on one key never read each other's state; it expires once no
--            state in it matters (an expiry is only ever lengthened here). Only the
--            declared keys are touched.
-- ARGV[1]    window length in ms; ARGV[2] limit; ARGV[2 + i] the cost of KEYS[i]
-- returns    {allowed_1 (1 or 0), used_1, ms_1, allowed_2, ...}: used is the limit less
--            what remains; ms is the time until the policy is whole again (allowed) or
--            until this cost fits (denied; until it is whole, if it never fits)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local check = algorithms[algorithm_id]
local fields = {algorithm_id .. 'a', algorithm_id .. 'b', algorithm_id .. 'c'}
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local answers = {}
for i = 1, #KEYS do
  local state_key = KEYS[i]
  local cost = tonumber(ARGV[2 + i])
  local held = redis.call('HMGET', state_key, fields[1], fields[2], fields[3])
  local kind = 0
  if held[1] then
    kind = algorithm_id
  end
  local a, b, c = tonumber(held[1]) or 0, tonumber(held[2]) or 0, tonumber(held[3]) or 0
  local allowed, remaining, reset, retry, state = check(window, limit, kind, a, b, c, now, cost)
  if state then
    -- %d prints the whole number exactly (every one is below 2^53).
    redis.call('HSET', state_key, fields[1], string.format('%d', state[2]),
      fields[2], string.format('%d', state[3]), fields[3], string.format('%d', state[4]))
    local expiry = reset
    if state[1] == 3 then
      -- From the bucket's own time, which a clock gone back leaves ahead of now.
      expiry = state[2] + reset - now
    elseif state[1] == 2 then
      -- A sliding window's count weighs on the next window too.
      expiry = (state[2] + 2) * window - now
    end
    -- Only ever lengthened: other state in the hash may need longer (-1: no expiry yet).
    local ttl = redis.call('PTTL', state_key)
    if ttl >= 0 and ttl >= expiry then
      expiry = ttl
    end
    redis.call('PEXPIRE', state_key, math.max(expiry, 1))
  end
  local wait = reset
  if allowed == 0 and retry >= 0 then
    wait = retry
  end
  answers[3 * i - 2] = allowed
  answers[3 * i - 1] = limit - remaining
  answers[3 * i] = wait
end
return answers
