/**
 * @refreshd/client in real tabs of Debian's Chromium (playwright-core), against real refreshd servers (see
 * servers.ts): access tokens live 3 s, rotation is on, the reuse grace is 1 s. Waiting for a token to expire is
 * waiting for the servers' real clock: the tests poll for the moment, they never sleep a fixed time.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const env = inject("env");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PASSWORD = "Browser-pass-123";
const TABS = 4;
const CALLS = 5;
const ROUNDS = 20;

let browser: Browser;
let users = 0;

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

afterAll(async () => {
  await browser?.close();
});

type Mode = "cookie" | "body";
const apiOf = (mode: Mode) => (mode === "cookie" ? env.cookieApi : env.bodyApi);

/** A new account on the server (registered from outside the browser). */
async function account(api: string): Promise<string> {
  const username = `tab-user-${++users}-${Date.now()}`;
  const response = await fetch(`${api}/api/auth/local/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, email: `${username}@example.com`, password: PASSWORD }),
  });
  expect(response.status).toBe(200);
  return username;
}

async function openTab(context: BrowserContext, mode: Mode): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${env.page}/clients/js/test/browser/pages/tab.html?api=${encodeURIComponent(apiOf(mode))}&mode=${mode}`);
  await page.waitForFunction(() => (window as any).tab !== undefined);
  await page.evaluate(() => (window as any).tab.ready);
  return page;
}

/** `tabs` tabs of one origin, the first logged in, the others joined through it. */
async function signedInTabs(mode: Mode, tabs = TABS): Promise<[BrowserContext, Page[]]> {
  const context = await browser.newContext();
  const username = await account(apiOf(mode));
  const first = await openTab(context, mode);
  await first.evaluate(([user, password]) => (window as any).tab.client.login(user, password), [username, PASSWORD]);
  const pages = [first];
  for (let i = 1; i < tabs; i++) pages.push(await openTab(context, mode));
  for (const page of pages) expect(await page.evaluate(() => (window as any).tab.client.getAccessToken())).toBeTruthy();
  return [context, pages];
}

/** Requests refreshd counted for a route, by status (its /metrics). */
async function counted(api: string, route: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const match = line.match(/^refreshd_http_requests_total\{(.*)\} ([0-9.e+]+)$/);
    if (!match || !match[1]!.includes(`route="${route}"`)) continue;
    const status = match[1]!.match(/status="(\d+)"/)![1]!;
    counts[status] = (counts[status] ?? 0) + Number(match[2]);
  }
  return counts;
}

const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/** Until the server's clock reaches `ms` (same machine, same clock). */
async function until(ms: number): Promise<void> {
  while (Date.now() < ms) await new Promise((done) => setTimeout(done, Math.min(25, ms - Date.now())));
}

const events = (page: Page) => page.evaluate(() => (window as any).tab.events as { type: string; reason?: string }[]);

describe.each(["cookie", "body"] as const)("%s mode", (mode) => {
  it(`${TABS} tabs calling at the moment the token expires refresh once, for ${ROUNDS} rounds`, async () => {
    const api = apiOf(mode);
    const [context, pages] = await signedInTabs(mode);
    for (let round = 1; round <= ROUNDS; round++) {
      await until(await pages[0]!.evaluate(() => (window as any).tab.expiry()));
      const before = await counted(api, "/api/auth/refresh");
      const statuses = await Promise.all(pages.map((page) => page.evaluate((n) => (window as any).tab.calls(n), CALLS)));
      const after = await counted(api, "/api/auth/refresh");
      expect(statuses.flat(), `round ${round}`).toEqual(Array(TABS * CALLS).fill(200));
      expect(total(after) - total(before), `refreshes in round ${round}`).toBe(1);
      expect((after["200"] ?? 0) - (before["200"] ?? 0)).toBe(1);
    }
    for (const page of pages) expect((await events(page)).filter((e) => e.type === "signedOut")).toEqual([]);
    await context.close();
  });

  it("logout in one tab signs the others out within a second", async () => {
    const [context, pages] = await signedInTabs(mode);
    await pages[0]!.evaluate(() => (window as any).tab.client.logout());
    const started = Date.now();
    for (const page of pages.slice(1)) {
      await page.waitForFunction(
        () => (window as any).tab.events.some((e: any) => e.type === "signedOut" && e.reason === "LOGOUT"),
        null,
        { timeout: 1000 },
      );
      expect(await page.evaluate(() => (window as any).tab.client.getAccessToken())).toBeNull();
    }
    expect(Date.now() - started).toBeLessThan(1000);
    await context.close();
  });
});

describe("cookie mode only", () => {
  it("a reload keeps the session", async () => {
    const [context, [page]] = await signedInTabs("cookie", 1);
    await page!.reload();
    await page!.evaluate(() => (window as any).tab.ready);
    const me = await page!.evaluate(() => (window as any).tab.client.me());
    expect(me.username).toMatch(/^tab-user-/);
    expect(await events(page!)).toEqual([{ type: "refreshed" }]); // restored with the HttpOnly cookie
    await context.close();
  });

  it("a page on another origin can neither refresh nor log out with the cookie", async () => {
    const api = env.cookieApi;
    const [context, [tab]] = await signedInTabs("cookie", 1);
    const refreshes = await counted(api, "/api/auth/refresh");
    const logouts = await counted(api, "/api/auth/logout");
    for (const origin of [env.otherSite, env.sameSiteOther]) {
      const stranger = await context.newPage();
      await stranger.goto(`${origin}/clients/js/test/browser/pages/raw.html`);
      const outcomes = await stranger.evaluate(async (url) => {
        const attempt = (path: string) =>
          fetch(url + path, { method: "POST", credentials: "include" }).then(
            (response) => `read ${response.status}`,
            () => "blocked",
          );
        return [await attempt("/api/auth/refresh"), await attempt("/api/auth/logout")];
      }, api);
      expect(outcomes, origin).toEqual(["blocked", "blocked"]); // CORS: nothing readable
      await stranger.close();
    }
    // What reached the server was refused: no new token, no logout.
    const refreshed = await counted(api, "/api/auth/refresh");
    expect((refreshed["200"] ?? 0) - (refreshes["200"] ?? 0)).toBe(0);
    expect(refreshed["403"] ?? 0).toBeGreaterThan(refreshes["403"] ?? 0); // same site: the Origin check said no
    expect(((await counted(api, "/api/auth/logout"))["200"] ?? 0) - (logouts["200"] ?? 0)).toBe(0);
    expect((await tab!.evaluate(() => (window as any).tab.client.me())).username).toMatch(/^tab-user-/);
    expect((await events(tab!)).map((e) => e.type)).toEqual(["signedIn"]); // its own login, nothing since
    await context.close();
  });

  it("a stolen refresh token replayed after the grace window signs every tab out, saying why", async () => {
    const api = env.cookieApi;
    const [context, pages] = await signedInTabs("cookie");
    const jar = async () => (await context.cookies(`${api}/api/auth/refresh`)).find((c) => c.name === "refreshToken");
    const stolen = (await jar())!.value;
    // The app refreshes (rotation: the stolen token is replaced), then the thief waits out the grace window.
    await until(await pages[0]!.evaluate(() => (window as any).tab.expiry()));
    expect(await pages[0]!.evaluate(() => (window as any).tab.calls(1))).toEqual([200]);
    const replacedAt = Date.now();
    expect((await jar())!.value).not.toBe(stolen);
    await until(replacedAt + 1500);
    const replay = await fetch(`${api}/api/auth/refresh`, { method: "POST", headers: { Cookie: `refreshToken=${stolen}` } });
    expect(replay.status).toBe(401);
    expect((await replay.json()).error.details.code).toBe("REFRESH_TOKEN_REUSED");
    // The next call of any tab finds the session ended (its refresh is refused, or its access token) and is
    // refused in turn; every tab signs out with the reason.
    const [status] = await pages[2]!.evaluate(() => (window as any).tab.calls(1));
    expect([401, 403]).toContain(status);
    for (const page of pages) {
      await page.waitForFunction(() => (window as any).tab.events.some((e: any) => e.type === "signedOut"), null, {
        timeout: 1000,
      });
      expect((await events(page)).filter((e) => e.type === "signedOut")).toEqual([
        { type: "signedOut", reason: "REFRESH_TOKEN_REUSED" },
      ]);
    }
    await context.close();
  });
});

describe("the example page", () => {
  it("logs in, lists the sessions, logs out (screenshot in artifacts/browser)", async () => {
    const api = env.cookieApi;
    const username = await account(api);
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const page = await context.newPage();
    await page.goto(`${env.page}/examples/browser/index.html?api=${encodeURIComponent(api)}`);
    await page.fill("#identifier", username);
    await page.fill("#password", PASSWORD);
    await page.click("#login");
    await page.waitForSelector("#sessions tr.current");
    expect(await page.textContent("#who")).toContain(username);
    mkdirSync(env.artifacts, { recursive: true });
    await page.screenshot({ path: join(env.artifacts, "example-signed-in.png"), fullPage: true });
    await page.click("#logout");
    await page.waitForSelector("#login-form:not([hidden])");
    expect(await page.textContent("#log")).toContain("signedOut LOGOUT");
    await context.close();
  });
});
