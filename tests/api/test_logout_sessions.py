"""Logout scopes, the sessions list, revoking a session, and changing the password."""

from __future__ import annotations

import asyncio
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
from tests.support import FakeClock

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


async def _device(
    client: httpx.AsyncClient, user_agent: str, identifier: str = "alice"
) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/local",
        json={"identifier": identifier, "password": PASSWORD, "requestRefresh": True},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def _works(
    client: httpx.AsyncClient, device: dict[str, Any], *, expired: bool = False
) -> tuple[bool, bool]:
    """(access token accepted, refresh token accepted), refreshing the device's tokens when it can.

    "Not accepted" means refused as a revoked session is: a 401, never any other answer (a 500 is no refusal)."""
    me = await client.get("/api/users/me", headers=bearer(device["jwt"]))
    sessions = await client.get("/api/auth/sessions", headers=bearer(device["jwt"]))
    assert me.status_code == sessions.status_code
    if me.status_code != 200:
        # "Invalid credentials" for a revoked session; "Missing or invalid..." once the token has expired.
        assert me.status_code == 401, me.text
        assert error_of(me)["name"] == "UnauthorizedError", me.text
        refused = "Missing or invalid credentials" if expired else "Invalid credentials"
        assert error_of(me)["message"] == refused, me.text
    refresh = await client.post("/api/auth/refresh", json={"refreshToken": device["refreshToken"]})
    if refresh.status_code == 200:
        device["refreshToken"] = refresh.json()["refreshToken"]
        device["jwt"] = refresh.json()["jwt"]
    else:
        assert refresh.status_code == 401, refresh.text
        assert error_of(refresh)["details"]["code"] == "REFRESH_TOKEN_REVOKED", refresh.text
    return me.status_code == 200, refresh.status_code == 200


async def _three_devices(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    await register(client)
    return [
        await _device(client, CHROME_MAC),
        await _device(client, SAFARI_IPHONE),
        await _device(client, "curl/8.5.0"),
    ]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (None, [False, True, True]),
        ("local", [False, True, True]),
        ("others", [True, False, False]),
        ("all", [False, False, False]),
    ],
)
async def test_logout_scopes_with_the_access_token(
    client: httpx.AsyncClient, scope: str | None, expected: list[bool]
) -> None:
    devices = await _three_devices(client)
    body = {} if scope is None else {"scope": scope}
    response = await client.post("/api/auth/logout", json=body, headers=bearer(devices[0]["jwt"]))
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    for device, alive in zip(devices, expected, strict=True):
        assert await _works(client, device) == (alive, alive)


async def test_logout_with_only_a_refresh_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    devices = await _three_devices(client)
    clock.advance(timedelta(hours=1))  # every access token has expired
    response = await client.post(
        "/api/auth/logout", json={"refreshToken": devices[1]["refreshToken"], "scope": "all"}
    )
    assert response.json() == {"ok": True}
    for device in devices:
        assert await _works(client, device, expired=True) == (False, False)


async def test_logout_with_an_expired_access_token_falls_back_to_the_refresh_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    devices = await _three_devices(client)
    clock.advance(timedelta(hours=1))
    response = await client.post(
        "/api/auth/logout",
        json={"refreshToken": devices[0]["refreshToken"]},
        headers=bearer(devices[0]["jwt"]),
    )
    assert response.status_code == 200
    assert await _works(client, devices[0], expired=True) == (False, False)
    assert (await _works(client, devices[1], expired=True))[1] is True


async def test_logout_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/logout")
    assert response.status_code == 403
    assert error_of(response)["message"] == "Forbidden"
    response = await client.post("/api/auth/logout", headers=bearer("garbage"))
    assert response.status_code == 401
    assert error_of(response)["message"] == "Missing or invalid credentials"
    response = await client.post("/api/auth/logout", json={"refreshToken": "garbage"})
    assert response.status_code == 401
    assert error_of(response)["message"] == "Invalid refresh token"


async def test_logout_scope_is_validated(client: httpx.AsyncClient) -> None:
    devices = await _three_devices(client)
    response = await client.post(
        "/api/auth/logout", json={"scope": "everything"}, headers=bearer(devices[0]["jwt"])
    )
    assert response.status_code == 400
    assert (
        error_of(response)["message"]
        == "scope must be one of the following values: local, others, all"
    )
    assert await _works(client, devices[0]) == (True, True)


async def test_logout_is_idempotent(client: httpx.AsyncClient) -> None:
    devices = await _three_devices(client)
    for _ in range(2):
        response = await client.post(
            "/api/auth/logout", json={"refreshToken": devices[0]["refreshToken"]}
        )
        assert response.status_code == 200
        assert response.json() == {"ok": True}
        # The first ended this session; the second changed nothing, here or elsewhere.
        assert await _works(client, devices[0]) == (False, False)
        assert await _works(client, devices[1]) == (True, True)


async def _signed_in_devices(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """Register alice, then log her in ``count`` times with a refresh token; the logins' bodies."""
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
    victim, other = await _signed_in_devices(client, 2)
    await client.post("/api/auth/logout", headers=bearer(victim["jwt"]))
    response = await client.post(
        "/api/auth/logout", json={"scope": "all"}, headers=bearer(victim["jwt"])
    )
    assert response.json() == {"ok": True}
    assert await _alive(client, other)


async def test_a_rotated_away_refresh_token_cannot_log_out_the_others(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    device, other = await _signed_in_devices(client, 2)
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


async def test_sessions_list_current_first_then_most_recent(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    clock.advance(timedelta(minutes=1))
    mac = await _device(client, CHROME_MAC)
    clock.advance(timedelta(minutes=1))
    phone = await _device(client, SAFARI_IPHONE)
    clock.advance(timedelta(minutes=1))
    cli = await _device(client, "curl/8.5.0")
    clock.advance(timedelta(minutes=1))
    # The mac refreshes last, so it is the most recently active after the current one.
    mac = (
        await client.post("/api/auth/refresh", json={"refreshToken": mac["refreshToken"]})
    ).json()
    response = await client.get("/api/auth/sessions", headers=bearer(phone["jwt"]))
    assert response.status_code == 200
    data = response.json()["data"]
    sid = {
        name: jose_jwt.get_unverified_claims(d["jwt"])["sid"]
        for name, d in (("mac", mac), ("phone", phone), ("cli", cli))
    }
    assert [s["id"] for s in data[:3]] == [sid["phone"], sid["mac"], sid["cli"]]
    assert [s["current"] for s in data[:3]] == [True, False, False]
    assert list(data[0]) == ["id", "deviceName", "ip", "current", "loginAt", "lastActiveAt"]
    assert data[0]["deviceName"] == "Mobile Safari on iOS"
    assert data[1]["deviceName"] == "Chrome on macOS"
    assert data[2]["deviceName"] == "curl"
    assert data[0]["ip"] == "203.0.113.7"
    assert data[0]["loginAt"] == "2026-11-28T12:02:00.123Z"
    assert data[1]["lastActiveAt"] == "2026-11-28T12:04:00.123Z"


async def test_sessions_list_leaves_out_revoked_and_expired(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    devices = await _three_devices(client)
    await client.post("/api/auth/logout", headers=bearer(devices[2]["jwt"]))
    listed = (await client.get("/api/auth/sessions", headers=bearer(devices[0]["jwt"]))).json()
    assert len(listed["data"]) == 3  # registration's session (access token still alive) + 2 devices
    clock.advance(timedelta(minutes=16))
    # The access token has expired; the refresh gives a new one.
    assert (await _works(client, devices[0], expired=True))[1] is True
    listed = (await client.get("/api/auth/sessions", headers=bearer(devices[0]["jwt"]))).json()
    ids = {s["id"] for s in listed["data"]}
    revoked = jose_jwt.get_unverified_claims(devices[2]["jwt"])["sid"]
    assert revoked not in ids
    # The registration's session had no refresh token: it ended with its access token.
    assert len(ids) == 2


async def test_idle_expired_sessions_leave_the_list(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    idle, active = await _signed_in_devices(client, 2)
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


async def test_delete_a_session(client: httpx.AsyncClient) -> None:
    devices = await _three_devices(client)
    target = jose_jwt.get_unverified_claims(devices[1]["jwt"])["sid"]
    response = await client.delete(
        f"/api/auth/sessions/{target}", headers=bearer(devices[0]["jwt"])
    )
    assert response.status_code == 200
    assert response.json() == {"data": {}}
    assert await _works(client, devices[1]) == (False, False)
    assert await _works(client, devices[0]) == (True, True)
    again = await client.delete(f"/api/auth/sessions/{target}", headers=bearer(devices[0]["jwt"]))
    assert again.status_code == 404


@pytest.mark.parametrize("session_id", ["0" * 32, "not-a-session", "x" * 300, "%00"])
async def test_deleting_unknown_sessions_is_a_404(
    client: httpx.AsyncClient, session_id: str
) -> None:
    devices = await _three_devices(client)
    response = await client.delete(
        f"/api/auth/sessions/{session_id}", headers=bearer(devices[0]["jwt"])
    )
    assert response.status_code == 404
    error = error_of(response)
    assert (error["name"], error["message"]) == ("NotFoundError", "Session not found")


async def test_deleting_another_users_session_is_a_404(client: httpx.AsyncClient) -> None:
    devices = await _three_devices(client)
    await register(client, "bob", "bob@example.com")
    bob = await _device(client, CHROME_MAC, "bob")
    target = jose_jwt.get_unverified_claims(devices[0]["jwt"])["sid"]
    response = await client.delete(f"/api/auth/sessions/{target}", headers=bearer(bob["jwt"]))
    assert response.status_code == 404
    assert error_of(response)["message"] == "Session not found"
    assert await _works(client, devices[0]) == (True, True)


async def test_sessions_routes_need_a_user(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/auth/sessions")).status_code == 403
    assert (await client.delete("/api/auth/sessions/abc")).status_code == 403
    assert (await client.get("/api/auth/sessions", headers=bearer("x"))).status_code == 401


NEW_PASSWORD = "Another-pass-456"


async def _change(
    client: httpx.AsyncClient, token: str, current: str, new: str, confirm: str | None = None
) -> httpx.Response:
    return await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": current,
            "password": new,
            "passwordConfirmation": new if confirm is None else confirm,
        },
        headers=bearer(token),
    )


async def test_change_password_revokes_every_other_session(client: httpx.AsyncClient) -> None:
    devices = await _three_devices(client)
    response = await _change(client, devices[0]["jwt"], PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["jwt", "user", "refreshToken"]
    assert body["user"]["username"] == "alice"
    # This session goes on with fresh tokens; the old refresh token is retired.
    old_refresh = devices[0]["refreshToken"]
    devices[0].update(jwt=body["jwt"], refreshToken=body["refreshToken"])
    assert await _works(client, devices[0]) == (True, True)
    retired = await client.post("/api/auth/refresh", json={"refreshToken": old_refresh})
    assert retired.status_code == 401, retired.text
    # Retired by the change: refused as revoked, and the session that changed the password lives on.
    assert error_of(retired)["details"]["code"] == "REFRESH_TOKEN_REVOKED", retired.text
    assert await _works(client, devices[0]) == (True, True)
    for device in devices[1:]:
        assert await _works(client, device) == (False, False)
    assert (await login(client, password=PASSWORD)).status_code == 400
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200


async def test_change_password_without_refresh_token_session(client: httpx.AsyncClient) -> None:
    token = (await register(client))["jwt"]
    response = await _change(client, token, PASSWORD, NEW_PASSWORD)
    assert list(response.json()) == ["jwt", "user"]
    assert (
        await client.get("/api/users/me", headers=bearer(response.json()["jwt"]))
    ).status_code == 200


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong-password", NEW_PASSWORD, None, "The provided current password is invalid"),
        (
            PASSWORD,
            PASSWORD,
            None,
            "Your new password must be different than your current password",
        ),
        (PASSWORD, NEW_PASSWORD, "something-else", "Passwords do not match"),
        (PASSWORD, "x" * 73, None, "Password must be less than 73 bytes"),
        (PASSWORD, "short", None, "password must be at least 6 characters"),
    ],
)
async def test_change_password_errors(
    client: httpx.AsyncClient, current: str, new: str, confirm: str | None, message: str
) -> None:
    devices = await _three_devices(client)
    response = await _change(client, devices[0]["jwt"], current, new, confirm)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["name"], error["message"]) == ("ValidationError", message)
    assert await _works(client, devices[1]) == (True, True)  # nothing was revoked


async def test_change_password_rejects_unknown_keys(client: httpx.AsyncClient) -> None:
    token = (await register(client))["jwt"]
    response = await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": PASSWORD,
            "password": NEW_PASSWORD,
            "passwordConfirmation": NEW_PASSWORD,
            "deviceId": "x",
        },
        headers=bearer(token),
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["message"] == "this field has unspecified keys: deviceId"
    assert error["details"]["errors"][0]["path"] == []


async def test_change_password_needs_a_user(client: httpx.AsyncClient) -> None:
    response = await _change(client, "garbage", PASSWORD, NEW_PASSWORD)
    assert response.status_code == 401
    response = await client.post("/api/auth/change-password", json={})
    assert response.status_code == 403


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
    accounts = runtime.services.accounts
    gate = GatedHasher(accounts.hasher)
    accounts.hasher = gate  # type: ignore[assignment]
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
