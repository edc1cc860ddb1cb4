-- ringlimit: a check against a set of policies, all or nothing, on the Redis server's
-- clock. Follows algorithms.lua (the arithmetic).
-- KEYS[i]    the state of policy i, "<prefix>{<user id>}:<name>:<algorithm>:<window ms>"
--            ("<prefix>{<user id>}" for the backend's own policy, shared with check.lua
--            and check_state.lua): a hash of the algorithm's numbers in the fields those
--            scripts use ('s', the window's start in ms, and 'n' for a fixed window; '2a',
--            '2b', '2c' for the sliding window; '3a', '3b' for GCRA), expiring once they
--            no longer matter (an expiry is only ever lengthened here). Every key has the
--            user's hash tag: one slot, one call. Only the declared keys are touched.
-- ARGV       five numbers per policy, in the keys' order: algorithm (1 fixed, 2 sliding,
--            3 GCRA), window length in ms, limit, cost, shadow (1 or 0)
-- returns    {allowed_1 (1 or 0), used_1, ms_1, allowed_2, ...}, as check_state.lua does
--            (a policy that allowed a check others denied says what it would hold).
-- The state is written only when every policy not in shadow mode allows the check (a
-- shadow policy's only if it allows it too): a denied check counts under none.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local checked = {}
local enforced_allow = true
for i = 1, #KEYS do
  local base = 5 * (i - 1)
  local id = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local limit = tonumber(ARGV[base + 3])
  local cost = tonumber(ARGV[base + 4])
  local shadow = ARGV[base + 5] == '1'
  local fields = {id .. 'a', id .. 'b', id .. 'c'}
  if id == 1 then
    fields = {'s', 'n'}
  end
  local held = redis.call('HMGET', KEYS[i], unpack(fields))
  local kind = 0
  if held[1] then
    kind = id
  end
  local a, b, c = tonumber(held[1]) or 0, tonumber(held[2]) or 0, tonumber(held[3]) or 0
  if id == 1 then
    -- check.lua keeps the window's start; the arithmetic takes its index.
    a = math.floor(a / window)
  end
  local allowed, remaining, reset, retry, state = algorithms[id](window, limit, kind, a, b, c, now, cost)
  if allowed == 0 and not shadow then
    enforced_allow = false
  end
  -- A fixed window's counter already in this window has its expiry: nothing to renew.
  local renew = not (id == 1 and kind == 1 and state and state[2] == a)
  checked[i] = {allowed, remaining, reset, retry, state, fields, window, limit, renew}
end
local answers = {}
for i = 1, #KEYS do
  local allowed, remaining, reset, retry, state, fields, window, limit, renew = unpack(checked[i], 1, 9)
  if enforced_allow and state and state[1] == 1 and not renew then
    redis.call('HSET', KEYS[i], 'n', string.format('%d', state[3]))
  elseif enforced_allow and state and state[1] == 1 then
    redis.call('HSET', KEYS[i], 's', string.format('%d', state[2] * window),
      'n', string.format('%d', state[3]))
  elseif enforced_allow and state then
    redis.call('HSET', KEYS[i], fields[1], string.format('%d', state[2]),
      fields[2], string.format('%d', state[3]), fields[3], string.format('%d', state[4]))
  end
  if enforced_allow and state and renew then
    local expiry = reset
    if state[1] == 3 then
      expiry = state[2] + reset - now
    elseif state[1] == 2 then
      expiry = (state[2] + 2) * window - now
    end
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl >= 0 and ttl >= expiry then
      expiry = ttl
    end
    redis.call('PEXPIRE', KEYS[i], math.max(expiry, 1))
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
