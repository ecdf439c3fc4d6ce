"""``POST /api/auth/introspect`` (RFC 7662): how a resource server honours a revocation before the access token
expires. Active only for what ``/api/users/me`` would accept now; exactly ``{"active": false}`` for the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from jose import jwt as jose_jwt
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import User
from app.services.key_rotation import KeyFile, RotationPolicy
from app.settings import Settings
from tests.api.helpers import bearer, error_of, login, register, registered_with_refresh
from tests.conftest import Harness
from tests.support import ACCESS_SECRET, T0, FakeClock

PATH = "/api/auth/introspect"
CALLER = "introspection-caller-" + "c" * 40
INACTIVE = {"active": False}


@pytest.fixture
async def client(harness: Harness, settings_factory: Callable[..., Settings]) -> httpx.AsyncClient:
    return await harness.client(settings_factory(introspection_token=CALLER))


async def introspect(
    client: httpx.AsyncClient, token: str, credential: str | None = CALLER, **extra: str
) -> httpx.Response:
    headers = bearer(credential) if credential is not None else {}
    return await client.post(PATH, data={"token": token, **extra}, headers=headers)


async def answer(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await introspect(client, token)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def test_a_live_access_token_is_active(client: httpx.AsyncClient, clock: FakeClock) -> None:
    body = await registered_with_refresh(client)
    claims = jose_jwt.get_unverified_claims(body["jwt"])
    assert await answer(client, body["jwt"]) == {
        "active": True,
        "sub": "1",
        "sid": claims["sid"],
        "exp": claims["exp"],
        "iat": claims["iat"],
        "token_type": "access_token",
        "username": "alice",
    }
    assert await answer(client, body["jwt"]) == await answer(client, body["jwt"])
    response = await introspect(client, body["jwt"], token_type_hint="access_token")
    assert response.json()["active"] is True


async def test_an_expired_token_is_inactive(client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = (await register(client))["jwt"]
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert (await answer(client, token))["active"] is True
    clock.advance(timedelta(seconds=1))
    assert await answer(client, token) == INACTIVE


async def test_logout_makes_the_token_inactive(client: httpx.AsyncClient) -> None:
    token = (await register(client))["jwt"]
    assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 200
    assert await answer(client, token) == INACTIVE


async def test_logout_elsewhere_makes_the_other_session_s_token_inactive(
    client: httpx.AsyncClient,
) -> None:
    first = (await register(client))["jwt"]
    second = (await login(client)).json()["jwt"]
    response = await client.post(
        "/api/auth/logout", json={"scope": "others"}, headers=bearer(second)
    )
    assert response.status_code == 200
    assert await answer(client, first) == INACTIVE
    assert (await answer(client, second))["active"] is True


async def test_a_blocked_or_deleted_user_s_token_is_inactive(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alice = (await register(client))["jwt"]
    bob = (await register(client, "bob", "bob@example.com"))["jwt"]
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(update(User).where(User.username == "alice").values(blocked=True))
        await conn.execute(text("DELETE FROM sessions WHERE user_id = 2"))
        await conn.execute(text("DELETE FROM users WHERE id = 2"))
    await engine.dispose()
    assert await answer(client, alice) == INACTIVE
    assert await answer(client, bob) == INACTIVE


async def test_refresh_token_reuse_makes_the_session_s_tokens_inactive(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await registered_with_refresh(client)
    rotated = (
        await client.post("/api/auth/refresh", json={"refreshToken": first["refreshToken"]})
    ).json()
    assert (await answer(client, rotated["jwt"]))["active"] is True
    clock.advance(timedelta(seconds=10))  # past the reuse grace: a replay is a theft
    replay = await client.post("/api/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert error_of(replay)["details"]["code"] == "REFRESH_TOKEN_REUSED"
    assert await answer(client, rotated["jwt"]) == INACTIVE
    assert await answer(client, first["jwt"]) == INACTIVE


async def test_a_password_change_makes_other_sessions_inactive(client: httpx.AsyncClient) -> None:
    other = (await register(client))["jwt"]
    this = (await login(client)).json()["jwt"]
    changed = await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": "Secret-pass-123",
            "password": "Another-pass-456",
            "passwordConfirmation": "Another-pass-456",
        },
        headers=bearer(this),
    )
    assert changed.status_code == 200, changed.text
    assert await answer(client, other) == INACTIVE
    assert (await answer(client, changed.json()["jwt"]))["active"] is True


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "", "x" * 5000, "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."],
    ids=["garbage", "three-parts", "empty-ish", "huge", "alg-none"],
)
async def test_garbage_is_inactive(client: httpx.AsyncClient, token: str) -> None:
    await register(client)
    response = await introspect(client, token or " ")
    assert response.status_code == 200
    assert response.json() == INACTIVE


async def test_a_refresh_token_or_a_forged_token_is_inactive(client: httpx.AsyncClient) -> None:
    body = await registered_with_refresh(client)
    assert await answer(client, body["refreshToken"]) == INACTIVE
    claims = jose_jwt.get_unverified_claims(body["jwt"])
    forged = jose_jwt.encode(claims | {"id": 2, "sub": "2"}, "not-" + ACCESS_SECRET)
    assert await answer(client, forged) == INACTIVE


async def test_the_caller_must_present_the_introspection_token(client: httpx.AsyncClient) -> None:
    token = (await register(client))["jwt"]
    for credential in (None, "wrong", CALLER + "x", token):
        response = await introspect(client, token, credential)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="introspection"'
        assert error_of(response)["name"] == "UnauthorizedError"
    basic = await client.post(
        PATH, data={"token": token}, headers={"Authorization": f"Basic {CALLER}"}
    )
    assert basic.status_code == 401


async def test_the_route_is_off_without_the_setting(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory())
    token = (await register(client))["jwt"]
    response = await introspect(client, token)
    assert response.status_code == 404
    assert error_of(response)["name"] == "NotFoundError"


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"", "application/x-www-form-urlencoded", "token is a required field"),
        (b"token=", "application/x-www-form-urlencoded", "token is a required field"),
        (b"token=a&token=b", "application/x-www-form-urlencoded", "token is a required field"),
        (b"tok=x", "application/x-www-form-urlencoded", "token is a required field"),
        (b"token=%ff%fe", "application/x-www-form-urlencoded", "Malformed form body"),
        (b"\xff\xfe", "application/x-www-form-urlencoded", "Malformed form body"),
        (b"&".join([b"a=1"] * 20), "application/x-www-form-urlencoded", "Malformed form body"),
        (b'{"token": "x"}', "application/json", "application/x-www-form-urlencoded"),
        (b"token=x", "text/plain", "application/x-www-form-urlencoded"),
    ],
    ids=[
        "empty",
        "blank",
        "twice",
        "other-field",
        "bad-utf8-escape",
        "bad-utf8",
        "many",
        "json",
        "text",
    ],
)
async def test_a_malformed_request_is_a_400_in_the_envelope(
    client: httpx.AsyncClient, content: bytes, content_type: str, message: str
) -> None:
    response = await client.post(
        PATH, content=content, headers={**bearer(CALLER), "Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["name"] == "ValidationError"
    assert message in error["message"]


async def test_es256_tokens_are_introspected_too(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    keys = KeyFile(
        tmp_path / "signing-keys.json",
        RotationPolicy(timedelta(minutes=15), timedelta(seconds=10), timedelta(minutes=5)),
    )
    keys.generate("ES256", T0, "k1")
    client = await harness.client(
        settings_factory(
            jwt_algorithm="ES256", jwt_signing_keys_file=keys.path, introspection_token=CALLER
        )
    )
    token = (await register(client))["jwt"]
    assert (await answer(client, token))["active"] is True
    hs256 = jose_jwt.encode(jose_jwt.get_unverified_claims(token), ACCESS_SECRET)
    assert await answer(client, hs256) == INACTIVE


async def test_the_credential_is_checked_before_the_body(client: httpx.AsyncClient) -> None:
    """A caller without the credential learns nothing about what a well-formed request looks like."""
    response = await client.post(PATH, content=b"\xff", headers={"Content-Type": "text/plain"})
    assert response.status_code == 401
