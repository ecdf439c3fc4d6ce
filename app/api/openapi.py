"""The OpenAPI document: FastAPI's, completed to say what the service really does, so that generated clients and
API gateways work with it (``tools/openapi/`` lints it with Redocly and generates a client from it in the tests).

What FastAPI cannot know is added here, after it builds the document: validation errors are 400 in Strapi's
envelope (never 422); every error status has its own examples and every ``details.code`` is listed; 429 and 503
carry ``Retry-After`` (429 the ``X-RateLimit-*`` headers too); the refresh cookie has its security scheme, its
parameter and its ``Set-Cookie``; operations have stable, hand-chosen ``operationId``s and say who may call them.

``python -m app.api.openapi`` prints the document this environment's server would serve (``DOCS_ENABLED`` aside).
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import SecretStr

from app.api import bodies
from app.api.openapi_examples import ERROR_CODES, error_examples, success_examples
from app.api.transport import COOKIE_PATH, STRAPI_COOKIE_HEADER, STRAPI_COOKIE_VALUE
from app.settings import SECRET_FIELDS, Settings

OPENAPI_URL = "/openapi.json"
LICENSE = {"name": "MIT", "identifier": "MIT"}
# Relative: the service where the document was fetched (Swagger UI's "Try it out" then calls the same origin).
SERVERS = [{"url": "/", "description": "This service (where this document is served)"}]
DESCRIPTION = """\
Strapi 5 `users-permissions` local auth with the refresh-token plugin's routes, sessions and logout.

**Errors** are Strapi's envelope, `{"data": null, "error": {"status", "name", "message", "details"}}`, for every
status. Where a client can act on the reason, `details.code` names it (schema `ErrorCode`).

**Cookie mode** (`COOKIE_RESPONSE=true`): refresh tokens travel in an HttpOnly cookie instead of the body; the
refresh and logout routes read it first, and refuse it from origins that are not allowed (`CROSS_SITE_REQUEST`).
"""
# The documentation's sections, in this order (the routes are declared in another: see app.main).
TAGS = [
    {
        "name": "auth",
        "description": "Login, registration, refresh and logout: Strapi's users-permissions paths and the "
        "refresh-token plugin's.",
    },
    {"name": "account", "description": "Password reset and email confirmation."},
    {"name": "users", "description": "The signed-in user."},
    {
        "name": "sessions",
        "description": "The signed-in user's sessions (devices): list them, end one.",
    },
    {
        "name": "keys",
        "description": "For the APIs behind refreshd: the public keys that verify access tokens, and token "
        "introspection.",
    },
    {"name": "health", "description": "Liveness and readiness probes."},
]
# Stable names for generated clients (FastAPI's own would change with a function's name).
OPERATION_IDS = {
    ("/api/auth/local", "post"): "login",
    ("/api/auth/local/register", "post"): "register",
    ("/api/auth/refresh", "post"): "refresh",
    ("/api/auth/local/refresh", "post"): "refreshPlugin",
    ("/api/auth/logout", "post"): "logout",
    ("/api/auth/change-password", "post"): "changePassword",
    ("/api/auth/forgot-password", "post"): "forgotPassword",
    ("/api/auth/reset-password", "post"): "resetPassword",
    ("/api/auth/email-confirmation", "get"): "confirmEmail",
    ("/api/auth/send-email-confirmation", "post"): "sendEmailConfirmation",
    ("/api/users/me", "get"): "getMe",
    ("/api/auth/sessions", "get"): "listSessions",
    ("/api/auth/sessions/{session_id}", "delete"): "revokeSession",
    ("/.well-known/jwks.json", "get"): "getJwks",
    ("/api/auth/introspect", "post"): "introspect",
    ("/healthz", "get"): "getHealth",
    ("/readyz", "get"): "getReadiness",
}
Requirements = list[dict[str, list[str]]]
_BEARER: Requirements = [{"bearerAuth": []}]
_COOKIE_OR_BODY: Requirements = [{"refreshCookie": []}, {"strapiRefreshCookie": []}, {}]
# Who may call what; every other operation is public (`security: []`).
SECURITY: dict[str, Requirements] = {
    "getMe": _BEARER,
    "listSessions": _BEARER,
    "revokeSession": _BEARER,
    "changePassword": _BEARER,
    "introspect": [{"introspectionAuth": []}],
    # An access token, or only a refresh token (cookie or body), so an expired session can still log out.
    "logout": [{"bearerAuth": []}, *_COOKIE_OR_BODY],
    "refresh": _COOKIE_OR_BODY,
    "refreshPlugin": _COOKIE_OR_BODY,
}
COOKIE_READERS = {"refresh", "refreshPlugin", "logout"}
# The operations where `x-strapi-refresh-cookie: httpOnly` puts the refresh token in Strapi's cookie (or clears it).
STRAPI_COOKIE_ASKERS = {"login", "register", "refresh", "refreshPlugin", "logout"}
COOKIE_WRITERS = {
    "login",
    "register",
    "refresh",
    "refreshPlugin",
    "changePassword",
    "resetPassword",
}
ENVELOPE = "#/components/schemas/ErrorEnvelope"
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def install(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) return this module's document, built once."""

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            app.openapi_schema = document(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=DESCRIPTION,
        routes=app.routes,
        tags=TAGS,
        servers=SERVERS,
        license_info=LICENSE,
    )
    _complete_components(schema.setdefault("components", {}), settings)
    for path, method, operation in _operations(schema):
        _complete_operation(path, method, operation, settings)
    return schema


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            yield path, method, operation


def _complete_operation(
    path: str, method: str, operation: dict[str, Any], settings: Settings
) -> None:
    operation_id = OPERATION_IDS.get((path, method), operation["operationId"])
    operation["operationId"] = operation_id
    operation["security"] = SECURITY.get(operation_id, [])
    parameters = operation.setdefault("parameters", [])
    if operation_id in COOKIE_READERS:
        parameters += _cookie_parameters(settings)
    if operation_id in STRAPI_COOKIE_ASKERS:
        parameters.append(STRAPI_HEADER_PARAMETER)
    if not parameters:
        del operation["parameters"]
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    # Every request is refused at once when its declared body is over MAX_BODY_SIZE (app.api.limits).
    responses.setdefault("413", _error_response("Request body too large"))
    if path.startswith("/api/"):
        responses.setdefault("503", _error_response("The database is unavailable; try again later"))
    for status, response in responses.items():
        _complete_response(operation_id, int(status), response, rate_limited="429" in responses)


def _complete_response(
    operation_id: str, status: int, response: dict[str, Any], *, rate_limited: bool
) -> None:
    media = response.get("content", {}).get("application/json")
    headers: dict[str, Any] = {}
    if status == 200:
        if media is not None and (examples := success_examples(operation_id)):
            media["examples"] = examples
        if operation_id in COOKIE_WRITERS:
            headers["Set-Cookie"] = {"$ref": "#/components/headers/SetRefreshCookie"}
        elif operation_id == "logout":
            headers["Set-Cookie"] = {"$ref": "#/components/headers/ClearRefreshCookie"}
    if status == 302:
        response.pop("content", None)
        headers["Location"] = {"$ref": "#/components/headers/Location"}
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if rate_limited and status in (200, 429):
        headers.update(
            {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS}
        )
    if media is not None and media.get("schema", {}).get("$ref") == ENVELOPE:
        media["examples"] = error_examples(operation_id, status)
    if headers:
        response["headers"] = headers


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ENVELOPE}}},
    }


STRAPI_HEADER_PARAMETER = {
    "name": STRAPI_COOKIE_HEADER,
    "in": "header",
    "required": False,
    "description": f"Strapi core's session mode (`STRAPI_REFRESH_COOKIE_HEADER`, on by default): with "
    f"`{STRAPI_COOKIE_VALUE}`, this request's refresh token goes in Strapi's HttpOnly cookie instead of the body "
    "(and logout clears it). Any other value is ignored, as Strapi ignores it.",
    # Not an enum: other values are accepted (and ignored), and the document must not say they are refused.
    "schema": {"type": "string", "examples": [STRAPI_COOKIE_VALUE]},
}


def _cookie_parameters(settings: Settings) -> list[dict[str, Any]]:
    """The cookies a refresh token is read from, before the body's ``refreshToken``."""
    ours = "Cookie mode (`COOKIE_RESPONSE=true`): the refresh token"
    strapi = "Strapi core's session mode: the refresh token, after a request with `x-strapi-refresh-cookie`"
    return [
        {
            "name": name,
            "in": "cookie",
            "required": False,
            "description": f"{text}. Set by the service (HttpOnly): a browser sends it by itself.",
            "schema": {"type": "string"},
        }
        for name, text in ((settings.cookie_name, ours), (settings.strapi_cookie_name, strapi))
    ]


def _complete_components(components: dict[str, Any], settings: Settings) -> None:
    schemas = components.setdefault("schemas", {})
    # The request models of the routes that read their body themselves; FastAPI's own entries take precedence.
    for name, model_schema in bodies.openapi_components().items():
        schemas.setdefault(name, model_schema)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _complete_error_schemas(schemas)
    _mark_times(schemas)
    components["securitySchemes"] = _security_schemes(settings)
    components["headers"] = _headers(settings)


def _complete_error_schemas(schemas: dict[str, Any]) -> None:
    """``details.code`` is one of a known list; ``details.errors`` and ``code`` are absent or set, never null."""
    schemas["ErrorCode"] = {
        "type": "string",
        "title": "ErrorCode",
        "description": "A stable reason in `error.details.code`, for clients to act on:\n\n"
        + "\n".join(f"- `{code}`: {meaning}" for code, meaning in ERROR_CODES.items()),
        "enum": list(ERROR_CODES),
    }
    details = schemas["ErrorDetails"]["properties"]
    details["code"] = {"$ref": "#/components/schemas/ErrorCode"}
    details["errors"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ErrorItem"},
        "description": "Validation errors, one per field (ValidationError only)",
    }
    body = schemas["ErrorBody"]["properties"]
    body["status"] = {
        "type": "integer",
        "description": "The HTTP status, repeated",
        "examples": [400],
    }


def _mark_times(schemas: dict[str, Any]) -> None:
    """Strapi's times (``createdAt``, ``loginAt``...) are ISO 8601 strings in UTC: say so."""
    for model in schemas.values():
        for name, prop in model.get("properties", {}).items():
            if name.endswith("At") and prop.get("type") == "string":
                prop["format"] = "date-time"


def _security_schemes(settings: Settings) -> dict[str, Any]:
    return {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The access token (`jwt`) from login, register, refresh or reset-password.",
        },
        "introspectionAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "`INTROSPECTION_TOKEN`, shared with the resource servers that introspect tokens.",
        },
        "refreshCookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.cookie_name,
            "description": "Cookie mode (`COOKIE_RESPONSE=true`): the refresh token, HttpOnly, "
            f"`Path={COOKIE_PATH}`, set by the service; a browser sends it by itself.",
        },
        "strapiRefreshCookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.strapi_cookie_name,
            "description": "Strapi core's session mode (`x-strapi-refresh-cookie: httpOnly`): the refresh "
            f"token, HttpOnly, `Path={settings.strapi_cookie_path}`, set by the service.",
        },
    }


def _headers(settings: Settings) -> dict[str, Any]:
    integer = {"type": "integer"}
    cookie = (
        f"{settings.cookie_name}=<refresh token>; HttpOnly; Max-Age=2592000; Path={COOKIE_PATH}"
    )
    strapi = (
        f"{settings.strapi_cookie_name}=<refresh token>; HttpOnly; Max-Age=2592000; "
        f"Path={settings.strapi_cookie_path}"
    )
    which = (
        f"`{settings.cookie_name}` in cookie mode, or `{settings.strapi_cookie_name}` for a request with "
        "`x-strapi-refresh-cookie: httpOnly`"
    )
    return {
        "Retry-After": {"description": "Seconds to wait before trying again", "schema": integer},
        "X-RateLimit-Limit": {"description": "Requests allowed in the window", "schema": integer},
        "X-RateLimit-Remaining": {"description": "Requests left in the window", "schema": integer},
        "X-RateLimit-Reset": {
            "description": "When the window ends (Unix time, s)",
            "schema": integer,
        },
        "SetRefreshCookie": {
            "description": f"When a refresh token is issued into a cookie: {which}",
            "schema": {
                "type": "string",
                "examples": [f"{cookie}; SameSite=lax", f"{strapi}; SameSite=lax"],
            },
        },
        "ClearRefreshCookie": {
            "description": f"The refresh cookie, cleared: {which}",
            "schema": {
                "type": "string",
                "examples": [f'{settings.cookie_name}=""; Max-Age=0; Path={COOKIE_PATH}'],
            },
        },
        "Location": {
            "description": "EMAIL_CONFIRMATION_REDIRECT",
            "schema": {"type": "string", "format": "uri-reference"},
        },
    }


def main() -> None:
    """Print the document the server would serve with this environment's settings. No secret is needed for it:
    missing ones are filled with random values here, so nothing is written (see Settings.with_development_secrets).
    """
    from app.main import create_app, settings_from_environment

    settings = settings_from_environment()
    filled = {
        field: SecretStr(secrets.token_urlsafe(48))
        for field in SECRET_FIELDS
        if not getattr(settings, field).get_secret_value()
    }
    app = create_app(settings.model_copy(update=filled))
    json.dump(app.openapi(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
