"""What the OpenAPI document shows as examples and codes, built from the service's own error classes and texts so
that the document cannot drift from what the service sends."""

from __future__ import annotations

from typing import Any

from app.errors import (
    BLOCKED,
    CURRENT_PASSWORD_INVALID,
    INVALID_CREDENTIALS,
    INVALID_LOGIN,
    MISSING_OR_INVALID_CREDENTIALS,
    NOT_CONFIRMED,
    REGISTER_DISABLED,
    SAME_PASSWORD,
    TAKEN,
    AppError,
    ApplicationError,
    ForbiddenError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    UnauthorizedError,
    ValidationError,
)
from app.migrations_info import SCHEMA_HEAD
from app.security.tokens import TokenProblem
from app.services.recovery import INCORRECT_CODE, INVALID_TOKEN
from app.services.reuse import Rejection
from app.services.sessions import INVALID_REFRESH_TOKEN

CROSS_SITE_REQUEST = "CROSS_SITE_REQUEST"

# Every `details.code` the service sends, and what a client should make of it.
ERROR_CODES: dict[str, str] = {
    TokenProblem.EXPIRED: "The access token has expired: refresh it, then retry.",
    TokenProblem.MALFORMED: "Not an access token of this service (malformed, wrong signature or algorithm).",
    TokenProblem.WRONG_TYPE: "A refresh token was sent where an access token belongs.",
    TokenProblem.NOT_YET_VALID: "The access token's issue time is in the future (clock skew).",
    Rejection.INVALID: "Not a refresh token of this service, or of no session it knows.",
    Rejection.EXPIRED: "The refresh token has expired (REFRESH_TOKEN_EXPIRES_IN): log in again.",
    Rejection.REVOKED: "The refresh token's session was ended (logout, password change or reset, revocation).",
    Rejection.REUSED: "A retired refresh token was presented again after the grace window: the session was "
    "revoked as a replay (this answer, and every later refresh of that session's tokens). Log in again.",
    Rejection.SESSION_EXPIRED: "The session reached its absolute lifetime (SESSION_MAX_AGE): log in again.",
    Rejection.USER_BLOCKED: "The account has been blocked.",
    CROSS_SITE_REQUEST: "Cookie mode: the request came from an origin that is not allowed (CORS_ORIGINS, "
    "PRODUCTION_URL) or was marked cross-site by the browser.",
}

EXAMPLE_TIME = "2026-11-27T23:38:04.597Z"
EXAMPLE_USER: dict[str, Any] = {
    "id": 1,
    "documentId": "gq6lqjgpr73ovhnyk2ovo0b5",
    "username": "alice",
    "email": "alice@example.com",
    "provider": "local",
    "confirmed": True,
    "blocked": False,
    "createdAt": EXAMPLE_TIME,
    "updatedAt": EXAMPLE_TIME,
    "publishedAt": EXAMPLE_TIME,
}
EXAMPLE_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6MSwic2lkIjoiNGY5YzJl...access"
EXAMPLE_REFRESH = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6MSwic2lkIjoiNGY5YzJl...refresh"
EXAMPLE_SESSION = {
    "id": "4f9c2e8b1a7d43b690e5b2c8d1f34a6e",
    "deviceName": "Firefox on Linux",
    "ip": "203.0.113.7",
    "current": True,
    "loginAt": EXAMPLE_TIME,
    "lastActiveAt": "2026-11-28T08:12:45.031Z",
}

# The 200 bodies, by operationId: each a list of (name, summary, value).
Examples = list[tuple[str, str, Any]]
SIGNED_IN = {"jwt": EXAMPLE_JWT, "user": EXAMPLE_USER}
SUCCESS: dict[str, Examples] = {
    "login": [
        ("signedIn", "Signed in", SIGNED_IN),
        (
            "withRefreshToken",
            "With `requestRefresh: true`, body mode",
            {**SIGNED_IN, "refreshToken": EXAMPLE_REFRESH},
        ),
    ],
    "register": [
        ("signedIn", "Registered and signed in", SIGNED_IN),
        (
            "confirmationPending",
            "EMAIL_CONFIRMATION on: no token until the address is confirmed",
            {"user": {**EXAMPLE_USER, "confirmed": False}},
        ),
    ],
    "refresh": [
        (
            "rotated",
            "Rotation on, body mode",
            {"jwt": EXAMPLE_JWT, "refreshToken": EXAMPLE_REFRESH},
        ),
        ("cookieMode", "Cookie mode: the successor is in Set-Cookie", {"jwt": EXAMPLE_JWT}),
    ],
    "logout": [("loggedOut", "Logged out", {"ok": True})],
    "changePassword": [("changed", "Changed", SIGNED_IN)],
    "forgotPassword": [("accepted", "Always the same answer", {"ok": True})],
    "resetPassword": [("reset", "Reset and signed in", SIGNED_IN)],
    "sendEmailConfirmation": [
        ("accepted", "Always the same answer", {"email": "alice@example.com", "sent": True})
    ],
    "getMe": [("user", "The user", EXAMPLE_USER)],
    "listSessions": [("sessions", "One live session", {"data": [EXAMPLE_SESSION]})],
    "revokeSession": [("revoked", "Ended", {"data": {}})],
    "getJwks": [
        (
            "es256",
            "JWT_ALGORITHM=ES256, during a rotation: the signing key first",
            {
                "keys": [
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "x": "XTXbaJOI9S42Pn7ihF8LuJ95zd8f4uWk2VlXdjPq-EI",
                        "y": "U1lu6PK2GBEAapTc4y1zpudsUAl-rkSs-WrZerSiUfA",
                        "kid": "es256-20261203-96fbb225",
                        "alg": "ES256",
                        "use": "sig",
                    },
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "x": "uxN7xdxa8xt_WqrPaX1drYRolOdv6XkFxvrcJi-laxE",
                        "y": "-c2PegSf4-TnVK32kwTunwZw-Ez4G3xnpdiBNmxm8Sw",
                        "kid": "es256-20261101-1858c003",
                        "alg": "ES256",
                        "use": "sig",
                    },
                ]
            },
        ),
        ("hmac", "JWT_ALGORITHM=HS256: no public key", {"keys": []}),
    ],
    "introspect": [
        (
            "active",
            "A live access token",
            {
                "active": True,
                "sub": "1",
                "sid": "4f9c2e0b8d7a6c5e4f3a2b1c0d9e8f7a",
                "exp": 1796312289,
                "iat": 1796311389,
                "token_type": "access_token",
                "username": "alice",
            },
        ),
        ("inactive", "Anything else: expired, revoked, garbage", {"active": False}),
    ],
    "getHealth": [("alive", "Alive", {"status": "ok"})],
    "getReadiness": [
        ("ready", "Ready", {"status": "ok", "database": "ok", "migrations": SCHEMA_HEAD})
    ],
}
SUCCESS["refreshPlugin"] = SUCCESS["refresh"]


def _fields(*errors: tuple[str, str]) -> ValidationError:
    return ValidationError.from_field_errors([([path], message) for path, message in errors])


# Error bodies by status, for any operation that documents the status; then what some operations add or say
# instead. Each: (name, summary, error).
ErrorExamples = list[tuple[str, str, AppError]]
ACCESS_TOKEN_REFUSALS: ErrorExamples = [
    *(
        (
            f"token{problem.name.title().replace('_', '')}",
            problem.value,
            UnauthorizedError(MISSING_OR_INVALID_CREDENTIALS, code=problem.value),
        )
        for problem in TokenProblem
    ),
    (
        "sessionEnded",
        "Session revoked, user deleted or blocked",
        UnauthorizedError(INVALID_CREDENTIALS),
    ),
]
REFRESH_REFUSALS: ErrorExamples = [
    (
        f"refresh{reason.name.title().replace('_', '')}",
        reason.value,
        UnauthorizedError(INVALID_REFRESH_TOKEN, code=reason.value),
    )
    for reason in Rejection
]
CROSS_SITE: ErrorExamples = [
    ("crossSite", "Cookie mode, foreign origin", ForbiddenError(code=CROSS_SITE_REQUEST))
]
NO_TOKEN: ErrorExamples = [("noToken", "No access token", ForbiddenError())]
BY_STATUS: dict[int, ErrorExamples] = {
    400: [
        ("invalidField", "A field is invalid", _fields(("email", "email must be a valid email"))),
        ("malformedJson", "Malformed JSON", ValidationError("Malformed JSON in request body")),
    ],
    401: ACCESS_TOKEN_REFUSALS,
    403: NO_TOKEN,
    404: [("notFound", "Not found", NotFoundError())],
    413: [("tooLarge", "Body over MAX_BODY_SIZE", PayloadTooLargeError())],
    429: [("rateLimited", "Rate limited", RateLimitError())],
    500: [("internal", "Internal error", InternalServerError())],
    503: [("unavailable", "Database unavailable", ServiceUnavailableError())],
}
BY_OPERATION: dict[tuple[str, int], ErrorExamples] = {
    ("login", 400): [
        ("invalidLogin", "Wrong identifier or password", ValidationError(INVALID_LOGIN)),
        ("notConfirmed", "Email not confirmed", ApplicationError(NOT_CONFIRMED)),
        ("blocked", "Account blocked", ApplicationError(BLOCKED)),
        (
            "missingField",
            "A field is missing",
            _fields(("identifier", "identifier is a required field")),
        ),
    ],
    ("register", 400): [
        ("taken", "Email or username taken", ApplicationError(TAKEN)),
        ("disabled", "ALLOW_REGISTER off", ApplicationError(REGISTER_DISABLED)),
        ("invalidEmail", "Invalid email", _fields(("email", "email must be a valid email"))),
        ("unknownKeys", "Keys Strapi refuses", ValidationError("Invalid parameters: role")),
    ],
    ("refresh", 400): [("missing", "No refresh token", ValidationError("Missing refresh token"))],
    ("refresh", 401): REFRESH_REFUSALS,
    ("refresh", 403): CROSS_SITE,
    ("logout", 400): [
        (
            "badScope",
            "Unknown scope",
            _fields(("scope", "scope must be one of the following values: local, others, all")),
        )
    ],
    ("logout", 401): [
        *ACCESS_TOKEN_REFUSALS,
        ("refreshInvalid", "Unusable refresh token", UnauthorizedError(INVALID_REFRESH_TOKEN)),
    ],
    ("logout", 403): [("noToken", "Neither token", ForbiddenError()), *CROSS_SITE],
    ("changePassword", 400): [
        ("wrongCurrent", "Wrong current password", ValidationError(CURRENT_PASSWORD_INVALID)),
        ("samePassword", "Same password", ValidationError(SAME_PASSWORD)),
        (
            "mismatch",
            "Confirmation differs",
            _fields(("passwordConfirmation", "Passwords do not match")),
        ),
    ],
    ("resetPassword", 400): [
        ("incorrectCode", "Unknown, used or expired code", ValidationError(INCORRECT_CODE)),
        (
            "mismatch",
            "Confirmation differs",
            _fields(("passwordConfirmation", "Passwords do not match")),
        ),
    ],
    ("confirmEmail", 400): [
        ("missing", "No code", _fields(("confirmation", "confirmation is a required field"))),
        ("invalid", "Unknown, used or expired code", ValidationError(INVALID_TOKEN)),
    ],
    ("introspect", 400): [
        ("missingToken", "No token field", _fields(("token", "token is a required field"))),
        (
            "notAForm",
            "Not a form body",
            ValidationError(
                "The body must be application/x-www-form-urlencoded with a token field (RFC 7662)"
            ),
        ),
    ],
    ("introspect", 401): [
        ("badCredential", "No or a wrong INTROSPECTION_TOKEN", UnauthorizedError())
    ],
    ("introspect", 404): [("disabled", "INTROSPECTION_TOKEN is unset", NotFoundError())],
    ("revokeSession", 404): [
        ("notFound", "No such live session", NotFoundError("Session not found"))
    ],
}
for _status in (400, 401, 403):
    BY_OPERATION[("refreshPlugin", _status)] = BY_OPERATION[("refresh", _status)]


def error_examples(operation_id: str, status: int) -> dict[str, Any]:
    """The named examples of one error response, in the form OpenAPI's ``examples`` takes."""
    chosen = BY_OPERATION.get((operation_id, status)) or BY_STATUS.get(status, [])
    examples: dict[str, Any] = {}
    for name, summary, error in chosen:
        examples[name] = {"summary": summary, "value": error.body()}
        if (code := error.details.get("code")) in ERROR_CODES:
            examples[name]["description"] = ERROR_CODES[code]
    return examples


def success_examples(operation_id: str) -> dict[str, Any]:
    return {
        name: {"summary": summary, "value": value}
        for name, summary, value in SUCCESS.get(operation_id, [])
    }
