-- wrk script: each thread walks its own slice of the token file in a loop, so a run
-- longer than one pass mixes new loads (first pass) and repeats (later passes).
-- done() prints how many distinct tokens were requested, for the row check.
-- An optional third argument, SETTLE seconds (with the run's duration as the fourth), sends only
-- repeats (the thread's first token) in the run's last SETTLE seconds: the requests still in
-- flight when wrk stops are then repeats, and every new token requested was answered, so the row
-- check stays exact even when a run ends before its first pass over the tokens.
local tokens = {}
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n_threads = tonumber(args[2])
  local all = {}
  for line in io.lines(args[1]) do all[#all + 1] = line end
  for i = id + 1, #all, n_threads do tokens[#tokens + 1] = all[i] end
  requests_made = 0
  slice = #tokens
  local settle, duration = tonumber(args[3]), tonumber(args[4])
  if settle and duration then cutoff = os.time() + duration - settle end
end

function request()
  if cutoff and counter > 1 and os.time() >= cutoff then
    return wrk.format("GET", "/o/" .. tokens[1] .. ".gif", {["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"})
  end
  local token = tokens[((counter - 1) % #tokens) + 1]
  counter = counter + 1
  requests_made = counter - 1
  return wrk.format("GET", "/o/" .. token .. ".gif", {["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"})
end

function done(summary, latency, requests)
  local distinct = 0
  for _, t in ipairs(threads) do
    local made, size = t:get("requests_made"), t:get("slice")
    distinct = distinct + math.min(made, size)
  end
  io.write(string.format("DISTINCT %d\n", distinct))
  for _, p in ipairs({50, 99}) do
    io.write(string.format("P%d_US %d\n", p, latency:percentile(p)))
  end
end
