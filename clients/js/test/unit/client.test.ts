import { afterEach, describe, expect, it } from "vitest";
import { type AuthEvent, type Client, type Tokens, createClient, RefreshdError } from "../../src/index.js";
import { FakeServer } from "./fake.js";

const BASE = "https://auth.example.com";
const API = "https://auth.example.com/api/users/me";
const open: Client[] = [];

/** Web Locks as a browser grants them: one holder at a time per name, in the order asked. */
function fakeLocks(): LockManager {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    request: (_name: string, callback: (lock: Lock | null) => unknown) => {
      const turn = tail.then(() => callback({ name: _name, mode: "exclusive" } as Lock));
      tail = turn.catch(() => undefined);
      return turn;
    },
  } as unknown as LockManager;
}

function client(server: FakeServer, extra: Record<string, unknown> = {}): Client {
  const made = createClient({ baseUrl: BASE, mode: "body", fetch: server.fetch, now: server.now, ...extra });
  open.push(made);
  return made;
}

function events(of: Client): AuthEvent[] {
  const seen: AuthEvent[] = [];
  of.onAuthChange((event) => seen.push(event));
  return seen;
}

/** Until `condition` holds, letting the event loop run (messages between tabs are asynchronous). */
async function until(condition: () => boolean): Promise<void> {
  for (let turn = 0; turn < 200 && !condition(); turn++) await new Promise((done) => setTimeout(done, 5));
  expect(condition()).toBe(true);
}

afterEach(() => {
  for (const made of open.splice(0)) made.close();
});

describe("one tab", () => {
  it("logs in, attaches the token, and refreshes only when the token is about to expire", async () => {
    const server = new FakeServer();
    const app = client(server);
    const seen = events(app);
    const { user } = await app.login("alice", "pw");
    expect(user.username).toBe("alice");
    expect(server.calls[0]!.body).toEqual({ identifier: "alice", password: "pw", requestRefresh: true });
    expect((await app.fetch(API)).status).toBe(200);
    expect(server.calls.at(-1)!.authorization).toMatch(/^Bearer /);
    server.clock += (900 - 240) * 1000; // 4 minutes left, more than the 30 s margin
    await app.fetch(API);
    expect(server.count("/api/auth/refresh")).toBe(0);
    server.clock += 220 * 1000; // 20 s left: due
    await app.fetch(API);
    expect(server.count("/api/auth/refresh")).toBe(1);
    expect(server.calls.find((c) => c.path === "/api/auth/refresh")!.body).toEqual({ refreshToken: "refresh-1" });
    expect(seen.map((e) => e.type)).toEqual(["signedIn", "refreshed"]);
  });

  it("shares one refresh between parallel calls", async () => {
    const server = new FakeServer();
    const app = client(server);
    await app.login("alice", "pw");
    server.clock += 900 * 1000;
    let open_: () => void = () => undefined;
    server.gate = new Promise((done) => (open_ = done));
    const calls = Array.from({ length: 10 }, () => app.fetch(API));
    await until(() => server.count("/api/auth/refresh") === 1);
    open_();
    const answers = await Promise.all(calls);
    expect(answers.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(server.count("/api/auth/refresh")).toBe(1);
    const tokens = new Set(server.calls.filter((c) => c.path === "/api/users/me").map((c) => c.authorization));
    expect(tokens.size).toBe(1);
  });

  it("retries once after a 401, with a fresh token", async () => {
    const server = new FakeServer();
    const app = client(server);
    await app.login("alice", "pw");
    const expired = new Response(
      JSON.stringify({ data: null, error: { status: 401, name: "UnauthorizedError", message: "x", details: {} } }),
      { status: 401 },
    );
    server.overrides.set("/api/users/me", [expired]);
    server.clock += 5000; // a refresh in the same second would mint the very same token
    const response = await app.fetch(API);
    expect(response.status).toBe(200);
    const tries = server.calls.filter((c) => c.path === "/api/users/me");
    expect(tries).toHaveLength(2);
    expect(tries[0]!.authorization).not.toBe(tries[1]!.authorization);
    expect(server.count("/api/auth/refresh")).toBe(1);
  });

  it("gives up after one retry, and never retries a request it sent without a token", async () => {
    const server = new FakeServer();
    const app = client(server);
    await app.login("alice", "pw");
    const no = () => new Response("{}", { status: 401 });
    server.overrides.set("/api/users/me", [no(), no(), no()]);
    server.clock += 5000;
    expect((await app.fetch(API)).status).toBe(401);
    expect(server.count("/api/users/me")).toBe(2);
    const anonymous = client(new FakeServer());
    const other = new FakeServer();
    other.overrides.set("/api/users/me", [no()]);
    expect((await client(other).fetch(API)).status).toBe(401); // passed on untouched
    expect(other.count("/api/users/me")).toBe(1);
    expect(await anonymous.getAccessToken()).toBeNull();
  });

  it("re-sends a Request's body on the retry", async () => {
    const server = new FakeServer();
    const app = client(server);
    await app.login("alice", "pw");
    server.overrides.set("/api/auth/sessions", [new Response("{}", { status: 401 })]);
    server.clock += 5000;
    const request = new Request(`${BASE}/api/auth/sessions`, { method: "POST", body: JSON.stringify({ a: 1 }) });
    await app.fetch(request);
    const sent = server.calls.filter((c) => c.path === "/api/auth/sessions");
    expect(sent.map((c) => c.body)).toEqual([{ a: 1 }, { a: 1 }]);
  });

  it("sends the token only to the API's origins", async () => {
    const server = new FakeServer();
    const app = client(server, { apiOrigins: [BASE, "https://api.example.com"] });
    await app.login("alice", "pw");
    await app.fetch("https://api.example.com/orders");
    await app.fetch("https://tracker.example.net/pixel");
    const [mine, theirs] = server.calls.slice(-2);
    expect(mine!.authorization).toMatch(/^Bearer /);
    expect(theirs!.authorization).toBeNull();
  });

  it("signs out when the session is over, and surfaces refreshd's errors as typed errors", async () => {
    const server = new FakeServer();
    const app = client(server);
    const seen = events(app);
    await app.login("alice", "pw");
    server.clock += 900 * 1000;
    server.revoked = "REFRESH_TOKEN_REUSED";
    expect((await app.fetch(API)).status).toBe(403); // sent without a token: signed out
    expect(seen.at(-1)).toEqual({ type: "signedOut", reason: "REFRESH_TOKEN_REUSED" });
    const error = await app.me().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RefreshdError);
    expect((error as RefreshdError).status).toBe(401);
  });

  it("keeps the session when a refresh fails for a reason that is not the session's", async () => {
    const server = new FakeServer();
    const app = client(server);
    const seen = events(app);
    await app.login("alice", "pw");
    server.clock += 900 * 1000;
    const limited = new Response(
      JSON.stringify({ data: null, error: { status: 429, name: "RateLimitError", message: "Too many", details: {} } }),
      { status: 429 },
    );
    server.overrides.set("/api/auth/refresh", [limited]);
    const error = (await app.getAccessToken().catch((caught: unknown) => caught)) as RefreshdError;
    expect([error.status, error.name]).toEqual([429, "RateLimitError"]);
    expect(await app.getAccessToken()).toMatch(/\./); // the next try works
    expect(seen.map((e) => e.type)).toEqual(["signedIn", "refreshed"]);
  });

  it("logs out, with the refresh token in body mode", async () => {
    const server = new FakeServer();
    const app = client(server);
    const seen = events(app);
    await app.login("alice", "pw");
    await app.logout();
    const logout = server.calls.find((c) => c.path === "/api/auth/logout")!;
    expect(logout.body).toEqual({ scope: "local", refreshToken: "refresh-1" });
    expect(await app.getAccessToken()).toBeNull();
    expect(seen.at(-1)).toEqual({ type: "signedOut", reason: "LOGOUT" });
  });

  it("keeps tokens only where told to", async () => {
    const server = new FakeServer();
    let kept: Tokens | null = null;
    const storage = { get: () => kept, set: (tokens: Tokens | null) => (kept = tokens) };
    const app = client(server, { storage });
    await app.login("alice", "pw");
    expect(kept!.refreshToken).toBe("refresh-1");
    const reloaded = client(server, { storage });
    expect(await reloaded.getAccessToken()).toBe(kept!.jwt);
    await reloaded.logout();
    expect(kept).toBeNull();
  });
});

describe("several tabs", () => {
  const tab = (server: FakeServer, locks: LockManager) => client(server, { crossTab: true, locks });

  it("refresh once for all of them, and every tab gets the new tokens", async () => {
    const server = new FakeServer();
    const locks = fakeLocks();
    const first = tab(server, locks);
    await first.login("alice", "pw");
    const others = [tab(server, locks), tab(server, locks), tab(server, locks)];
    for (const other of others) expect(await other.getAccessToken()).toBe(await first.getAccessToken());
    server.clock += 900 * 1000;
    const answers = await Promise.all([first, ...others].flatMap((t) => Array.from({ length: 5 }, () => t.fetch(API))));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    expect(server.count("/api/auth/refresh")).toBe(1);
    const tokens = await Promise.all([first, ...others].map((t) => t.getAccessToken()));
    expect(new Set(tokens).size).toBe(1);
  });

  /** Two tabs of one session: the first logged in, the second joined through it; the second's events. */
  async function twoTabs(server: FakeServer): Promise<[Client, AuthEvent[]]> {
    const locks = fakeLocks();
    const first = tab(server, locks);
    await first.login("alice", "pw");
    const second = tab(server, locks);
    await second.ready;
    expect(await second.getAccessToken()).toBe(await first.getAccessToken());
    return [first, events(second)];
  }

  it("sign out together", async () => {
    const server = new FakeServer();
    const [first, seen] = await twoTabs(server);
    await first.logout();
    await until(() => seen.length === 1);
    expect(seen).toEqual([{ type: "signedOut", reason: "LOGOUT" }]);
    await expect(open.at(-1)!.getAccessToken()).resolves.toBeNull(); // the second tab
  });

  it("a password change keeps the session's tabs signed in with the new tokens", async () => {
    const server = new FakeServer();
    const [first, seen] = await twoTabs(server);
    server.clock += 5000;
    await first.changePassword("pw", "new-pw");
    const change = server.calls.find((c) => c.path === "/api/auth/change-password")!;
    expect(change.body).toEqual({ currentPassword: "pw", password: "new-pw", passwordConfirmation: "new-pw" });
    expect(change.authorization).toMatch(/^Bearer /);
    await until(() => seen.length === 1);
    expect(seen).toEqual([{ type: "refreshed", reason: "PASSWORD_CHANGED" }]);
    await expect(open.at(-1)!.getAccessToken()).resolves.toBe(await first.getAccessToken());
  });

  it("without Web Locks, refresh each on their own, and nobody signs out", async () => {
    // Safari before 15.4: no lock to take turns with. Each tab refreshes; refreshd's reuse grace window gives racing
    // tabs the same successor (the stand-in here simply rotates again), and each announces what it got.
    const server = new FakeServer();
    const first = client(server, { crossTab: true });
    const seen = events(first);
    await first.login("alice", "pw");
    const second = client(server, { crossTab: true });
    await second.ready;
    server.clock += 900 * 1000;
    const answers = await Promise.all([first.fetch(API), second.fetch(API)]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    expect(server.count("/api/auth/refresh")).toBe(2);
    expect(seen.filter((e) => e.type === "signedOut")).toEqual([]);
    expect(await first.getAccessToken()).toBeTruthy();
    expect(await second.getAccessToken()).toBeTruthy();
  });

  it("all sign out when one learns the session was revoked", async () => {
    const server = new FakeServer();
    const [first, seen] = await twoTabs(server);
    server.clock += 900 * 1000;
    server.revoked = "REFRESH_TOKEN_REUSED";
    await first.fetch(API);
    await until(() => seen.length === 1);
    expect(seen).toEqual([{ type: "signedOut", reason: "REFRESH_TOKEN_REUSED" }]);
  });
});
