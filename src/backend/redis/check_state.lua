-- ringlimit: sliding-window and GCRA checks, each atomic, on the Redis server's clock.
-- Follows algorithms.lua (the arithmetic) and a line `local algorithm_id = <2 or 3>`.
-- KEYS[i]    a user's state, "<prefix>{<user id>}": a hash of the algorithm's state
--            (`k` its kind, `a`, `b`, `c` its numbers), expiring once it no longer
--            matters. Only the declared keys are touched.
-- ARGV[1]    window length in ms; ARGV[2] limit; ARGV[2 + i] the cost of KEYS[i]
-- returns    {allowed_1 (1 or 0), used_1, ms_1, allowed_2, ...}: used is the limit less
--            what remains; ms is the time until the policy is whole again (allowed) or
--            until this cost fits (denied; until it is whole, if it never fits)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local check = algorithms[algorithm_id]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local answers = {}
for i = 1, #KEYS do
  local state_key = KEYS[i]
  local cost = tonumber(ARGV[2 + i])
  local held = redis.call('HMGET', state_key, 'k', 'a', 'b', 'c')
  local kind = tonumber(held[1]) or 0
  if kind ~= algorithm_id then
    -- Nothing held, or a state of another algorithm (the policy changed): start afresh.
    kind = 0
  end
  local a, b, c = tonumber(held[2]) or 0, tonumber(held[3]) or 0, tonumber(held[4]) or 0
  local allowed, remaining, reset, retry, state = check(window, limit, kind, a, b, c, now, cost)
  if state then
    -- %d prints the whole number exactly (every one is below 2^53).
    redis.call('HSET', state_key, 'k', state[1], 'a', string.format('%d', state[2]),
      'b', string.format('%d', state[3]), 'c', string.format('%d', state[4]))
    local expiry = reset
    if state[1] == 2 then
      -- A sliding window's count weighs on the next window too.
      expiry = (state[2] + 2) * window - now
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
