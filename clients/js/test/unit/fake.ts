/** A stand-in refreshd for unit tests: the routes the client calls, tokens with real `iat`/`exp` on a clock the
 * test moves, rotation, and a record of every request. The client never verifies signatures, so tokens are unsigned. */

export interface Call {
  method: string;
  path: string;
  authorization: string | null;
  body: unknown;
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

export function jwtOf(claims: Record<string, unknown>): string {
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.signature`;
}

export class FakeServer {
  clock = 1_800_000_000_000; // ms, the server's and (unless skewed) the client's
  ttl = 900; // access-token lifetime, seconds
  calls: Call[] = [];
  generation = 1;
  revoked: string | null = null; // the code a refresh gets once the session is over
  /** Answers to give instead of the route's, by path, once each. */
  overrides = new Map<string, Response[]>();
  /** Held refreshes: resolve to let them answer (to make requests overlap). */
  gate: Promise<void> | null = null;

  now = () => this.clock;

  access(sid = "s1"): string {
    const iat = Math.floor(this.clock / 1000);
    return jwtOf({ id: 1, sub: "1", sid, type: "access", iat, exp: iat + this.ttl });
  }

  refreshToken(): string {
    return `refresh-${this.generation}`;
  }

  count(path: string): number {
    return this.calls.filter((call) => call.path === path).length;
  }

  fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const text = await request.text();
    const body: unknown = text ? JSON.parse(text) : undefined;
    this.calls.push({
      method: request.method,
      path: url.pathname,
      authorization: request.headers.get("authorization"),
      body,
    });
    const queued = this.overrides.get(url.pathname)?.shift();
    if (queued) return queued;
    return this.route(request.method, url.pathname, body, request.headers.get("authorization"));
  };

  private async route(method: string, path: string, body: unknown, auth: string | null): Promise<Response> {
    const json = (status: number, value: unknown) =>
      new Response(JSON.stringify(value), { status, headers: { "Content-Type": "application/json" } });
    const refusal = (status: number, name: string, message: string, code?: string) =>
      json(status, { data: null, error: { status, name, message, details: code ? { code } : {} } });
    const user = { id: 1, username: "alice", email: "alice@example.com" };
    if (path === "/api/auth/local" && method === "POST") {
      return json(200, { jwt: this.access(), user, refreshToken: this.refreshToken() });
    }
    if (path === "/api/auth/refresh" && method === "POST") {
      if (this.gate) await this.gate;
      if (this.revoked) return refusal(401, "UnauthorizedError", "Invalid refresh token", this.revoked);
      this.generation++;
      return json(200, { jwt: this.access(), refreshToken: this.refreshToken() });
    }
    if (path === "/api/auth/logout") return json(200, { ok: true });
    if (!auth) return refusal(403, "ForbiddenError", "Forbidden");
    const claims = JSON.parse(Buffer.from(auth.split(".")[1]!, "base64url").toString()) as { exp: number };
    if (claims.exp * 1000 <= this.clock) {
      return refusal(401, "UnauthorizedError", "Missing or invalid credentials", "TOKEN_EXPIRED");
    }
    if (path === "/api/users/me") return json(200, user);
    if (path === "/api/auth/change-password") return json(200, { jwt: this.access(), user });
    if (path === "/api/auth/sessions") return json(200, { data: [] });
    return refusal(404, "NotFoundError", "Not Found");
  }
}
