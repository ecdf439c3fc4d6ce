-- POST /api/auth/local/refresh with rotation ON: token chains, each used by one request at a time.
--
-- wrk does not tell request()/response() which connection they serve, so each thread keeps a FIFO queue of the
-- current tokens of its chains (at least one per connection of the thread). request() takes the oldest token off
-- the queue; response() parses the successor out of the 200 body and queues it. A token is therefore presented
-- exactly once, by one connection, and its successor continues the chain on whichever connection is free next:
-- the server sees N independent clients each following its own chain, never a replay. A chain whose response is
-- lost (error, timeout) ends; "starved" counts requests that found the queue empty (sent with a dead token,
-- answered 401 and so counted as non-2xx), "missing" 200s without a refreshToken.
-- Usage: wrk ... -s bench/wrk/chain.lua URL -- <token file prefix>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local queue = nil
local head, tail = 1, 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  queue = {}
  for _, token in ipairs(read_lines(thread_file(args))) do
    tail = tail + 1
    queue[tail] = token
  end
end

function request()
  if queue == nil or head > tail then
    if queue ~= nil then
      starved = starved + 1
    end
    return wrk.format("POST", nil, headers, '{"refreshToken":"x"}')
  end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", nil, headers, '{"refreshToken":"' .. token .. '"}')
end

function response(status, headers, body)
  count(status)
  if status == 200 then
    local token = body:match('"refreshToken"%s*:%s*"([^"]+)"')
    if token then
      tail = tail + 1
      queue[tail] = token
    else
      missing = missing + 1
    end
  end
end
