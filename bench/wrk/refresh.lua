-- POST /api/auth/local/refresh with rotation OFF: each thread cycles through its own refresh tokens
-- (one session each), so the load spreads over many session rows, as real clients would.
-- Usage: wrk ... -s bench/wrk/refresh.lua URL -- <token file prefix>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local bodies = nil
local next_index = 1
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  bodies = {}
  for i, token in ipairs(read_lines(thread_file(args))) do
    bodies[i] = '{"refreshToken":"' .. token .. '"}'
  end
end

function request()
  -- wrk also calls request() once in its main state (no init there) to check the script.
  if bodies == nil then
    return wrk.format("POST", nil, headers, '{"refreshToken":"x"}')
  end
  local body = bodies[next_index]
  next_index = next_index % #bodies + 1
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  count(status)
end
