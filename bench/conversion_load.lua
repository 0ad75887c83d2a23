-- wrk script: POST /e, each thread walking its own slice of the attribution-token file in a
-- loop; every post carries an order id of its own (thread id and counter), so every accepted
-- post is one new conversion (the row check). args: token file, threads, origin, round.
local tokens = {}
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n_threads = tonumber(args[2])
  origin = args[3]
  round = args[4]  -- in the order ids: a later round's posts are new orders too, not repeats
  local all = {}
  for line in io.lines(args[1]) do all[#all + 1] = line end
  for i = id + 1, #all, n_threads do tokens[#tokens + 1] = all[i] end
  requests_made = 0
  slice = #tokens
end

function request()
  local token = tokens[((counter - 1) % #tokens) + 1]
  local body = string.format(
    '{"pt":"%s","name":"purchase","value":"42.50","currency":"EUR","id":"o-%s-%d-%d"}', token, round, id, counter)
  counter = counter + 1
  requests_made = counter - 1
  return wrk.format("POST", "/e", {["Content-Type"] = "text/plain;charset=UTF-8", ["Origin"] = origin,
    ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}, body)
end

function done(summary, latency, requests)
  local distinct = 0
  for _, t in ipairs(threads) do
    local made, size = t:get("requests_made"), t:get("slice")
    distinct = distinct + math.min(made, size)
  end
  io.write(string.format("DISTINCT %d\n", distinct))
  local made = 0  -- requests built, answered or not (wrk stops with some in flight: the server may store them)
  for _, t in ipairs(threads) do made = made + t:get("requests_made") end
  io.write(string.format("MADE %d\n", made))
  for _, p in ipairs({50, 99}) do
    io.write(string.format("P%d_US %d\n", p, latency:percentile(p)))
  end
end
