/**
 * The global setup of the browser tests: two refreshd servers (cookie mode and body mode, rotation on, access
 * tokens living 3 s, a 1 s reuse grace), started from this repository as the README starts them, on SQLite files
 * migrated with `refreshd migrate`; and a static server for the pages, on two ports: the frontend's origin,
 * `http://127.0.0.1:<page>` (allowed by both servers), and another one, `http://<host>:<other>`.
 *
 * Python is the repository's own (`.venv/bin/python` after `make setup`), or `REFRESHD_PYTHON`.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";
import type { TestProject } from "vitest/node";

export const ROOT = resolve(import.meta.dirname, "../../../..");
const PYTHON = process.env.REFRESHD_PYTHON ?? join(ROOT, ".venv/bin/python");
const SERVED = ["/clients/js/dist/", "/examples/browser/", "/clients/js/test/browser/pages/"];
const TYPES: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json", ".css": "text/css" };

export interface BrowserEnv {
  cookieApi: string;
  bodyApi: string;
  page: string; // the frontend's origin
  otherSite: string; // another site (the browser does not send the cookie there)
  sameSiteOther: string; // another origin on the same site (the cookie goes; refreshd's Origin check refuses)
  artifacts: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    env: BrowserEnv;
  }
}

function listen(server: Server): Promise<number> {
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done((server.address() as AddressInfo).port)));
}

async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await new Promise((done) => server.close(done));
  return port;
}

function staticServer(): Server {
  return createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname));
    const file = join(ROOT, path);
    if (!SERVED.some((prefix) => path.startsWith(prefix)) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Cache-Control": "no-store" });
    createReadStream(file).pipe(response);
  });
}

async function ready(url: string, process_: ChildProcess, log: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (process_.exitCode !== null) throw new Error(`refreshd exited:\n${readFileSync(log, "utf8")}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((done) => setTimeout(done, 100)); // polling for readiness
  }
  throw new Error(`refreshd not ready at ${url}:\n${readFileSync(log, "utf8")}`);
}

async function refreshd(dir: string, name: string, env: Record<string, string>): Promise<[string, ChildProcess]> {
  const port = await freePort();
  const full = {
    ...process.env,
    ENVIRONMENT: "test",
    DATABASE_URL: `sqlite+aiosqlite:///${join(dir, `${name}.db`)}`,
    JWT_SECRET: randomBytes(36).toString("base64url"),
    REFRESH_JWT_SECRET: randomBytes(36).toString("base64url"),
    JWT_EXPIRES_IN: "3s",
    REFRESH_TOKEN_REUSE_GRACE: "1s",
    RATE_LIMIT_ENABLED: "false",
    LOGIN_FAILURE_FLOOR_MS: "0",
    LOG_LEVEL: "WARNING",
    ...env,
  };
  execFileSync(PYTHON, ["-m", "app.cli", "migrate"], { cwd: ROOT, env: full, stdio: "pipe" });
  const log = join(dir, `${name}.log`);
  const out = openSync(log, "w");
  const server = spawn(
    PYTHON,
    ["-m", "uvicorn", "--factory", "app.main:create_app", "--host", "127.0.0.1", "--port", String(port), "--no-access-log", "--loop", "asyncio"],
    { cwd: ROOT, env: full, stdio: ["ignore", out, out] },
  );
  const url = `http://127.0.0.1:${port}`;
  await ready(url, server, log);
  return [url, server];
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (!existsSync(PYTHON)) throw new Error(`no Python at ${PYTHON}: run \`make setup\` first, or set REFRESHD_PYTHON`);
  const dir = mkdtempSync(join(tmpdir(), "refreshd-browser-"));
  const pages = staticServer();
  const others = staticServer();
  const pagePort = await listen(pages);
  const otherPort = await listen(others);
  const sameSite = staticServer();
  const sameSitePort = await listen(sameSite);
  const page = `http://127.0.0.1:${pagePort}`;
  const [cookieApi, cookieServer] = await refreshd(dir, "cookie", { COOKIE_RESPONSE: "true", PRODUCTION_URL: page });
  const [bodyApi, bodyServer] = await refreshd(dir, "body", { CORS_ORIGINS: page });
  const artifacts = join(ROOT, "artifacts", "browser");
  project.provide("env", {
    cookieApi,
    bodyApi,
    page,
    otherSite: `http://localhost:${otherPort}`,
    sameSiteOther: `http://127.0.0.1:${sameSitePort}`,
    artifacts,
  });
  return async () => {
    for (const server of [cookieServer, bodyServer]) server.kill("SIGTERM");
    for (const server of [pages, others, sameSite]) server.close();
    rmSync(dir, { recursive: true, force: true });
  };
}
