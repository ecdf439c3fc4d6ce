// Login → refresh → /users/me through a client generated from the document refreshd serves: openapi-typescript's
// types for every path, body and response, openapi-fetch's calls. A path, body or response shape that the
// document gets wrong fails to compile here (tsc --strict), or fails at run time against the real server.
//
//   npm run generate && npm run build && npm run client -- http://127.0.0.1:8000 alice Secret-pass-123
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type ErrorCode = components["schemas"]["ErrorCode"];
type User = components["schemas"]["UserOut"];

// The refusal codes are a closed list a client can switch on (a typo here would not compile).
function advice(code: ErrorCode | undefined): string {
  switch (code) {
    case "TOKEN_EXPIRED":
      return "refresh";
    case "REFRESH_TOKEN_INVALID":
    case "REFRESH_TOKEN_REUSED":
    case "REFRESH_TOKEN_EXPIRED":
      return "log in again";
    default:
      return "show the error";
  }
}

async function main(baseUrl: string, identifier: string, password: string): Promise<void> {
  const api = createClient<paths>({ baseUrl });

  const login = await api.POST("/api/auth/local", {
    body: { identifier, password, requestRefresh: true },
  });
  if (!login.data) throw new Error(`login: ${login.response.status} ${JSON.stringify(login.error)}`);
  const refreshToken = login.data.refreshToken;
  if (!refreshToken) throw new Error("login: no refresh token");

  const refreshed = await api.POST("/api/auth/refresh", { body: { refreshToken } });
  if (!refreshed.data) {
    throw new Error(`refresh: ${refreshed.response.status} ${JSON.stringify(refreshed.error)}`);
  }

  const me = await api.GET("/api/users/me", {
    headers: { Authorization: `Bearer ${refreshed.data.jwt}` },
  });
  if (!me.data) throw new Error(`me: ${me.response.status} ${JSON.stringify(me.error)}`);
  const user: User = me.data;

  const refused = await api.POST("/api/auth/refresh", { body: { refreshToken: "not-a-token" } });
  const code = refused.error?.error.details.code;

  console.log(
    JSON.stringify({
      login: { user: login.data.user.username, hasRefreshToken: true },
      refresh: { status: refreshed.response.status, rotated: refreshed.data.refreshToken !== refreshToken },
      me: { id: user.id, username: user.username, createdAt: user.createdAt },
      refused: { status: refused.response.status, code, advice: advice(code) },
    }),
  );
}

const [baseUrl, identifier, password] = process.argv.slice(2);
if (!baseUrl || !identifier || !password) {
  throw new Error("usage: node generated/client.mjs BASE_URL IDENTIFIER PASSWORD");
}
await main(baseUrl, identifier, password);
