-- wrk script: every request checks a random user out of 1,000,000.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/check?user_id=user-" .. math.random(1, 1000000))
end
