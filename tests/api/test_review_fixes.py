"""Regression tests for problems found in review: each names what used to go wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jose import jwt as jose_jwt

from app.runtime import Runtime
from app.services.hashing import PasswordHasher
from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, login, register
from tests.conftest import Harness
from tests.servers import free_port
from tests.support import FakeClock, make_settings

DEEP_HEADER = "[" * 1400 + "]" * 1400


def _deep_token() -> str:
    import base64

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


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/auth/local", '{"identifier": "\\ud800", "password": "x"}', "identifier"),
        ("/api/auth/local", '{"identifier": "alice", "password": "x\\udfff"}', "password"),
        (
            "/api/auth/local/register",
            '{"username": "a\\ud800b", "email": "a@example.com", "password": "123456"}',
            "username",
        ),
    ],
)
async def test_lone_surrogates_are_a_validation_error(
    client: httpx.AsyncClient, path: str, body: str, field: str
) -> None:
    """A lone surrogate could not be encoded for the database or the hash: it was a 500."""
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["message"] == f"{field} must be valid Unicode text"


class GatedHasher:
    """The app's hasher, stopping inside verify until the test lets it go."""

    def __init__(self, inner: PasswordHasher) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.gated = True

    async def verify(self, password: str, stored_hash: str | None) -> tuple[bool, str | None]:
        result = await self.inner.verify(password, stored_hash)
        if self.gated:
            self.gated = False
            self.entered.set()
            await self.release.wait()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_login_in_flight_does_not_survive_a_password_change(
    harness: Harness, settings: Settings
) -> None:
    """The session was written without re-checking the password it was verified against."""
    client = await harness.client(settings)
    owner = (await register(client))["jwt"]
    runtime: Runtime = harness.apps[-1].state.runtime
    gate = GatedHasher(runtime.hasher)
    runtime.hasher = gate  # type: ignore[assignment]
    attacker = asyncio.create_task(login(client, requestRefresh=True))
    await gate.entered.wait()  # the attacker's old password has just been verified
    changed = await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": PASSWORD,
            "password": "Changed-pass-456",
            "passwordConfirmation": "Changed-pass-456",
        },
        headers=bearer(owner),
    )
    assert changed.status_code == 200
    gate.release.set()
    response = await attacker
    assert response.status_code == 400
    assert error_of(response)["message"] == "Invalid identifier or password"


async def _devices(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    await register(client)
    return [(await login(client, requestRefresh=True)).json() for _ in range(count)]


async def _alive(client: httpx.AsyncClient, device: dict[str, Any]) -> bool:
    """Whether the device's session still serves its access token; if not, refused as a revoked session is (a
    500 is not an ended session)."""
    me = await client.get("/api/users/me", headers=bearer(device["jwt"]))
    if me.status_code != 200:
        assert (me.status_code, error_of(me)["message"]) == (401, "Invalid credentials"), me.text
    return me.status_code == 200


async def test_a_revoked_sessions_access_token_cannot_log_out_the_others(
    client: httpx.AsyncClient,
) -> None:
    victim, other = await _devices(client, 2)
    await client.post("/api/auth/logout", headers=bearer(victim["jwt"]))
    response = await client.post(
        "/api/auth/logout", json={"scope": "all"}, headers=bearer(victim["jwt"])
    )
    assert response.json() == {"ok": True}
    assert await _alive(client, other)


async def test_a_rotated_away_refresh_token_cannot_log_out_the_others(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    device, other = await _devices(client, 2)
    stale = device["refreshToken"]
    for _ in range(2):
        device = (
            await client.post("/api/auth/refresh", json={"refreshToken": device["refreshToken"]})
        ).json()
    clock.advance(timedelta(minutes=1))
    response = await client.post("/api/auth/logout", json={"refreshToken": stale, "scope": "all"})
    assert response.json() == {"ok": True}
    assert await _alive(client, other)
    assert not await _alive(client, device)  # its own session did end


async def test_logout_with_an_unusable_cookie_still_clears_it(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(cookie_response=True))
    response = await client.post("/api/auth/logout", headers={"Cookie": "refreshToken=garbage"})
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert 'refreshToken=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_a_refresh_token_that_is_not_a_string_is_missing(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/refresh", json={"refreshToken": 123})
    assert error_of(response)["message"] == "Missing refresh token"


async def test_request_refresh_must_be_a_json_boolean(client: httpx.AsyncClient) -> None:
    """Found by the schema fuzzer: a lax boolean took 0, "yes", "false"... where the contract wants a 400."""
    await register(client)
    for value in ("true", "false", 0, 1):
        response = await login(client, requestRefresh=value)
        assert response.status_code == 400
        assert error_of(response)["message"].startswith("requestRefresh must be a `boolean` type")
    assert "refreshToken" in (await login(client, requestRefresh=True)).json()


async def test_idle_expired_sessions_leave_the_list(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    idle, active = await _devices(client, 2)
    for _ in range(3):
        clock.advance(timedelta(days=12))
        active = (
            await client.post("/api/auth/refresh", json={"refreshToken": active["refreshToken"]})
        ).json()
    listed = (await client.get("/api/auth/sessions", headers=bearer(active["jwt"]))).json()
    sids = [s["id"] for s in listed["data"]]
    assert sids == [jose_jwt.get_unverified_claims(active["jwt"])["sid"]]
    assert jose_jwt.get_unverified_claims(idle["jwt"])["sid"] not in sids


async def test_a_peer_that_is_not_an_ip_address_is_not_stored(
    harness: Harness, settings: Settings
) -> None:
    client = await harness.client(settings, peer=("x" * 200, 1))
    await register(client)
    device = (await login(client, requestRefresh=True)).json()
    listed = (await client.get("/api/auth/sessions", headers=bearer(device["jwt"]))).json()
    assert {s["ip"] for s in listed["data"]} == {None}


async def test_an_unreachable_database_is_a_503(harness: Harness) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    client = await harness.client(make_settings(url))
    response = await login(client)
    assert response.status_code == 503
    assert error_of(response) == {
        "status": 503,
        "name": "ServiceUnavailableError",
        "message": "Service Unavailable",
        "details": {},
    }
    assert response.headers["retry-after"] == "1"


def test_repr_of_the_runtime_keys_hides_them() -> None:
    from app.services.tokens import TokenKeys

    keys = TokenKeys("secret-access-key", "secret-refresh-key", "HS256", timedelta(minutes=5))
    assert "secret" not in repr(keys)
