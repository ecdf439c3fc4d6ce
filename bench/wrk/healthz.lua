-- GET /healthz: the cheapest route, for the load generator's own ceiling on this machine.
-- Usage: wrk ... -s bench/wrk/healthz.lua URL
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

function response(status, headers, body)
  count(status)
end
