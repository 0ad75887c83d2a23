-- wrk script for bench/soak.py: a steady request rate (Debian's wrk 4.1 has no -R) and a
-- steady mix of new and repeat pixel loads for the whole run.
--
-- args: <tokens file> <threads> <connections> <target loads/s for all threads> <share of new loads, 0..1>
--
-- Rate: wrk calls delay() before every request of a connection. Each thread starts with
-- the pause that gives its share of the target rate (connections / rate) and, once per
-- second, scales it by measured / target, so the rate stays at the target whatever the
-- latency is (a closed loop per connection, paced: latency is measured from send to answer).
-- Mix: each request is a new token (the thread's next unused one) with probability `new`,
-- else a repeat of a random token this thread already loaded. done() prints the distinct
-- tokens requested (for the row check) and the latency percentiles.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n_threads = tonumber(args[2])
  local all = {}
  for line in io.lines(args[1]) do all[#all + 1] = line end
  tokens = {}
  for i = id + 1, #all, n_threads do tokens[#tokens + 1] = all[i] end
  per_thread_connections = tonumber(args[3]) / n_threads
  target = tonumber(args[4]) / n_threads -- this thread's loads per second
  new_share = tonumber(args[5])
  fresh = 1 -- next unused token; tokens[1 .. fresh - 1] were requested
  used = 0
  made = 0
  pause = nil -- ms between a connection's requests; set on the first delay() call
  second, made_at_second, ticks = os.time(), 0, 0
  math.randomseed(os.time() + id * 7919)
end

function delay()
  if pause == nil then
    pause = per_thread_connections * 1000 / target
  end
  local now = os.time()
  if now ~= second then
    ticks = ticks + 1
    local measured = (made - made_at_second) / (now - second)
    if ticks > 1 and measured > 0 then -- the first second is partial: not a measurement
      local factor = measured / target
      if factor > 1.4 then factor = 1.4 elseif factor < 0.7 then factor = 0.7 end
      pause = pause * factor
    end
    second, made_at_second = now, made
  end
  local base = math.floor(pause)
  if math.random() < pause - base then base = base + 1 end
  return base
end

function request()
  local token
  if fresh <= #tokens and (fresh == 1 or math.random() < new_share) then
    token = tokens[fresh]
    fresh = fresh + 1
    used = fresh - 1
  else
    token = tokens[math.random(1, fresh - 1)]
  end
  made = made + 1
  return wrk.format("GET", "/o/" .. token .. ".gif", {["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"})
end

function done(summary, latency, requests)
  local distinct = 0
  for _, t in ipairs(threads) do distinct = distinct + t:get("used") end
  io.write(string.format("DISTINCT %d\n", distinct))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("P%s_US %d\n", tostring(p), latency:percentile(p)))
  end
  io.write(string.format("MAX_US %d\n", latency.max))
end
