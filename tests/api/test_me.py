from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import pytest
from jose import jwt as jose_jwt
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Session, User
from app.security.tokens import SigningKeys, encode_refresh_token
from tests.api.helpers import bearer, error_of, register
from tests.support import ACCESS_SECRET, REFRESH_SECRET, FakeClock


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, object], claims: dict[str, object], key: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(digest)}"


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/users/me", headers=bearer(token))


def _assert_unauthorized(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401
    error = error_of(response)
    assert (error["name"], error["message"]) == ("UnauthorizedError", message)


async def test_me_returns_the_bare_user(client: httpx.AsyncClient) -> None:
    body = await register(client)
    response = await client.get("/api/users/me", headers={"Authorization": f"bEaReR {body['jwt']}"})
    assert response.status_code == 200
    assert response.json() == body["user"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
)
async def test_no_token_is_forbidden(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/api/users/me", headers=headers)
    assert response.status_code == 403
    error = error_of(response)
    assert (error["name"], error["message"]) == ("ForbiddenError", "Forbidden")


async def test_access_token_claims(client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = (await register(client))["jwt"]
    claims = jose_jwt.get_unverified_claims(token)
    header = jose_jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert claims["id"] == 1
    assert claims["sub"] == "1"
    assert isinstance(claims["sid"], str)
    assert len(claims["sid"]) == 32
    assert claims["iat"] == int(clock.now.timestamp())
    assert claims["exp"] - claims["iat"] == 15 * 60


async def test_expired_token_is_refused(client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = (await register(client))["jwt"]
    clock.advance(timedelta(minutes=14, seconds=59))
    assert (await _me(client, token)).status_code == 200
    clock.advance(timedelta(seconds=1))
    _assert_unauthorized(await _me(client, token), "Missing or invalid credentials")


async def test_forged_and_foreign_tokens_are_refused(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = (await register(client))["jwt"]
    claims = jose_jwt.get_unverified_claims(token)
    now = int(clock.now.timestamp())
    forged = [
        _forge({"alg": "none", "typ": "JWT"}, claims, None),
        _forge({"alg": "None", "typ": "JWT"}, claims, None),
        _forge({"alg": "HS256", "typ": "JWT"}, claims, b"another-secret-entirely-0123456789"),
        jose_jwt.encode(claims, ACCESS_SECRET, algorithm="HS512"),
        _forge({"alg": "RS256", "typ": "JWT"}, claims, ACCESS_SECRET.encode()),
        # The plugin's refresh token shape and our own refresh token are never access tokens.
        jose_jwt.encode({"userId": 1, "secret": "x", "iat": now, "exp": now + 60}, ACCESS_SECRET),
        encode_refresh_token(
            user_id=1,
            session_id=claims["sid"],
            generation=1,
            issued_at=clock.now,
            expires_at=clock.now + timedelta(days=1),
            keys=SigningKeys.hmac(REFRESH_SECRET, "HS256"),
        ),
        encode_refresh_token(
            user_id=1,
            session_id=claims["sid"],
            generation=1,
            issued_at=clock.now,
            expires_at=clock.now + timedelta(days=1),
            keys=SigningKeys.hmac(ACCESS_SECRET, "HS256"),
        ),
        # Strapi's legacy token: {id} only.
        jose_jwt.encode({"id": 1, "iat": now, "exp": now + 60}, ACCESS_SECRET),
        token[:-3],
        token + "x",
        "not-a-jwt",
    ]
    for candidate in forged:
        _assert_unauthorized(await _me(client, candidate), "Missing or invalid credentials")


async def test_token_of_another_user_id_in_the_same_session_is_refused(
    client: httpx.AsyncClient,
) -> None:
    token = (await register(client))["jwt"]
    await register(client, "bob", "bob@example.com")
    claims = jose_jwt.get_unverified_claims(token)
    claims.update({"id": 2, "sub": "2"})
    stolen = jose_jwt.encode(claims, ACCESS_SECRET, algorithm="HS256")
    _assert_unauthorized(await _me(client, stolen), "Invalid credentials")


async def test_blocked_deleted_or_revoked_lose_access_at_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alice = (await register(client))["jwt"]
    bob = (await register(client, "bob", "bob@example.com"))["jwt"]
    carol = (await register(client, "carol", "carol@example.com"))["jwt"]
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(update(User).where(User.username == "alice").values(blocked=True))
        await conn.execute(delete(User).where(User.username == "bob"))
        carol_sid = jose_jwt.get_unverified_claims(carol)["sid"]
        await conn.execute(
            update(Session)
            .where(Session.id == carol_sid)
            .values(revoked_at=Session.created_at, revoked_reason="test")
        )
    await engine.dispose()
    for token in (alice, bob, carol):
        _assert_unauthorized(await _me(client, token), "Invalid credentials")
