-- POST /api/auth/local with requestRefresh: each thread cycles through its own users (file: one identifier per
-- line; every bench user has the same password, given after the prefix).
-- Usage: wrk ... -s bench/wrk/login.lua URL -- <identifier file prefix> <password>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local bodies = nil
local next_index = 1
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  bodies = {}
  for i, identifier in ipairs(read_lines(thread_file(args))) do
    bodies[i] = '{"identifier":"' .. identifier .. '","password":"' .. args[2] .. '","requestRefresh":true}'
  end
end

function request()
  if bodies == nil then
    return wrk.format("POST", nil, headers, "{}")
  end
  local body = bodies[next_index]
  next_index = next_index % #bodies + 1
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  count(status)
end
