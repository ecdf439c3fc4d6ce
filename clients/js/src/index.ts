export {
  type AuthEvent,
  type Client,
  type ClientOptions,
  type Mode,
  type Session,
  type SignedIn,
  type Tokens,
  type TokenStorage,
  type User,
  createClient,
  webStorage,
} from "./client.js";
export { RefreshdError } from "./errors.js";
export { type TokenInfo, claimsOf, refreshDue, tokenInfo } from "./token.js";
