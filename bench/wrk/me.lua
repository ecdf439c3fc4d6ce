-- GET /api/users/me: each thread cycles through its own access tokens (one session each).
-- Usage: wrk ... -s bench/wrk/me.lua URL -- <token file prefix>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local auth = nil
local next_index = 1

function init(args)
  auth = {}
  for i, token in ipairs(read_lines(thread_file(args))) do
    auth[i] = { ["Authorization"] = "Bearer " .. token }
  end
end

function request()
  if auth == nil then
    return wrk.format("GET", nil, nil, nil)
  end
  local headers = auth[next_index]
  next_index = next_index % #auth + 1
  return wrk.format("GET", nil, headers, nil)
end

function response(status, headers, body)
  count(status)
end
