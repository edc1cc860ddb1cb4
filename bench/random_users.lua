-- wrk script: every request checks one of 10,000 users, picked at random.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/check?user_id=user-" .. math.random(1, 10000))
end
