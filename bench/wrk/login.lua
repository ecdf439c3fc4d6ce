-- POST /api/auth/local with requestRefresh: each thread cycles through its own users (file: one identifier per
-- line; every bench user has the same password, given after the prefix).
-- Usage: wrk ... -s bench/wrk/login.lua URL -- <identifier file prefix> <password>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

post_each_line(function(identifier, args)
  return '{"identifier":"' .. identifier .. '","password":"' .. args[2] .. '","requestRefresh":true}'
end, "{}")
