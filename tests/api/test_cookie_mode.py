"""Cookie mode: the refresh token in an HttpOnly cookie, with CSRF defence and CORS for our own origins."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, register, set_cookies
from tests.conftest import Harness
from tests.support import FakeClock

APP = "https://app.example.com"


async def _cookie_client(
    harness: Harness, settings_factory: Callable[..., Settings], **overrides: Any
) -> httpx.AsyncClient:
    settings = settings_factory(cookie_response=True, **overrides)
    client = await harness.client(settings)
    await register(client)
    return client


async def _login(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    response = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response


def _cookie_header(token: str, name: str = "refreshToken") -> dict[str, str]:
    return {"Cookie": f"{name}={token}"}


async def test_login_sets_the_cookie_and_keeps_it_out_of_the_body(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(harness, settings_factory)
    response = await _login(client)
    assert list(response.json()) == ["jwt", "user"]
    cookie = set_cookies(response)["refreshToken"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "lax"
    assert cookie["path"] == "/api/auth"
    assert cookie["max-age"] == str(30 * 86400)
    assert "secure" not in cookie
    assert "domain" not in cookie
    assert cookie["value"].count(".") == 2


@pytest.mark.parametrize(
    ("overrides", "secure", "domain"),
    [
        ({"production_url": APP}, True, "app.example.com"),
        ({"production_url": "https://example.com/"}, True, "example.com"),
        ({"production_url": "example.com"}, False, "example.com"),
        ({"production_url": "example.com", "cookie_secure": True}, True, "example.com"),
        ({"production_url": "http://localhost:3000"}, False, None),
        ({"production_url": APP, "cookie_domain": "example.com"}, True, "example.com"),
    ],
)
async def test_secure_and_domain_follow_the_settings(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    overrides: dict[str, Any],
    secure: bool,
    domain: str | None,
) -> None:
    client = await _cookie_client(harness, settings_factory, **overrides)
    cookie = set_cookies(await _login(client))["refreshToken"]
    assert ("secure" in cookie) is secure
    assert cookie.get("domain") == domain


@pytest.mark.parametrize("same_site", ["strict", "lax"])
async def test_same_site_is_configurable(
    harness: Harness, settings_factory: Callable[..., Settings], same_site: str
) -> None:
    client = await _cookie_client(harness, settings_factory, cookie_samesite=same_site)
    assert set_cookies(await _login(client))["refreshToken"]["samesite"] == same_site


async def test_same_site_none_goes_with_secure(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(
        harness, settings_factory, cookie_samesite="none", cookie_secure=True
    )
    cookie = set_cookies(await _login(client))["refreshToken"]
    assert (cookie["samesite"], "secure" in cookie) == ("none", True)
    with pytest.raises(ValueError, match="COOKIE_SAMESITE=none requires Secure"):
        settings_factory(cookie_response=True, cookie_samesite="none")


async def test_cookie_name_is_configurable(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(harness, settings_factory, cookie_name="rt")
    token = set_cookies(await _login(client))["rt"]["value"]
    response = await client.post("/api/auth/refresh", headers=_cookie_header(token, "rt"))
    assert response.status_code == 200
    assert "rt" in set_cookies(response)


async def test_refresh_reads_and_resets_the_cookie(
    harness: Harness, settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    client = await _cookie_client(harness, settings_factory)
    first = set_cookies(await _login(client))["refreshToken"]["value"]
    clock.advance(timedelta(days=1))
    response = await client.post("/api/auth/local/refresh", headers=_cookie_header(first))
    assert response.status_code == 200
    assert list(response.json()) == ["jwt"]
    cookie = set_cookies(response)["refreshToken"]
    assert cookie["value"] != first
    assert cookie["max-age"] == str(30 * 86400)
    assert cookie["httponly"] is True
    # The old cookie value is retired (grace aside: the clock moved past it).
    clock.advance(timedelta(minutes=1))
    replay = await client.post("/api/auth/refresh", headers=_cookie_header(first))
    assert replay.status_code == 401
    assert error_of(replay)["details"]["code"] == "REFRESH_TOKEN_REUSED"


async def test_the_cookie_wins_over_the_body(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(harness, settings_factory)
    token = set_cookies(await _login(client))["refreshToken"]["value"]
    response = await client.post(
        "/api/auth/refresh", json={"refreshToken": "garbage"}, headers=_cookie_header(token)
    )
    assert response.status_code == 200


async def test_body_token_still_works_in_cookie_mode(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(harness, settings_factory)
    token = set_cookies(await _login(client))["refreshToken"]["value"]
    response = await client.post("/api/auth/refresh", json={"refreshToken": token})
    assert response.status_code == 200
    assert "refreshToken" in set_cookies(response)


async def test_logout_with_the_cookie_clears_it(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(harness, settings_factory)
    token = set_cookies(await _login(client))["refreshToken"]["value"]
    response = await client.post("/api/auth/logout", headers=_cookie_header(token))
    assert response.json() == {"ok": True}
    cleared = set_cookies(response)["refreshToken"]
    assert cleared["value"] == ""
    assert cleared["max-age"] == "0"
    assert cleared["path"] == "/api/auth"
    again = await client.post("/api/auth/refresh", headers=_cookie_header(token))
    assert error_of(again)["details"]["code"] == "REFRESH_TOKEN_REVOKED"


async def test_logout_with_the_access_token_also_clears_the_cookie(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(harness, settings_factory)
    jwt = (await _login(client)).json()["jwt"]
    response = await client.post("/api/auth/logout", headers=bearer(jwt))
    assert set_cookies(response)["refreshToken"]["max-age"] == "0"


async def test_logout_with_an_unusable_cookie_still_clears_it(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(cookie_response=True))
    response = await client.post("/api/auth/logout", headers={"Cookie": "refreshToken=garbage"})
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert 'refreshToken=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),  # not a browser: nothing cross-site about it
        ({"Origin": APP}, True),
        ({"Origin": "https://admin.example.com"}, True),  # listed in CORS_ORIGINS
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "http://app.example.com"}, False),  # other scheme, other origin
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Origin": APP, "Sec-Fetch-Site": "cross-site"}, False),
    ],
)
async def test_cross_site_requests_cannot_use_the_cookie(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    headers: dict[str, str],
    allowed: bool,
) -> None:
    client = await _cookie_client(
        harness,
        settings_factory,
        production_url=APP,
        cors_origins="https://admin.example.com",
    )
    token = set_cookies(await _login(client))["refreshToken"]["value"]
    for path in ("/api/auth/refresh", "/api/auth/logout"):
        response = await client.post(path, headers={**_cookie_header(token), **headers})
        if allowed:
            assert response.status_code == 200, (path, response.text)
            if path == "/api/auth/refresh":
                token = set_cookies(response)["refreshToken"]["value"]
        else:
            assert response.status_code == 403
            error = error_of(response)
            assert (error["name"], error["details"]["code"]) == (
                "ForbiddenError",
                "CROSS_SITE_REQUEST",
            )
    if not allowed:
        # The refused logout left the session alive.
        alive = await client.post("/api/auth/refresh", headers=_cookie_header(token))
        assert alive.status_code == 200


async def test_cors_allows_credentials_only_for_configured_origins(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await _cookie_client(harness, settings_factory, production_url=APP)
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = await client.options("/api/auth/refresh", headers={"Origin": APP, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == APP
    assert ok.headers["access-control-allow-credentials"] == "true"
    evil = await client.options(
        "/api/auth/refresh", headers={"Origin": "https://evil.example", **preflight}
    )
    # Refused (not crashed), without the header that would let the browser go on.
    assert evil.status_code == 400, evil.text
    assert "access-control-allow-origin" not in evil.headers
    simple = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers
