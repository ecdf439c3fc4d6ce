-- Shared by the scenario scripts (loaded with dofile). wrk runs one Lua state per thread plus a main one:
-- setup() and done() run in the main state, init()/request()/response() in each thread's own state.
-- setup() numbers the threads, so each thread's init() reads its own token file: "<prefix>-<n>.txt".

local threads = {}
local thread_count = 0

-- Per-thread counters, read back by done() through thread:get().
n2xx, n4xx, n5xx, nother, starved, missing = 0, 0, 0, 0, 0, 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

function read_lines(path)
  local lines = {}
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    if line ~= "" then
      table.insert(lines, line)
    end
  end
  file:close()
  return lines
end

function thread_file(args)
  -- args[0] is the URL; args[1] the prefix given after "--".
  return args[1] .. "-" .. thread_id .. ".txt"
end

function count(status)
  if status >= 200 and status < 300 then
    n2xx = n2xx + 1
  elseif status >= 400 and status < 500 then
    n4xx = n4xx + 1
  elseif status >= 500 then
    n5xx = n5xx + 1
  else
    nother = nother + 1
  end
end

-- A POST load over the thread's file: make(line, args) turns each line into a JSON body, and the bodies are
-- sent in turn. wrk also calls request() once in its main state (no init() there) to check the script: it then
-- sends placeholder. Defines the script's init(), request() and response().
function post_each_line(make, placeholder)
  local bodies = nil
  local next_index = 1
  local headers = { ["Content-Type"] = "application/json" }

  function init(args)
    bodies = {}
    for i, line in ipairs(read_lines(thread_file(args))) do
      bodies[i] = make(line, args)
    end
  end

  function request()
    if bodies == nil then
      return wrk.format("POST", nil, headers, placeholder)
    end
    local body = bodies[next_index]
    next_index = next_index % #bodies + 1
    return wrk.format("POST", nil, headers, body)
  end

  function response(status, headers, body)
    count(status)
  end
end

local function total(name)
  local sum = 0
  for _, thread in ipairs(threads) do
    sum = sum + (thread:get(name) or 0)
  end
  return sum
end

-- One machine-readable line for bench/run.py (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"n2xx":%d,"n4xx":%d,"n5xx":%d,"nother":%d,"starved":%d,"missing":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, total("n2xx"), total("n4xx"), total("n5xx"), total("nother"),
    total("starved"), total("missing")))
end
