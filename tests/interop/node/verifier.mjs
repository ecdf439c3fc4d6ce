// A long-running verifier of refreshd's access tokens with Node's jose, driven by tests/interop/verifiers.py.
//
//   node verifier.mjs <jwks_url> <alg> [cacheMaxAgeMs] [cooldownMs]
//
// One createRemoteJWKSet for the process's whole life, so its cache and cooldown carry over between requests.
// Reads one JSON request per line on stdin, writes one JSON line per request on stdout:
//   {"op":"verify","token":"..."}  -> {"ok":true,"kid":...,"payload":{...}} | {"ok":false,"error":"ERR_..."}
//   {"op":"advance","seconds":N}   -> {"ok":true}       (moves the clock jose sees; nothing sleeps)
//   {"op":"fetches"}               -> {"ok":true,"fetches":N}  (requests made for the JWK Set so far)
// Any failure is an {"ok":false,...} line, never a crash. Exits 0 at the end of stdin.
import { createInterface } from "node:readline";
import { createRemoteJWKSet, customFetch, jwtVerify } from "jose";

// The injected clock. jose reads Date.now() for the JWK Set's age (cacheMaxAge) and cooldown. Its claim checks
// (exp, nbf) read `new Date()`, which ignores Date.now, so verify passes `currentDate` from the same clock.
const realNow = Date.now.bind(Date);
let offsetMs = 0;
Date.now = () => realNow() + offsetMs;

function write(message) {
  // On Linux, writes to a pipe are synchronous in Node: each line is out before the next request is read.
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function errorCode(err) {
  if (err && typeof err === "object") {
    if (typeof err.code === "string") return err.code;
    if (typeof err.name === "string") return err.name;
  }
  return String(err);
}

const [jwksUrl, alg, cacheMaxAgeArg, cooldownArg] = process.argv.slice(2);
if (!jwksUrl || !alg) {
  process.stderr.write("usage: node verifier.mjs <jwks_url> <alg> [cacheMaxAgeMs] [cooldownMs]\n");
  process.exit(2);
}
const options = {};
if (cacheMaxAgeArg !== undefined) options.cacheMaxAge = Number(cacheMaxAgeArg);
if (cooldownArg !== undefined) options.cooldownDuration = Number(cooldownArg);

// Counts the JWK Set requests through jose's own fetch hook (customFetch), which it calls for every reload.
const url = new URL(jwksUrl);
let fetches = 0;
options[customFetch] = (input, init) => {
  fetches += 1;
  return fetch(input, init);
};
const jwks = createRemoteJWKSet(url, options);

async function handle(request) {
  switch (request.op) {
    case "verify": {
      const { payload, protectedHeader } = await jwtVerify(request.token, jwks, {
        algorithms: [alg],
        currentDate: new Date(Date.now()),
      });
      return { ok: true, kid: protectedHeader.kid ?? null, payload };
    }
    case "advance": {
      const seconds = Number(request.seconds);
      if (!Number.isFinite(seconds) || seconds < 0) throw new TypeError("advance: seconds must be >= 0");
      offsetMs += seconds * 1000;
      return { ok: true };
    }
    case "fetches":
      return { ok: true, fetches };
    default:
      throw new TypeError(`unknown op: ${JSON.stringify(request.op)}`);
  }
}

// Every request's failure is answered on its own line below; anything escaping that is reported on stderr (a line
// on stdout would answer no request and put the replies out of step) and the process carries on.
process.on("uncaughtException", (err) => process.stderr.write(`uncaught: ${err?.stack ?? err}\n`));
process.on("unhandledRejection", (err) => process.stderr.write(`unhandled rejection: ${err?.stack ?? err}\n`));

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.trim()) continue;
  try {
    write(await handle(JSON.parse(line)));
  } catch (err) {
    write({ ok: false, error: errorCode(err), message: err instanceof Error ? err.message : String(err) });
  }
}
process.exit(0);
