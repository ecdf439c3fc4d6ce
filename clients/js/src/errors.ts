/** refreshd's errors, as its Strapi envelope carries them: `{"data": null, "error": {status, name, message, details}}`. */

export class RefreshdError extends Error {
  /** The HTTP status (0 when the request never got an answer). */
  readonly status: number;
  /** `details` of the envelope; `details.code` (also `code`) names a reason a client can act on. */
  readonly details: Record<string, unknown>;

  constructor(status: number, name: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = name;
    this.status = status;
    this.details = details;
  }

  /** `TOKEN_EXPIRED`, `REFRESH_TOKEN_REUSED`, `CROSS_SITE_REQUEST`, ...: see refreshd's OpenAPI `ErrorCode`. */
  get code(): string | undefined {
    const code = this.details.code;
    return typeof code === "string" ? code : undefined;
  }
}

/** The error a response stands for: the envelope's when there is one, else one made from the status. */
export async function errorOf(response: Response): Promise<RefreshdError> {
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, an empty body
  }
  const error = (body as { error?: Record<string, unknown> } | undefined)?.error;
  if (error && typeof error === "object") {
    const details = error.details;
    return new RefreshdError(
      response.status,
      String(error.name ?? "ApplicationError"),
      String(error.message ?? response.statusText),
      details && typeof details === "object" ? (details as Record<string, unknown>) : {},
    );
  }
  return new RefreshdError(response.status, "HttpError", response.statusText || `HTTP ${response.status}`);
}

/** Reasons a refresh token will never work again: the session is over, every tab signs out. */
export const SESSION_OVER = new Set([
  "REFRESH_TOKEN_REUSED",
  "REFRESH_TOKEN_REVOKED",
  "REFRESH_TOKEN_EXPIRED",
  "REFRESH_TOKEN_INVALID",
  "SESSION_EXPIRED",
  "USER_BLOCKED",
]);
