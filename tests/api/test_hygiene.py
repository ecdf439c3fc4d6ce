"""Response hygiene: no cache keeps a token or account data, no 400 echoes a secret, a reset proves the mailbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, login, register
from tests.conftest import Harness

APP = "https://app.example.com"
NEW_PASSWORD = "Brand-new-pass-456"
SECRET = "My-Real-Passw0rd"


def assert_no_store(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert response.headers.get_list("pragma") == ["no-cache"]


def _reset_code(outbox: Path) -> str:
    newest = sorted(outbox.glob("*.eml"))[-1]
    message = message_from_bytes(newest.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    text: str = body.get_content()
    link = next(word for word in text.split() if "code=" in word)
    return parse_qs(urlsplit(link).query)["code"][0]


def _refresh_cookie(response: httpx.Response) -> str:
    """``refreshToken=<value>`` from the response's Set-Cookie (Secure: the client would not send it on http)."""
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return f"refreshToken={jar['refreshToken'].value}"


async def _forgot_and_reset(client: httpx.AsyncClient, outbox: Path) -> httpx.Response:
    forgot = await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    assert forgot.status_code == 200
    code = _reset_code(outbox)
    return await client.post(
        "/api/auth/reset-password",
        json={"code": code, "password": NEW_PASSWORD, "passwordConfirmation": NEW_PASSWORD},
    )


async def test_token_and_account_responses_are_not_stored(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    client = await harness.client(settings_factory(mail_outbox=tmp_path))
    registration = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
    )
    assert_no_store(registration)
    logged_in = await login(client, requestRefresh=True)
    assert_no_store(logged_in)
    jwt, refresh_token = logged_in.json()["jwt"], logged_in.json()["refreshToken"]
    for path in ("/api/auth/local/refresh", "/api/auth/refresh"):
        refreshed = await client.post(path, json={"refreshToken": refresh_token})
        assert_no_store(refreshed)
        refresh_token = refreshed.json()["refreshToken"]
    assert_no_store(await client.get("/api/users/me", headers=bearer(jwt)))
    assert_no_store(await client.get("/api/auth/sessions", headers=bearer(jwt)))
    changed = await client.post(
        "/api/auth/change-password",
        headers=bearer(jwt),
        json={
            "currentPassword": PASSWORD,
            "password": NEW_PASSWORD,
            "passwordConfirmation": NEW_PASSWORD,
        },
    )
    assert_no_store(changed)
    assert_no_store(await _forgot_and_reset(client, tmp_path))
    # Nothing private in these: caches may do as they like.
    assert "cache-control" not in (await client.get("/healthz")).headers


async def test_cookie_mode_and_unconfirmed_registration_are_not_stored(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    client = await harness.client(
        settings_factory(cookie_response=True, production_url=APP, mail_outbox=tmp_path)
    )
    await register(client)
    logged_in = await login(client, requestRefresh=True)
    assert_no_store(logged_in)
    cookie = _refresh_cookie(logged_in)
    for path in ("/api/auth/local/refresh", "/api/auth/refresh"):
        refreshed = await client.post(path, headers={"Origin": APP, "Cookie": cookie})
        assert_no_store(refreshed)
        cookie = _refresh_cookie(refreshed)

    confirming = await harness.client(settings_factory(email_confirmation=True))
    unconfirmed = await confirming.post(
        "/api/auth/local/register",
        json={"username": "bob", "email": "bob@example.com", "password": PASSWORD},
    )
    assert_no_store(unconfirmed)
    assert set(unconfirmed.json()) == {"user"}


WRONG_TYPES: list[Any] = [
    [SECRET],
    {"value": SECRET},
    {"nested": [{"deeper": SECRET}]},
    12345678,
    1234.5678,
    True,
]


def _assert_not_echoed(response: httpx.Response, *secrets: str) -> None:
    assert response.status_code == 400, response.text
    error_of(response)
    for secret in secrets:
        assert secret not in response.text


@pytest.mark.parametrize("value", WRONG_TYPES, ids=lambda v: type(v).__name__)
async def test_a_secret_of_the_wrong_type_is_never_echoed(
    client: httpx.AsyncClient, value: Any
) -> None:
    shown = json.dumps(value).strip('"')
    # "true" is too common to look for anywhere in an answer; as the value quoted in a message, it is not.
    secrets = [SECRET, shown] if not isinstance(value, bool) else [SECRET, f"`{shown}`"]
    jwt = (await register(client))["jwt"]
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/api/auth/local", {"identifier": "alice", "password": value}),
        (
            "/api/auth/local/register",
            {"username": "bob", "email": "bob@example.com", "password": value},
        ),
        ("/api/auth/logout", {"refreshToken": value}),
        (
            "/api/auth/reset-password",
            {"code": value, "password": value, "passwordConfirmation": value},
        ),
    ]
    for path, body in bodies:
        response = await client.post(path, json=body)
        _assert_not_echoed(response, *secrets)
        assert "[redacted]" in response.text
    for field in ("currentPassword", "password", "passwordConfirmation"):
        body = {"currentPassword": PASSWORD, "password": "Abcdef-1", "passwordConfirmation": "x"}
        body[field] = value
        response = await client.post("/api/auth/change-password", headers=bearer(jwt), json=body)
        _assert_not_echoed(response, *secrets)
        errors = error_of(response)["details"]["errors"]
        assert any(
            error["path"] == [field] and "`[redacted]`" in error["message"] for error in errors
        ), response.text


async def test_secrets_inside_another_fields_value_are_not_echoed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/local",
        json={"identifier": {"user": "alice", "password": SECRET}, "password": "x"},
    )
    _assert_not_echoed(response, SECRET)
    # The rest of the value is still shown, as Strapi shows it: it helps the caller see what went wrong.
    assert '"user": "alice"' in error_of(response)["message"]


async def test_a_non_secret_field_of_the_wrong_type_is_still_shown(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/local", json={"identifier": ["alice"], "password": PASSWORD}
    )
    assert error_of(response)["message"] == (
        'identifier must be a `string` type, but the final value was: `[\n  "alice"\n]`.'
    )


async def test_reset_password_confirms_an_unconfirmed_email(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    client = await harness.client(
        settings_factory(email_confirmation=True, mail_outbox=tmp_path, request_refresh_on_all=True)
    )
    registered = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
    )
    assert registered.json()["user"]["confirmed"] is False
    assert error_of(await login(client))["message"] == "Your account email is not confirmed"

    reset = await _forgot_and_reset(client, tmp_path)
    assert reset.status_code == 200, reset.text
    body = reset.json()
    assert body["user"]["confirmed"] is True
    me = await client.get("/api/users/me", headers=bearer(body["jwt"]))
    assert me.status_code == 200
    assert me.json()["confirmed"] is True
    refreshed = await client.post(
        "/api/auth/local/refresh", json={"refreshToken": body["refreshToken"]}
    )
    assert refreshed.status_code == 200
    assert (
        await client.get("/api/users/me", headers=bearer(refreshed.json()["jwt"]))
    ).status_code == 200
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200
