"""Clients written for Strapi core's own session mode (``jwtManagement: 'refresh'``, Strapi 5.24+).

What such a client does, from ``@strapi/plugin-users-permissions@5.54.0`` ``server/src/controllers/auth.js``: it asks
for its refresh token in an HttpOnly cookie with ``x-strapi-refresh-cookie: httpOnly`` (``strapi_up_refresh``, path
``/``), names its device with ``deviceId`` at login, and logs out one device by naming it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, login, register, set_cookies
from tests.conftest import Harness
from tests.support import FakeClock

STRAPI = {"x-strapi-refresh-cookie": "httpOnly"}
COOKIE = "strapi_up_refresh"
APP = "https://app.example.com"


def _cookie(token: str, name: str = COOKIE) -> dict[str, str]:
    return {"Cookie": f"{name}={token}"}


async def _strapi_login(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    """A Strapi session-mode web client's login: the header, no requestRefresh. The client's own cookie jar is
    emptied, so each test says which cookie it sends."""
    response = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD, **body},
        headers=STRAPI,
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return response


async def _sessions(client: httpx.AsyncClient, jwt: str) -> list[dict[str, Any]]:
    response = await client.get("/api/auth/sessions", headers=bearer(jwt))
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_the_header_puts_a_refresh_token_in_strapis_cookie_unasked(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    response = await _strapi_login(client)
    assert list(response.json()) == ["jwt", "user"]
    cookie = set_cookies(response)[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["path"] == "/"
    assert cookie["samesite"] == "lax"
    assert cookie["value"].count(".") == 2
    # Plain http and no PRODUCTION_URL: Secure is decided as for our own cookie (COOKIE_SECURE).
    assert "secure" not in cookie
    assert "refreshToken" not in set_cookies(response)


async def test_without_the_header_a_login_is_the_plugins(client: httpx.AsyncClient) -> None:
    await register(client)
    plain = await login(client)
    assert list(plain.json()) == ["jwt", "user"]
    assert plain.headers.get_list("set-cookie") == []
    asked = await login(client, requestRefresh=True)
    assert list(asked.json()) == ["jwt", "user", "refreshToken"]
    assert asked.headers.get_list("set-cookie") == []


async def test_a_browser_in_strapi_cookie_mode_refreshes_and_logs_out_with_the_cookie(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The whole web flow, the client's cookie jar carrying the cookie as a browser would."""
    await register(client)
    signed = await client.post(
        "/api/auth/local", json={"identifier": "alice", "password": PASSWORD}, headers=STRAPI
    )
    first = client.cookies[COOKIE]
    clock.advance(timedelta(minutes=20))
    refreshed = await client.post("/api/auth/refresh", headers=STRAPI)
    assert refreshed.status_code == 200, refreshed.text
    assert list(refreshed.json()) == ["jwt"]
    assert client.cookies[COOKIE] != first
    me = await client.get("/api/users/me", headers=bearer(refreshed.json()["jwt"]))
    assert me.json()["username"] == "alice"

    out = await client.post("/api/auth/logout", headers={**STRAPI, **bearer(signed.json()["jwt"])})
    assert out.json() == {"ok": True}
    cleared = set_cookies(out)[COOKIE]
    assert (cleared["value"], cleared["max-age"], cleared["path"]) == ("", "0", "/")
    assert COOKIE not in client.cookies
    again = await client.post("/api/auth/refresh", headers=STRAPI)
    assert again.status_code == 400
    assert error_of(again)["message"] == "Missing refresh token"
    revoked = await client.get("/api/users/me", headers=bearer(refreshed.json()["jwt"]))
    assert revoked.status_code == 401


async def test_strapis_cookie_is_read_without_the_header_and_answered_in_the_body(
    client: httpx.AsyncClient,
) -> None:
    """Strapi core reads its cookie first on every refresh; only the header puts the successor back in it."""
    await register(client)
    token = set_cookies(await _strapi_login(client))[COOKIE]["value"]
    response = await client.post(
        "/api/auth/refresh", json={"refreshToken": "garbage"}, headers=_cookie(token)
    )
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["jwt", "refreshToken"]
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),
        ({"Origin": APP}, True),
        ({"Origin": "https://evil.example"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, False),
    ],
)
async def test_strapis_cookie_is_refused_cross_site(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    headers: dict[str, str],
    allowed: bool,
) -> None:
    client = await harness.client(settings_factory(production_url=APP))
    await register(client)
    token = set_cookies(await _strapi_login(client))[COOKIE]["value"]
    response = await client.post(
        "/api/auth/refresh", headers={**STRAPI, **_cookie(token), **headers}
    )
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403
        assert error_of(response)["details"]["code"] == "CROSS_SITE_REQUEST"


async def test_the_header_wins_over_cookie_mode(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(cookie_response=True))
    await register(client)
    response = await _strapi_login(client)
    assert set(set_cookies(response)) == {COOKIE}
    token = set_cookies(response)[COOKIE]["value"]
    refreshed = await client.post("/api/auth/refresh", headers={**STRAPI, **_cookie(token)})
    assert set(set_cookies(refreshed)) == {COOKIE}
    # Without the header, cookie mode answers in its own cookie, as before.
    plain = await login(client, requestRefresh=True)
    assert set(set_cookies(plain)) == {"refreshToken"}


async def test_strapis_cookie_name_and_path_are_settings(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(strapi_cookie_name="up_rt", strapi_cookie_path="/api")
    client = await harness.client(settings)
    await register(client)
    cookie = set_cookies(await _strapi_login(client))["up_rt"]
    assert cookie["path"] == "/api"
    refreshed = await client.post("/api/auth/refresh", headers=_cookie(cookie["value"], "up_rt"))
    assert refreshed.status_code == 200


async def test_the_header_can_be_switched_off(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(strapi_refresh_cookie_header=False))
    await register(client)
    response = await _strapi_login(client)
    assert list(response.json()) == ["jwt", "user"]
    assert response.headers.get_list("set-cookie") == []


async def test_register_with_the_header_returns_the_refresh_token_in_the_body(
    client: httpx.AsyncClient,
) -> None:
    """Strapi core's register ignores the header: its refresh token is always in the body."""
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
        headers=STRAPI,
    )
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["jwt", "user", "refreshToken"]
    assert response.headers.get_list("set-cookie") == []
    refreshed = await client.post(
        "/api/auth/refresh", json={"refreshToken": response.json()["refreshToken"]}
    )
    assert refreshed.status_code == 200


async def test_a_body_mode_client_gets_strapi_cores_shapes_with_request_refresh_on_all(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    """Strapi core returns refreshToken from every login, unasked: REQUEST_REFRESH_ON_ALL is that choice."""
    client = await harness.client(settings_factory(request_refresh_on_all=True))
    registered = await register(client)
    assert set(registered) == {"jwt", "user", "refreshToken"}
    signed = (await login(client, deviceId="tablet")).json()
    assert set(signed) == {"jwt", "user", "refreshToken"}
    refreshed = await client.post(
        "/api/auth/refresh", json={"refreshToken": signed["refreshToken"]}
    )
    assert set(refreshed.json()) == {"jwt", "refreshToken"}
    out = await client.post(
        "/api/auth/logout",
        json={"refreshToken": refreshed.json()["refreshToken"]},
        headers=bearer(refreshed.json()["jwt"]),
    )
    assert out.json() == {"ok": True}
    gone = await client.post(
        "/api/auth/refresh", json={"refreshToken": refreshed.json()["refreshToken"]}
    )
    assert gone.status_code == 401
    # The registration's session is another device: still live.
    other = await client.post(
        "/api/auth/refresh", json={"refreshToken": registered["refreshToken"]}
    )
    assert other.status_code == 200


async def test_a_login_keeps_its_device_id_and_the_list_shows_it(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    phone = (await login(client, requestRefresh=True, deviceId="phone-1")).json()
    plain = (await login(client, requestRefresh=True)).json()
    listed = await _sessions(client, phone["jwt"])
    assert list(listed[0]) == [
        "id",
        "deviceId",
        "deviceName",
        "ip",
        "current",
        "loginAt",
        "lastActiveAt",
    ]
    assert listed[0]["deviceId"] == "phone-1"
    # A login that named no device has no deviceId key (Strapi leaves it out).
    current = await _sessions(client, plain["jwt"])
    assert "deviceId" not in current[0]


@pytest.mark.parametrize("value", [123, "", None, True, ["phone"]])
async def test_a_device_id_that_is_not_a_string_is_no_device(
    client: httpx.AsyncClient, value: object
) -> None:
    """Strapi's ``extractDeviceId``: anything but a non-empty string is no device, never an error."""
    await register(client)
    response = await login(client, deviceId=value)
    assert response.status_code == 200, response.text
    assert "deviceId" not in (await _sessions(client, response.json()["jwt"]))[0]


async def test_a_device_id_too_long_to_store_is_refused(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await login(client, deviceId="d" * 256)
    assert response.status_code == 400
    assert error_of(response)["name"] == "ValidationError"
    assert (await login(client, deviceId="d" * 255)).status_code == 200


async def _refreshes(client: httpx.AsyncClient, token: str) -> int:
    response = await client.post("/api/auth/refresh", json={"refreshToken": token})
    return response.status_code


async def test_logout_of_a_device_ends_every_session_of_it_and_no_other(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    await register(client, username="bob", email="bob@example.com")
    phone_a = (await login(client, requestRefresh=True, deviceId="phone")).json()
    phone_b = (await login(client, requestRefresh=True, deviceId="phone")).json()
    laptop = (await login(client, requestRefresh=True, deviceId="laptop")).json()
    bobs = (await login(client, "bob", requestRefresh=True, deviceId="phone")).json()

    out = await client.post(
        "/api/auth/logout", json={"deviceId": "phone"}, headers=bearer(laptop["jwt"])
    )
    assert out.json() == {"ok": True}
    assert await _refreshes(client, phone_a["refreshToken"]) == 401
    assert await _refreshes(client, phone_b["refreshToken"]) == 401
    assert (await client.get("/api/users/me", headers=bearer(phone_a["jwt"]))).status_code == 401
    assert await _refreshes(client, laptop["refreshToken"]) == 200
    assert await _refreshes(client, bobs["refreshToken"]) == 200


async def test_scope_all_wins_over_a_device(client: httpx.AsyncClient) -> None:
    await register(client)
    phone = (await login(client, requestRefresh=True, deviceId="phone")).json()
    laptop = (await login(client, requestRefresh=True, deviceId="laptop")).json()
    await client.post(
        "/api/auth/logout",
        json={"deviceId": "phone", "scope": "all"},
        headers=bearer(phone["jwt"]),
    )
    assert await _refreshes(client, laptop["refreshToken"]) == 401


async def test_a_stale_credential_cannot_end_a_device(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """As for ``scope: others``: a refresh token rotated away ends at most its own session."""
    await register(client)
    laptop = (await login(client, requestRefresh=True, deviceId="laptop")).json()
    phone = (await login(client, requestRefresh=True, deviceId="phone")).json()
    assert await _refreshes(client, laptop["refreshToken"]) == 200
    clock.advance(timedelta(minutes=5))  # past the reuse grace: the old token is stale
    out = await client.post(
        "/api/auth/logout", json={"refreshToken": laptop["refreshToken"], "deviceId": "phone"}
    )
    assert out.json() == {"ok": True}
    assert await _refreshes(client, phone["refreshToken"]) == 200


async def test_swagger_ui_on_the_services_own_origin_may_use_the_cookie(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    """Swagger UI's "Try it out" sends the service's own origin, as PUBLIC_URL names it; a Host header that
    matches a foreign Origin earns nothing."""
    settings = settings_factory(
        cookie_response=True, production_url=APP, public_url="https://auth.example.com/"
    )
    client = await harness.client(settings)
    await register(client)
    signed = await login(client, requestRefresh=True)
    client.cookies.clear()
    token = set_cookies(signed)["refreshToken"]["value"]
    own = await client.post(
        "/api/auth/refresh",
        headers={**_cookie(token, "refreshToken"), "Origin": "https://auth.example.com"},
    )
    assert own.status_code == 200, own.text
    token = set_cookies(own)["refreshToken"]["value"]
    spoofed = await client.post(
        "/api/auth/refresh",
        headers={
            **_cookie(token, "refreshToken"),
            "Origin": "https://evil.example",
            "Host": "evil.example",
        },
    )
    assert spoofed.status_code == 403
    assert error_of(spoofed)["details"]["code"] == "CROSS_SITE_REQUEST"


async def test_cors_lets_a_strapi_client_send_its_header(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(cors_origins=APP))
    preflight = await client.options(
        "/api/auth/local",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-strapi-refresh-cookie",
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "x-strapi-refresh-cookie" in allowed
    assert preflight.headers["access-control-allow-credentials"] == "true"
