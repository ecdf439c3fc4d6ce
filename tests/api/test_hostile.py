"""Hostile requests, table-driven: each gets its exact status and error in the envelope, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jose import jwt as jose_jwt

from app.security.tokens import SigningKeys, encode_access_token, encode_refresh_token
from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, register
from tests.conftest import Harness
from tests.support import ACCESS_SECRET, REFRESH_SECRET, T0

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    error: str | None  # the error's name; None for a success
    message: str | None = None
    content: bytes | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # "<kind>": a token built against the registered user, see _token()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(kind: str, sid: str) -> str:
    now = int(T0.timestamp())
    access = {"id": 1, "sub": "1", "sid": sid, "type": "access", "iat": now, "exp": now + 900}
    if kind == "alg-none":
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{_b64(json.dumps(access).encode())}."
    if kind == "hs512":
        return str(jose_jwt.encode(access, ACCESS_SECRET, algorithm="HS512"))
    if kind == "rs256-as-hmac":
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        signing = f"{header}.{_b64(json.dumps(access).encode())}"
        digest = hmac.new(ACCESS_SECRET.encode(), signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(digest)}"
    if kind == "refresh-as-access":
        return encode_refresh_token(
            user_id=1,
            session_id=sid,
            generation=1,
            issued_at=T0,
            expires_at=T0 + timedelta(days=1),
            keys=SigningKeys.hmac(REFRESH_SECRET, "HS256"),
        )
    if kind in ("access-as-refresh", "expired", "future"):
        issued = {"expired": T0 - timedelta(hours=2), "future": T0 + timedelta(hours=1)}.get(
            kind, T0
        )
        return encode_access_token(
            user_id=1,
            session_id=sid,
            issued_at=issued,
            expires_at=issued + timedelta(minutes=15),
            keys=SigningKeys.hmac(ACCESS_SECRET, "HS256"),
        )
    if kind == "foreign-secret":
        return str(jose_jwt.encode(access, "someone-else-" + "s" * 40, algorithm="HS256"))
    if kind == "huge":
        return "a" * 100_000
    raise AssertionError(kind)


NESTED = b'{"identifier": ' + b"[" * 20_000 + b"]" * 20_000 + b', "password": "x"}'
INVALID = ("ValidationError", "Invalid identifier or password")
CASES = [
    # Sizes and shapes
    Case(
        "oversized-json",
        "POST",
        "/api/auth/local",
        413,
        "PayloadTooLargeError",
        content=b'{"identifier": "' + b"a" * 70_000 + b'"}',
    ),
    Case("deeply-nested-json", "POST", "/api/auth/local", 400, "ValidationError", content=NESTED),
    Case(
        "moderately-nested",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        body={"identifier": [[[[["x"]]]]], "password": "x"},
    ),
    Case(
        "top-level-array",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        "Request body must be a JSON object",
        body=[1, 2],
    ),
    Case(
        "top-level-null",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        "Request body must be a JSON object",
        content=b"null",
    ),
    Case(
        "top-level-string",
        "POST",
        "/api/auth/local/register",
        400,
        "ValidationError",
        "Request body must be a JSON object",
        content=b'"hi"',
    ),
    Case(
        "truncated-json",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        "Malformed JSON in request body",
        content=b'{"identifier": "a',
    ),
    Case(
        "json-with-bom",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b'\xef\xbb\xbf{"identifier": "alice", "password": "x"}',
    ),
    Case(
        "infinite-number",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b'{"identifier": 1e999, "password": "x"}',
    ),
    Case(
        "giant-integer",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b'{"identifier": 1' + b"0" * 4000 + b', "password": "x"}',
    ),
    Case(
        "duplicate-keys-last-wins",
        "POST",
        "/api/auth/local",
        400,
        *INVALID,
        content=b'{"identifier": "alice", "identifier": "nobody", "password": "Secret-pass-123"}',
    ),
    # Content types and encodings
    Case(
        "text-plain",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b"identifier=alice",
        headers={"content-type": "text/plain"},
    ),
    Case(
        "xml",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b"<login><identifier>alice</identifier></login>",
        headers={"content-type": "application/xml"},
    ),
    Case(
        "form-urlencoded",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b"identifier=alice&password=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "multipart",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n",
        headers={"content-type": "multipart/form-data; boundary=x"},
    ),
    Case(
        "invalid-utf8",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        content=b'{"identifier": "\xff\xfe", "password": "x"}',
    ),
    Case(
        "lone-surrogate",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        "identifier must be valid Unicode text",
        content=b'{"identifier": "\\udc00", "password": "x"}',
    ),
    Case(
        "nul-in-identifier",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        "identifier must not contain NUL characters",
        body={"identifier": "al\u0000ice", "password": "x"},
    ),
    Case(
        "nul-in-email",
        "POST",
        "/api/auth/forgot-password",
        400,
        "ValidationError",
        body={"email": "a\u0000@example.com"},
    ),
    # Injection attempts
    Case(
        "operator-ne",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        body={"identifier": {"$ne": None}, "password": "x"},
    ),
    Case(
        "operator-gt-both",
        "POST",
        "/api/auth/local",
        400,
        "ValidationError",
        "2 errors occurred",
        body={"identifier": {"$gt": ""}, "password": {"$gt": ""}},
    ),
    Case(
        "operator-regex-email",
        "POST",
        "/api/auth/forgot-password",
        400,
        "ValidationError",
        body={"email": {"$regex": ".*"}},
    ),
    Case(
        "operator-in-code",
        "POST",
        "/api/auth/reset-password",
        400,
        "ValidationError",
        body={"code": {"$ne": ""}, "password": "abcdefg", "passwordConfirmation": "abcdefg"},
    ),
    Case(
        "sql-injection-identifier",
        "POST",
        "/api/auth/local",
        400,
        *INVALID,
        body={"identifier": "' OR '1'='1' --", "password": "' OR '1'='1"},
    ),
    Case(
        "sql-injection-email",
        "POST",
        "/api/auth/forgot-password",
        400,
        "ValidationError",
        "email must be a valid email",
        body={"email": "x' OR 1=1 --"},
    ),
    Case(
        "like-wildcards",
        "POST",
        "/api/auth/local",
        400,
        *INVALID,
        body={"identifier": "%", "password": PASSWORD},
    ),
    Case(
        "prototype-pollution",
        "POST",
        "/api/auth/local/register",
        400,
        "ValidationError",
        "Invalid parameters: __proto__",
        body={
            "username": "mallory",
            "email": "m@example.com",
            "password": "abcdefg",
            "__proto__": {"admin": True},
        },
    ),
    Case(
        "provider-override",
        "POST",
        "/api/auth/local/register",
        400,
        "ValidationError",
        "Invalid parameters: provider, confirmed",
        body={
            "username": "mallory",
            "email": "m@example.com",
            "password": "abcdefg",
            "provider": "google",
            "confirmed": True,
        },
    ),
    Case(
        "scope-object",
        "POST",
        "/api/auth/logout",
        400,
        "ValidationError",
        body={"scope": {"$ne": "local"}, "refreshToken": "x"},
    ),
    Case(
        "refresh-token-array",
        "POST",
        "/api/auth/refresh",
        400,
        "ValidationError",
        "Missing refresh token",
        body={"refreshToken": ["a", "b"]},
    ),
    # Oversized values
    Case(
        "huge-email",
        "POST",
        "/api/auth/local/register",
        400,
        "ValidationError",
        body={"username": "mallory", "email": "a" * 5000 + "@example.com", "password": "abcdefg"},
    ),
    Case(
        "huge-password-login",
        "POST",
        "/api/auth/local",
        400,
        *INVALID,
        body={"identifier": "alice", "password": "x" * 50_000},
    ),
    Case(
        "huge-confirmation",
        "GET",
        "/api/auth/email-confirmation?confirmation=" + "a" * 5000,
        400,
        "ValidationError",
    ),
    Case(
        "huge-session-id",
        "DELETE",
        "/api/auth/sessions/" + "a" * 5000,
        404,
        "NotFoundError",
        "Session not found",
        token="valid",
    ),
    Case(
        "unicode-session-id",
        "DELETE",
        "/api/auth/sessions/%E2%80%AEabc",
        404,
        "NotFoundError",
        "Session not found",
        token="valid",
    ),
    Case(
        "huge-bearer",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="huge",
    ),
    Case(
        "huge-cookie-like-token",
        "POST",
        "/api/auth/refresh",
        401,
        "UnauthorizedError",
        "Invalid refresh token",
        body={"refreshToken": "x" * 60_000},
    ),
    Case(
        "huge-header",
        "GET",
        "/api/users/me",
        403,
        "ForbiddenError",
        "Forbidden",
        headers={"x-padding": "p" * 60_000},
    ),
    # Routing
    Case("path-traversal", "GET", "/api/auth/%2e%2e/users/me", 404, "NotFoundError"),
    Case("unknown-method", "PATCH", "/api/auth/local", 405, "MethodNotAllowedError"),
    Case("long-unknown-path", "GET", "/api/" + "x" * 8000, 404, "NotFoundError"),
    # Authorization header forms
    Case(
        "bearer-three-parts",
        "GET",
        "/api/users/me",
        403,
        "ForbiddenError",
        "Forbidden",
        headers={"authorization": "Bearer a b"},
    ),
    Case(
        "basic-scheme",
        "GET",
        "/api/users/me",
        403,
        "ForbiddenError",
        "Forbidden",
        headers={"authorization": "Basic YWxpY2U6c2VjcmV0"},
    ),
    # Forged and misused tokens
    Case(
        "alg-none",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="alg-none",
    ),
    Case(
        "hs512-swap",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="hs512",
    ),
    Case(
        "rs256-as-hmac",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="rs256-as-hmac",
    ),
    Case(
        "foreign-secret",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="foreign-secret",
    ),
    Case(
        "refresh-as-access",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="refresh-as-access",
    ),
    Case(
        "expired-access",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="expired",
    ),
    Case(
        "future-dated-access",
        "GET",
        "/api/users/me",
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
        token="future",
    ),
    Case(
        "access-as-refresh",
        "POST",
        "/api/auth/refresh",
        401,
        "UnauthorizedError",
        "Invalid refresh token",
        body={"refreshToken": "<access-as-refresh>"},
    ),
]


@pytest.fixture
async def hostile_client(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> tuple[httpx.AsyncClient, str]:
    client = await harness.client(settings_factory(rate_limit_enabled=False))
    registered = await register(client)
    sid = str(jose_jwt.get_unverified_claims(registered["jwt"])["sid"])
    return client, sid


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_hostile_request(hostile_client: tuple[httpx.AsyncClient, str], case: Case) -> None:
    client, sid = hostile_client
    headers = dict(case.headers)
    if case.token == "valid":
        login = await client.post(
            "/api/auth/local", json={"identifier": "alice", "password": PASSWORD}
        )
        headers["authorization"] = f"Bearer {login.json()['jwt']}"
    elif case.token is not None:
        headers["authorization"] = f"Bearer {_token(case.token, sid)}"
    content = case.content
    if case.body is not None:
        text = json.dumps(case.body)
        text = text.replace('"<access-as-refresh>"', json.dumps(_token("access-as-refresh", sid)))
        content = text.encode()
        headers.setdefault("content-type", "application/json")
    elif content is not None:
        headers.setdefault("content-type", "application/json")
    response = await client.request(case.method, case.path, content=content, headers=headers)
    assert response.status_code == case.status, response.text[:500]
    if case.error is not None:
        error = error_of(response)
        assert error["name"] == case.error
        if case.message is not None:
            assert error["message"] == case.message


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


DEEP_HEADER = "[" * 1400 + "]" * 1400


def _deep_token() -> str:
    header = base64.urlsafe_b64encode(DEEP_HEADER.encode()).rstrip(b"=").decode()
    return f"{header}.e30.c2ln"


async def test_deeply_nested_token_headers_are_refused_not_crashed(
    client: httpx.AsyncClient,
) -> None:
    """python-jose parsed the unsigned header first: a nested one raised RecursionError (500)."""
    token = _deep_token()
    me = await client.get("/api/users/me", headers=bearer(token))
    assert (me.status_code, error_of(me)["message"]) == (401, "Missing or invalid credentials")
    refreshed = await client.post("/api/auth/refresh", json={"refreshToken": token})
    assert refreshed.status_code == 401
    logout = await client.post("/api/auth/logout", json={"refreshToken": token})
    assert logout.status_code == 401
