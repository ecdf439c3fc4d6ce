"""Small request helpers for the API tests."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import httpx

PASSWORD = "Secret-pass-123"


async def register(
    client: httpx.AsyncClient,
    username: str = "alice",
    email: str = "alice@example.com",
    password: str = PASSWORD,
) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/local/register",
        json={"username": username, "email": email, "password": password},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    client: httpx.AsyncClient, identifier: str = "alice", password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/auth/local", json={"identifier": identifier, "password": password, **extra}
    )


async def registered_with_refresh(client: httpx.AsyncClient) -> dict[str, Any]:
    """Register alice and log her in with ``requestRefresh``; the login's body (jwt, user, refreshToken)."""
    await register(client)
    response = await login(client, requestRefresh=True)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object, after checking the envelope around it."""
    body = response.json()
    assert set(body) == {"data", "error"}
    assert body["data"] is None
    error: dict[str, Any] = body["error"]
    assert set(error) == {"status", "name", "message", "details"}
    assert error["status"] == response.status_code
    return error


def set_cookies(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """Every Set-Cookie of a response, as name -> attributes (lower-cased), value under 'value', the whole header
    under 'raw'."""
    found: dict[str, dict[str, Any]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attributes: dict[str, Any] = {k: v for k, v in morsel.items() if v}
            attributes["value"] = morsel.value
            attributes["raw"] = header
            found[name] = attributes
    return found
