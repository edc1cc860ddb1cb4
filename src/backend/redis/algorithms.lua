-- ringlimit: the three algorithms, the same integer arithmetic as the crate's `algorithm`
-- module, line for line. Every number stays below 2^53, so Lua's doubles hold it exactly,
-- and a quotient of two such numbers, rounded down, is exact too.
-- Each function takes the policy (window in ms, limit), the key's state (kind, a, b, c:
-- kind 0 none, 1 fixed {window, used}, 2 sliding {window, current, previous}, 3 GCRA
-- {at ms, level}), the time in ms and the cost; it returns allowed (1 or 0), remaining,
-- reset ms, retry ms (-1: never) and, when allowed, the state to store.

local function idiv(a, b)
  return math.floor(a / b)
end

local function ceil_div(a, b)
  local q = idiv(a, b)
  if q * b < a then
    return q + 1
  end
  return q
end

local function fixed(window_ms, limit, kind, a, b, _, now, cost)
  if kind == 1 then
    now = math.max(now, a * window_ms)
  end
  local window = idiv(now, window_ms)
  local used = 0
  if kind == 1 and a == window then
    used = b
  end
  local reset = (window + 1) * window_ms - now
  if used + cost <= limit then
    return 1, limit - used - cost, reset, 0, {1, window, used + cost, 0}
  end
  local retry = -1
  if cost <= limit then
    retry = reset
  end
  return 0, limit - math.min(used, limit), reset, retry, nil
end

local WHOLE = 1000000

local function estimate(window_ms, current, previous, into)
  local overlap = idiv((window_ms - into) * WHOLE, window_ms)
  return idiv(previous * overlap, WHOLE) + current
end

-- The first ms of a window with these counts at which `need` more units fit (the
-- closed form of the crate's `first_fit`); nil if none does.
local function first_fit(window_ms, limit, current, previous, need)
  local room = limit - current - need
  if room < 0 then
    return nil
  end
  if previous == 0 then
    return 0
  end
  local k = ceil_div((room + 1) * WHOLE, previous)
  if k > WHOLE then
    return 0
  end
  local at = idiv((WHOLE - k) * window_ms, WHOLE) + 1
  if at < window_ms then
    return at
  end
  return nil
end

local function wait_until_fits(window_ms, limit, current, previous, into, need)
  if need > limit then
    return -1
  end
  local at = first_fit(window_ms, limit, current, previous, need)
  if at then
    return math.max(at, into) - into
  end
  local left = window_ms - into
  at = first_fit(window_ms, limit, 0, current, need)
  if at then
    return left + at
  end
  return left + window_ms
end

local function sliding(window_ms, limit, kind, a, b, c, now, cost)
  if kind == 2 then
    now = math.max(now, a * window_ms)
  end
  local window = idiv(now, window_ms)
  local into = now - window * window_ms
  local current, previous = 0, 0
  if kind == 2 and a == window then
    current, previous = b, c
  elseif kind == 2 and a + 1 == window then
    previous = b
  end
  local used = estimate(window_ms, current, previous, into)
  if used + cost <= limit then
    local reset = wait_until_fits(window_ms, limit, current + cost, previous, into, limit)
    return 1, limit - used - cost, reset, 0, {2, window, current + cost, previous}
  end
  local reset = wait_until_fits(window_ms, limit, current, previous, into, limit)
  local retry = wait_until_fits(window_ms, limit, current, previous, into, cost)
  return 0, math.max(limit - used, 0), reset, retry, nil
end

local function gcra(window_ms, limit, kind, a, b, _, now, cost)
  local depth = limit * window_ms
  local at, level = now, 0
  if kind == 3 then
    at, level = a, b
  end
  if at > now then
    now = at
  end
  local elapsed = now - at
  if elapsed >= window_ms then
    level = 0
  else
    level = math.min(math.max(level - elapsed * limit, 0), depth)
  end
  if cost <= limit and level + cost * window_ms <= depth then
    level = level + cost * window_ms
    return 1, idiv(depth - level, window_ms), ceil_div(level, limit), 0, {3, now, level, 0}
  end
  local retry = -1
  if cost <= limit then
    retry = ceil_div(cost * window_ms - (depth - level), limit)
  end
  return 0, idiv(depth - level, window_ms), ceil_div(level, limit), retry, nil
end

local algorithms = {fixed, sliding, gcra}
