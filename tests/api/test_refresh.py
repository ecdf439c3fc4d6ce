"""Refresh tokens: rotation, the grace window, reuse detection, lifetimes, rotation off."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jose import jwt as jose_jwt
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import User
from app.services.reuse import Rejection
from app.settings import Settings
from tests.api.helpers import bearer, error_of, login, register, registered_with_refresh
from tests.conftest import Harness
from tests.support import REFRESH_SECRET, FakeClock

PATHS = ["/api/auth/local/refresh", "/api/auth/refresh"]
# What a refused refresh may say in details.code.
DOCUMENTED_CODES = {reason.value for reason in Rejection}


async def _refresh(client: httpx.AsyncClient, token: str, path: str = PATHS[0]) -> httpx.Response:
    return await client.post(path, json={"refreshToken": token})


def _refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    error = error_of(response)
    assert (error["name"], error["message"]) == ("UnauthorizedError", "Invalid refresh token")
    assert error["details"]["code"] == code


async def _rows(database_url: str) -> list[Any]:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, generation, revoked_at, revoked_reason FROM sessions "
                    "WHERE generation > 0 ORDER BY created_at"
                )
            )
        ).all()
    await engine.dispose()
    return list(rows)


async def test_login_with_request_refresh_adds_a_refresh_token(client: httpx.AsyncClient) -> None:
    body = await registered_with_refresh(client)
    assert list(body) == ["jwt", "user", "refreshToken"]
    claims = jose_jwt.decode(body["refreshToken"], REFRESH_SECRET, algorithms=["HS256"])
    access = jose_jwt.get_unverified_claims(body["jwt"])
    assert claims["sid"] == access["sid"]
    assert claims["gen"] == 1
    assert claims["sub"] == "1"
    assert claims["type"] == "refresh"
    assert claims["exp"] - claims["iat"] == 30 * 86400


async def test_login_without_request_refresh_has_none(client: httpx.AsyncClient) -> None:
    await register(client)
    for response in (await login(client), await login(client, requestRefresh=False)):
        # A successful login without the token (a refused one has none either).
        assert response.status_code == 200, response.text
        assert list(response.json()) == ["jwt", "user"]


async def test_request_refresh_on_all(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(request_refresh_on_all=True))
    registered = await register(client)
    assert "refreshToken" in registered
    assert "refreshToken" in (await login(client)).json()


@pytest.mark.parametrize("path", PATHS)
async def test_rotation_returns_a_successor_and_retires_the_old_token(
    client: httpx.AsyncClient, clock: FakeClock, path: str
) -> None:
    first = (await registered_with_refresh(client))["refreshToken"]
    clock.advance(timedelta(minutes=1))
    response = await _refresh(client, first, path)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["jwt", "refreshToken"]
    second = body["refreshToken"]
    assert second != first
    assert jose_jwt.get_unverified_claims(second)["gen"] == 2
    me = await client.get("/api/users/me", headers=bearer(body["jwt"]))
    assert me.status_code == 200
    clock.advance(timedelta(minutes=1))
    third = await _refresh(client, second, path)
    assert third.status_code == 200


async def test_the_authorization_header_is_ignored_by_refresh(client: httpx.AsyncClient) -> None:
    body = await registered_with_refresh(client)
    for header in (bearer(body["jwt"]), bearer("garbage")):
        response = await client.post(
            "/api/auth/refresh", json={"refreshToken": body["refreshToken"]}, headers=header
        )
        assert response.status_code == 200
        body["refreshToken"] = response.json()["refreshToken"]


async def test_replay_within_grace_returns_the_same_successor(
    client: httpx.AsyncClient, clock: FakeClock, database_url: str
) -> None:
    first = (await registered_with_refresh(client))["refreshToken"]
    successor = (await _refresh(client, first)).json()["refreshToken"]
    clock.advance(timedelta(seconds=9))
    again = await _refresh(client, first)
    assert again.status_code == 200
    assert again.json()["refreshToken"] == successor
    rows = await _rows(database_url)
    assert [(r.generation, r.revoked_at) for r in rows] == [(2, None)]
    # The successor still works: no second branch was made.
    assert (await _refresh(client, successor)).status_code == 200


async def test_replay_after_grace_revokes_the_session_and_its_access_tokens(
    client: httpx.AsyncClient, clock: FakeClock, database_url: str
) -> None:
    first = (await registered_with_refresh(client))["refreshToken"]
    rotated = (await _refresh(client, first)).json()
    clock.advance(timedelta(seconds=10))
    _refused(await _refresh(client, first), "REFRESH_TOKEN_REUSED")
    # The thief's branch and the victim's alike are dead, access tokens included; the victim's client is told why.
    _refused(await _refresh(client, rotated["refreshToken"]), "REFRESH_TOKEN_REUSED")
    me = await client.get("/api/users/me", headers=bearer(rotated["jwt"]))
    assert me.status_code == 401
    assert error_of(me)["message"] == "Invalid credentials"
    rows = await _rows(database_url)
    assert [r.revoked_reason for r in rows] == ["reuse_detected"]


async def test_replay_of_an_older_generation_revokes_once_it_was_replaced_longer_ago_than_grace(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Two generations behind: judged by when it was replaced (contract §2), not by how far behind it is."""
    first = (await registered_with_refresh(client))["refreshToken"]
    second = (await _refresh(client, first)).json()["refreshToken"]
    clock.advance(timedelta(seconds=10))
    third = (await _refresh(client, second)).json()["refreshToken"]
    clock.advance(timedelta(seconds=1))
    _refused(await _refresh(client, first), "REFRESH_TOKEN_REUSED")  # n-2, replaced 11 s ago
    _refused(await _refresh(client, third), "REFRESH_TOKEN_REUSED")


async def test_other_sessions_survive_a_reuse_verdict(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = (await registered_with_refresh(client))["refreshToken"]
    other = (await login(client, requestRefresh=True)).json()["refreshToken"]
    await _refresh(client, first)
    clock.advance(timedelta(minutes=1))
    _refused(await _refresh(client, first), "REFRESH_TOKEN_REUSED")
    assert (await _refresh(client, other)).status_code == 200


async def test_idle_expiry(client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = (await registered_with_refresh(client))["refreshToken"]
    clock.advance(timedelta(days=29, hours=23))
    token = (await _refresh(client, token)).json()["refreshToken"]  # slides the idle window
    clock.advance(timedelta(days=29, hours=23))
    token = (await _refresh(client, token)).json()["refreshToken"]
    clock.advance(timedelta(days=30))
    _refused(await _refresh(client, token), "REFRESH_TOKEN_EXPIRED")


async def test_absolute_expiry_despite_rotation(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = (await registered_with_refresh(client))["refreshToken"]
    for _ in range(4):  # 4 x 20 days of activity: the idle limit is never hit
        clock.advance(timedelta(days=20))
        response = await _refresh(client, token)
        assert response.status_code == 200
        token = response.json()["refreshToken"]
    # Day 80: the successor may live only until day 90, not day 110.
    claims = jose_jwt.get_unverified_claims(token)
    assert claims["exp"] - claims["iat"] == 10 * 86400
    clock.advance(timedelta(days=10))
    # Day 90: the token itself says it has expired (its exp was capped to the session's end above).
    _refused(await _refresh(client, token), "REFRESH_TOKEN_EXPIRED")


async def test_rotation_off_keeps_the_token_until_it_expires(
    harness: Harness, settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    client = await harness.client(settings_factory(refresh_token_rotation=False))
    token = (await registered_with_refresh(client))["refreshToken"]
    for _ in range(3):
        clock.advance(timedelta(days=5))
        response = await _refresh(client, token)
        assert response.status_code == 200
        assert list(response.json()) == ["jwt"]
    clock.advance(timedelta(days=15))
    _refused(await _refresh(client, token), "REFRESH_TOKEN_EXPIRED")


async def test_rotation_off_token_dies_with_its_session(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(refresh_token_rotation=False))
    body = await registered_with_refresh(client)
    assert (await client.post("/api/auth/logout", headers=bearer(body["jwt"]))).status_code == 200
    _refused(await _refresh(client, body["refreshToken"]), "REFRESH_TOKEN_REVOKED")


async def test_blocked_or_deleted_users_cannot_refresh(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alice = (await registered_with_refresh(client))["refreshToken"]
    await register(client, "bob", "bob@example.com")
    bob = (await login(client, "bob", requestRefresh=True)).json()["refreshToken"]
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(update(User).where(User.username == "alice").values(blocked=True))
        await conn.execute(text("DELETE FROM sessions WHERE user_id = 2"))
        await conn.execute(text("DELETE FROM users WHERE id = 2"))
    await engine.dispose()
    _refused(await _refresh(client, alice), "USER_BLOCKED")
    _refused(await _refresh(client, bob), "REFRESH_TOKEN_INVALID")


async def test_missing_and_malformed_tokens(client: httpx.AsyncClient) -> None:
    for body in ({}, {"refreshToken": ""}, {"refreshToken": None}):
        response = await client.post("/api/auth/local/refresh", json=body)
        assert response.status_code == 400
        error = error_of(response)
        assert (error["name"], error["message"]) == ("ValidationError", "Missing refresh token")
    response = await client.post("/api/auth/refresh")
    assert error_of(response)["message"] == "Missing refresh token"
    response = await client.post("/api/auth/refresh", json={"refreshToken": 123})
    assert response.status_code == 400
    for token in ("garbage", "a.b.c", "x" * 5000):
        _refused(await _refresh(client, token), "REFRESH_TOKEN_INVALID")


async def test_forged_tokens_are_refused(client: httpx.AsyncClient, clock: FakeClock) -> None:
    body = await registered_with_refresh(client)
    claims = jose_jwt.get_unverified_claims(body["refreshToken"])
    await register(client, "mallory", "mallory@example.com")
    now = int(clock.now.timestamp())
    forged = [
        # The plugin's flaw: a valid signature with someone else's user id.
        jose_jwt.encode({**claims, "sub": "2"}, REFRESH_SECRET, algorithm="HS256"),
        # A generation that was never issued.
        jose_jwt.encode({**claims, "gen": 7}, REFRESH_SECRET, algorithm="HS256"),
        # The access token, and a token signed with the access key.
        body["jwt"],
        jose_jwt.encode(claims, "another-key-" + "z" * 40, algorithm="HS256"),
        jose_jwt.encode(claims, REFRESH_SECRET, algorithm="HS512"),
        # The plugin's own token shape.
        jose_jwt.encode({"userId": 1, "secret": "x", "iat": now, "exp": now + 9}, REFRESH_SECRET),
    ]
    for token in forged:
        response = await _refresh(client, token)
        assert response.status_code == 401, token
        assert error_of(response)["details"]["code"] == "REFRESH_TOKEN_INVALID"
    # None of that harmed the real session.
    assert (await _refresh(client, body["refreshToken"])).status_code == 200


async def test_concurrent_refreshes_in_one_process_give_one_successor(
    client: httpx.AsyncClient, database_url: str
) -> None:
    token = (await registered_with_refresh(client))["refreshToken"]
    responses = await asyncio.gather(*(_refresh(client, token) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["refreshToken"] for r in responses}) == 1
    assert [r.generation for r in await _rows(database_url)] == [2]


async def test_refresh_racing_logout_never_resurrects(
    client: httpx.AsyncClient, database_url: str
) -> None:
    body = await registered_with_refresh(client)
    tasks = [_refresh(client, body["refreshToken"]) for _ in range(5)]
    results = await asyncio.gather(
        *tasks, client.post("/api/auth/logout", headers=bearer(body["jwt"]))
    )
    assert results[-1].status_code == 200
    rows = await _rows(database_url)
    assert rows[0].revoked_at is not None
    for response in results[:-1]:
        if response.status_code != 200:
            # Refused, never anything else (a 500, a 400): the clock stands still and every racer presents the
            # same live token, so the logout is the one documented reason to refuse it.
            assert response.status_code == 401, response.text
            assert error_of(response)["details"].get("code") in DOCUMENTED_CODES, response.text
            _refused(response, "REFRESH_TOKEN_REVOKED")
            continue
        # A racer that won before the logout got a successor, and the logout ended it too.
        _refused(await _refresh(client, response.json()["refreshToken"]), "REFRESH_TOKEN_REVOKED")
        me = await client.get("/api/users/me", headers=bearer(response.json()["jwt"]))
        assert me.status_code == 401


async def test_last_activity_and_ip_follow_refreshes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    body = await registered_with_refresh(client)
    clock.advance(timedelta(hours=3))
    refreshed = (await _refresh(client, body["refreshToken"])).json()
    sessions = (await client.get("/api/auth/sessions", headers=bearer(refreshed["jwt"]))).json()
    current = next(s for s in sessions["data"] if s["current"])
    assert current["lastActiveAt"] == "2026-11-28T15:00:00.123Z"
    assert current["loginAt"] == "2026-11-28T12:00:00.123Z"
