import { describe, expect, it } from "vitest";
import { RefreshdError, errorOf } from "../../src/errors.js";

const envelope = (status: number, name: string, message: string, details: unknown) =>
  new Response(JSON.stringify({ data: null, error: { status, name, message, details } }), { status });

describe("errors", () => {
  it("carries the envelope's status, name, message and code", async () => {
    const error = await errorOf(
      envelope(401, "UnauthorizedError", "Invalid refresh token", { code: "REFRESH_TOKEN_REUSED" }),
    );
    expect(error).toBeInstanceOf(RefreshdError);
    expect(error).toBeInstanceOf(Error);
    expect([error.status, error.name, error.message, error.code]).toEqual([
      401,
      "UnauthorizedError",
      "Invalid refresh token",
      "REFRESH_TOKEN_REUSED",
    ]);
  });

  it("keeps validation details", async () => {
    const details = { errors: [{ path: ["email"], message: "email must be a valid email", name: "ValidationError" }] };
    const error = await errorOf(envelope(400, "ValidationError", "email must be a valid email", details));
    expect(error.details).toEqual(details);
    expect(error.code).toBeUndefined();
  });

  it("makes do with what is not an envelope", async () => {
    const proxy = await errorOf(new Response("<html>Bad gateway</html>", { status: 502, statusText: "Bad Gateway" }));
    expect([proxy.status, proxy.name, proxy.message, proxy.code]).toEqual([502, "HttpError", "Bad Gateway", undefined]);
    const odd = await errorOf(new Response(JSON.stringify({ error: { details: "x" } }), { status: 400 }));
    expect([odd.name, odd.details]).toEqual(["ApplicationError", {}]);
    const empty = await errorOf(new Response(null, { status: 503 }));
    expect(empty.message).toBe("HTTP 503");
  });
});
