/** What the client reads from an access token: when to refresh it, and its session. Pure, for unit tests. */

export interface TokenInfo {
  /** Local time (ms) by which the token must have been replaced: its `exp` moved to this clock, made early. */
  expiresAt: number;
  /** How long before `expiresAt` a refresh is due (ms). */
  margin: number;
  /** The session id (`sid` claim). */
  sid: string | undefined;
}

/** The claims of a JWT, unverified (the client only schedules with them; the server verifies). */
export function claimsOf(jwt: string): Record<string, unknown> | null {
  try {
    const part = jwt.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/");
    const claims: unknown = JSON.parse(atob(part));
    return claims && typeof claims === "object" ? (claims as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The schedule of a token received at local time `receivedAt` (ms).
 *
 * The server's `iat` and `exp` are whole seconds on the server's clock. `receivedAt - iat` is how far this clock is
 * ahead of the server's, plus up to one second of `iat`'s rounding down: taking the whole second off makes the
 * expiry early, never late, whatever the two clocks say. A refresh is then due a quarter of the token's lifetime
 * before that (at most `maxMargin`, 30 s by default), so a call never leaves with a token about to expire.
 */
export function tokenInfo(jwt: string, receivedAt: number, maxMargin = 30_000): TokenInfo | null {
  const claims = claimsOf(jwt);
  const exp = claims?.exp;
  const iat = claims?.iat;
  if (typeof exp !== "number" || typeof iat !== "number") return null;
  const offset = receivedAt - iat * 1000;
  return {
    expiresAt: exp * 1000 + offset - 1000,
    margin: Math.min(maxMargin, ((exp - iat) * 1000) / 4),
    sid: typeof claims?.sid === "string" ? claims.sid : undefined,
  };
}

/** Whether a token with this schedule must be refreshed before it is used at local time `now`. */
export function refreshDue(info: TokenInfo | null, now: number): boolean {
  return !info || now >= info.expiresAt - info.margin;
}
