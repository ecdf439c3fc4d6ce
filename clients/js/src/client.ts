import { RefreshdError, SESSION_OVER, errorOf } from "./errors.js";
import { type TokenInfo, refreshDue, tokenInfo } from "./token.js";

export type Mode = "cookie" | "body";

/** The tokens body mode keeps: the access token and, once logged in with one, the refresh token. */
export interface Tokens {
  jwt: string;
  refreshToken?: string | undefined;
}

/** Where body mode keeps its tokens. The default keeps them in memory only: a reload asks the other tabs. */
export interface TokenStorage {
  get(): Tokens | null;
  set(tokens: Tokens | null): void;
}

export interface ClientOptions {
  /** refreshd's URL, e.g. `https://auth.example.com`. */
  baseUrl: string;
  /** `cookie` (recommended: the refresh token stays in an HttpOnly cookie) or `body`. Default `cookie`. */
  mode?: Mode;
  /** Body mode only: where tokens are kept (see `webStorage`). Default: memory. */
  storage?: TokenStorage;
  /** Origins `client.fetch` may send the access token to. Default: refreshd's and the page's own. */
  apiOrigins?: string[];
  /** Share refreshes and sign-outs with the other tabs of this origin. Default: in a browser. */
  crossTab?: boolean;
  /** The fetch to use (a cookie-aware one for cookie mode outside a browser). Default: the global fetch. */
  fetch?: typeof fetch;
  /** The clock, in ms (tests). */
  now?: () => number;
  /** The Web Locks to take turns with (tests). Default: the browser's, with `crossTab`. */
  locks?: LockManager;
}

export interface AuthEvent {
  type: "signedIn" | "refreshed" | "signedOut";
  /** Why: `LOGOUT`, `PASSWORD_CHANGED`, or the refusal's code (`REFRESH_TOKEN_REUSED`, ...). */
  reason?: string | undefined;
}

export type User = Record<string, unknown> & { id: number; username: string; email: string };
export interface Session {
  id: string;
  deviceId?: string;
  deviceName: string;
  ip: string | null;
  current: boolean;
  loginAt: string;
  lastActiveAt: string;
}
export interface SignedIn {
  jwt?: string;
  user: User;
}

/** What tabs tell each other: new tokens (`t`), a sign-out (`o`), or a new tab asking for the tokens (`h`). */
type Message =
  | { k: "t"; jwt: string; rt?: string | undefined; why?: string | undefined }
  | { k: "o"; why: string }
  | { k: "h" };

const PASSWORD_CHANGED = "PASSWORD_CHANGED";
/** How long a tab that refreshed keeps the lock after announcing the result (ms): far longer than a message takes
 * between tabs, far shorter than anyone waits for (its own callers have their token already). */
const HOLD = 100;

/** A Web Storage (`localStorage`, `sessionStorage`) as token storage, for body mode apps that accept the risk:
 * any script on the page can read it. */
export function webStorage(store: Storage, key = "refreshd"): TokenStorage {
  return {
    get: () => {
      try {
        return JSON.parse(store.getItem(key) ?? "null") as Tokens | null;
      } catch {
        return null;
      }
    },
    set: (tokens) => (tokens ? store.setItem(key, JSON.stringify(tokens)) : store.removeItem(key)),
  };
}

export type Client = ReturnType<typeof createClient>;

export function createClient(options: ClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");
  const cookie = (options.mode ?? "cookie") === "cookie";
  const send = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const now = options.now ?? Date.now;
  const storage = cookie ? undefined : options.storage;
  const page = typeof location === "object" ? location.origin : undefined;
  const origins = new Set(options.apiOrigins ?? [new URL(base).origin, ...(page ? [page] : [])]);
  const crossTab = options.crossTab ?? typeof window === "object";
  const name = `refreshd:${base}`;
  const channel = crossTab && typeof BroadcastChannel === "function" ? new BroadcastChannel(name) : undefined;
  const locks = options.locks ?? (crossTab ? (globalThis.navigator as Navigator | undefined)?.locks : undefined);
  const listeners = new Set<(event: AuthEvent) => void>();

  let jwt: string | null = null;
  let refreshToken: string | undefined;
  let info: TokenInfo | null = null;
  let version = 0; // counts every change of tokens, here or from another tab
  let inflight: Promise<string | null> | null = null;

  const emit = (type: AuthEvent["type"], reason?: string) => {
    for (const listener of listeners) listener({ type, reason });
  };
  const post = (message: Message) => channel?.postMessage(message);

  /** Adopt tokens (null: none), here and in the storage. */
  function adopt(tokens: Tokens | null): void {
    version++;
    jwt = tokens?.jwt ?? null;
    refreshToken = tokens ? (tokens.refreshToken ?? refreshToken) : undefined;
    info = jwt ? tokenInfo(jwt, now()) : null;
    storage?.set(jwt ? { jwt, refreshToken } : null);
  }

  function signOut(reason: string, tell = true): void {
    const was = jwt !== null || refreshToken !== undefined;
    adopt(null);
    if (tell) post({ k: "o", why: reason });
    if (was || tell) emit("signedOut", reason);
  }

  function signedIn(tokens: Tokens, type: AuthEvent["type"], reason?: string): string {
    adopt(tokens);
    post({ k: "t", jwt: tokens.jwt, rt: refreshToken, why: reason });
    emit(type, reason);
    return tokens.jwt;
  }

  channel?.addEventListener("message", ({ data }: MessageEvent<Message>) => {
    if (data.k === "h") {
      if (jwt) post({ k: "t", jwt, rt: refreshToken });
    } else if (data.k === "o") {
      signOut(data.why, false);
    } else if (data.why === PASSWORD_CHANGED && info?.sid && tokenInfo(data.jwt, now())?.sid !== info.sid) {
      // Another session changed the password: refreshd ended this one.
      signOut(PASSWORD_CHANGED, false);
    } else if (data.jwt !== jwt) {
      const first = jwt === null;
      adopt({ jwt: data.jwt, refreshToken: data.rt });
      emit(first ? "signedIn" : "refreshed", data.why);
    }
  });

  async function request(path: string, init: RequestInit = {}, token?: string | null): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.body) headers.set("Content-Type", "application/json");
    if (token) headers.set("Authorization", `Bearer ${token}`);
    return send(base + path, { ...init, headers, credentials: cookie ? "include" : "same-origin" });
  }

  async function json<T>(path: string, init?: RequestInit, token?: string | null): Promise<T> {
    const response = await request(path, init, token);
    if (!response.ok) throw await errorOf(response);
    return (await response.json()) as T;
  }

  /** One refresh request, and what its answer means for every tab. */
  async function exchange(): Promise<string | null> {
    if (!cookie && !refreshToken) return null;
    const response = await request("/api/auth/refresh", {
      method: "POST",
      ...(cookie ? {} : { body: JSON.stringify({ refreshToken }) }),
    });
    if (response.ok) {
      const body = (await response.json()) as Tokens;
      return signedIn(body, "refreshed");
    }
    const error = await errorOf(response);
    // 400 (no refresh token to send) or a refusal whose reason says the session is over: every tab signs out.
    if (response.status === 400 || SESSION_OVER.has(error.code ?? "")) {
      signOut(error.code ?? "SIGNED_OUT", jwt !== null || refreshToken !== undefined);
      return null;
    }
    throw error; // rate limited, unavailable, cross-site: the session may still be good
  }

  /**
   * A new access token, once for every caller at the time: parallel calls in a tab share one promise, and tabs of
   * one origin take turns under a Web Lock. A tab that gets the lock first checks whether the tokens changed while
   * it waited (another tab's refresh, announced on the channel): then it has nothing to do. The tab that refreshes
   * announces the result, answers its own callers at once, and keeps the lock a moment longer (`HOLD`), so that
   * the announcement reaches every waiting tab before any of them can take its turn. Without Web Locks each tab
   * refreshes on its own; refreshd's reuse grace window then gives racing tabs the same successor.
   */
  function refresh(): Promise<string | null> {
    if (!inflight) {
      const seen = version;
      inflight = new Promise<string | null>((resolve, reject) => {
        const work = async () => {
          if (version !== seen) return resolve(jwt);
          await exchange().then(resolve, reject);
          if (locks) await new Promise((done) => setTimeout(done, HOLD));
        };
        void (locks ? locks.request(name, work) : work());
      }).finally(() => {
        inflight = null;
      });
    }
    return inflight;
  }

  /** The access token to send now, refreshed first when it is about to expire; null when signed out. */
  async function accessToken(): Promise<string | null> {
    await ready;
    return jwt && !refreshDue(info, now()) ? jwt : refresh();
  }

  /** The tokens another tab holds (a new tab, a reload), or, in cookie mode, a refresh with the cookie. */
  async function restore(): Promise<void> {
    const stored = storage?.get();
    if (stored?.jwt) adopt(stored);
    if (!jwt && channel) {
      const before = version;
      post({ k: "h" });
      // Up to 100 ms for an answer; a tab alone (or the first) waits that long once.
      await new Promise<void>((done) => {
        const heard = () => {
          if (version === before) return;
          clearTimeout(stop);
          finish();
        };
        const finish = () => {
          channel.removeEventListener("message", heard);
          done();
        };
        const stop = setTimeout(finish, 100);
        channel.addEventListener("message", heard);
      });
    }
    if (!jwt && cookie) await refresh().catch(() => null);
  }
  const ready = restore();

  /** `fetch` for the app's API: the access token attached (only for `apiOrigins`), refreshed before it expires,
   * and one retry after a 401 with a fresh token. */
  async function authFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
    const target = new URL(input instanceof Request ? input.url : String(input), page);
    if (!origins.has(target.origin)) return send(input, init);
    const attempt = async (token: string | null, first: boolean) => {
      const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
      if (token) headers.set("Authorization", `Bearer ${token}`);
      // A Request's body can be read once: the first attempt sends a copy, keeping the original for a retry.
      return send(input instanceof Request && first ? input.clone() : input, { ...init, headers });
    };
    const token = await accessToken();
    const response = await attempt(token, true);
    if (response.status !== 401 || !token) return response;
    const fresh = await refresh();
    return fresh && fresh !== token ? attempt(fresh, false) : response;
  }

  const authed = async <T>(path: string, init?: RequestInit): Promise<T> => {
    const token = await accessToken();
    if (!token) throw new RefreshdError(401, "UnauthorizedError", "Not signed in");
    return json<T>(path, init, token);
  };

  const post_ = (body: unknown): RequestInit => ({ method: "POST", body: JSON.stringify(body) });

  async function enter(path: string, body: unknown, reason?: string): Promise<SignedIn> {
    const result = await json<SignedIn & { refreshToken?: string }>(path, post_(body), reason ? jwt : null);
    if (result.jwt) signedIn({ jwt: result.jwt, refreshToken: result.refreshToken }, reason ? "refreshed" : "signedIn", reason);
    return { jwt: result.jwt, user: result.user } as SignedIn;
  }

  return {
    ready,
    /** Register; signed in when refreshd returns a token (a refresh token only with `REQUEST_REFRESH_ON_ALL`). */
    register: (body: { username: string; email: string; password: string }) =>
      enter("/api/auth/local/register", body),
    /** Log in (with a refresh token: cookie or body). */
    login: (identifier: string, password: string, extra: { deviceId?: string } = {}) =>
      enter("/api/auth/local", { identifier, password, requestRefresh: true, ...extra }),
    /** End this session (`local`), the others, or all; every tab of this one signs out. */
    async logout(scope: "local" | "others" | "all" = "local"): Promise<void> {
      try {
        await json("/api/auth/logout", post_(cookie ? { scope } : { scope, refreshToken }), jwt);
      } finally {
        if (scope !== "others") signOut("LOGOUT");
      }
    },
    me: () => authed<User>("/api/users/me"),
    sessions: {
      list: async () => (await authed<{ data: Session[] }>("/api/auth/sessions")).data,
      async revoke(id: string): Promise<void> {
        await authed(`/api/auth/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
        if (id === info?.sid) signOut("LOGOUT");
      },
    },
    /** Change the password: this session lives on with new tokens, refreshd ends every other one. */
    changePassword: async (currentPassword: string, password: string) => {
      await accessToken();
      return enter(
        "/api/auth/change-password",
        { currentPassword, password, passwordConfirmation: password },
        PASSWORD_CHANGED,
      );
    },
    forgotPassword: async (email: string) => {
      await json("/api/auth/forgot-password", post_({ email }));
    },
    resetPassword: (code: string, password: string) =>
      enter("/api/auth/reset-password", { code, password, passwordConfirmation: password }),
    fetch: authFetch,
    /** The access token to send now (refreshed when due), or null when signed out. */
    getAccessToken: accessToken,
    /** Called on every sign-in, refresh and sign-out, in this tab or another; returns the unsubscribe. */
    onAuthChange(listener: (event: AuthEvent) => void): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: () => channel?.close(),
  };
}
