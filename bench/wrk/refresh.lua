-- POST /api/auth/local/refresh with rotation OFF: each thread cycles through its own refresh tokens
-- (one session each), so the load spreads over many session rows, as real clients would.
-- Usage: wrk ... -s bench/wrk/refresh.lua URL -- <token file prefix>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

post_each_line(function(token)
  return '{"refreshToken":"' .. token .. '"}'
end, '{"refreshToken":"x"}')
