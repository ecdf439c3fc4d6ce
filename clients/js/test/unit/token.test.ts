import { describe, expect, it } from "vitest";
import { claimsOf, refreshDue, tokenInfo } from "../../src/token.js";
import { jwtOf } from "./fake.js";

const IAT = 1_800_000_000;

describe("the token clock", () => {
  it("reads the claims without verifying", () => {
    expect(claimsOf(jwtOf({ sub: "1", exp: 5 }))).toEqual({ sub: "1", exp: 5 });
    expect(claimsOf("not a token")).toBeNull();
    expect(claimsOf("a.bm90IGpzb24.c")).toBeNull();
    expect(claimsOf(`a.${Buffer.from("42").toString("base64url")}.c`)).toBeNull();
  });

  it("moves exp to the local clock, a whole second early for iat's rounding", () => {
    const token = jwtOf({ sid: "s", iat: IAT, exp: IAT + 900 });
    // Received 300 ms into the server's second IAT, on a clock in step with the server's.
    const info = tokenInfo(token, IAT * 1000 + 300)!;
    expect(info.expiresAt).toBe((IAT + 900) * 1000 + 300 - 1000);
    expect(info.expiresAt).toBeLessThanOrEqual((IAT + 900) * 1000); // never after the server's expiry
    expect(info.sid).toBe("s");
    expect(info.margin).toBe(30_000);
  });

  it("follows a client clock that is ahead or behind the server's", () => {
    const token = jwtOf({ iat: IAT, exp: IAT + 900 });
    for (const skew of [-120_000, -1500, 0, 1500, 3_600_000]) {
      const info = tokenInfo(token, IAT * 1000 + 999 + skew)!;
      // The server's expiry, seen on the client's clock, is never before the client's own.
      expect(info.expiresAt).toBeLessThanOrEqual((IAT + 900) * 1000 + 999 + skew);
      expect(refreshDue(info, IAT * 1000 + skew + 1000)).toBe(false);
      expect(refreshDue(info, (IAT + 900) * 1000 + skew)).toBe(true);
    }
  });

  it("is due a quarter of a short lifetime early, at most 30 s", () => {
    const short = tokenInfo(jwtOf({ iat: IAT, exp: IAT + 4 }), IAT * 1000)!;
    expect(short.margin).toBe(1000);
    expect(refreshDue(short, IAT * 1000 + 1999)).toBe(false);
    expect(refreshDue(short, IAT * 1000 + 2000)).toBe(true);
    expect(tokenInfo(jwtOf({ iat: IAT, exp: IAT + 86_400 }), 0)!.margin).toBe(30_000);
  });

  it("treats a token without times as due", () => {
    expect(tokenInfo(jwtOf({ sub: "1" }), 0)).toBeNull();
    expect(tokenInfo(jwtOf({ iat: "1", exp: 2 }), 0)).toBeNull();
    expect(refreshDue(null, 0)).toBe(true);
  });
});
