-- wrk script: distinct user ids of ID_LEN bytes (environment; default 12), each of the
-- THREADS threads (default 2) cycling over its own share of KEYS ids (default 1000000),
-- so a run sends at most KEYS distinct ids, each again only after all the others.
local next_thread = 0
setup = function(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end
init = function(args)
  per_thread = math.floor(tonumber(os.getenv("KEYS") or "1000000") / tonumber(os.getenv("THREADS") or "2"))
  id_len = tonumber(os.getenv("ID_LEN") or "12")
  counter = 0
end
request = function()
  counter = (counter + 1) % per_thread
  local id = "t" .. tid .. "-" .. counter .. "-"
  id = id .. string.rep("x", math.max(0, id_len - #id))
  return wrk.format("GET", "/check?user_id=" .. id)
end
