from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, register
from tests.conftest import Harness
from tests.support import FakeClock

USER_KEYS = [
    "id",
    "documentId",
    "username",
    "email",
    "provider",
    "confirmed",
    "blocked",
    "createdAt",
    "updatedAt",
    "publishedAt",
]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_register_returns_jwt_and_the_exact_user_object(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    body = await register(client, "alice", "Alice@Example.COM")
    assert list(body) == ["jwt", "user"]
    user = body["user"]
    assert list(user) == USER_KEYS
    assert user["id"] == 1
    assert re.fullmatch(r"[a-z][a-z0-9]{23}", user["documentId"])
    assert user["username"] == "alice"
    assert user["email"] == "alice@example.com"
    assert user["provider"] == "local"
    assert user["confirmed"] is True
    assert user["blocked"] is False
    assert user["createdAt"] == "2026-11-28T12:00:00.123Z"
    assert all(ISO_MS.match(user[key]) for key in ("createdAt", "updatedAt", "publishedAt"))
    me = await client.get("/api/users/me", headers=bearer(body["jwt"]))
    assert me.status_code == 200
    assert me.json() == user


async def test_register_then_login_with_the_new_password(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await client.post(
        "/api/auth/local", json={"identifier": "ALICE@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["user"]["username"] == "alice"


@pytest.mark.parametrize(
    ("username", "email"),
    [
        ("alice", "other@example.com"),  # same username
        ("other", "alice@example.com"),  # same email
        ("other", "ALICE@EXAMPLE.COM"),  # same email, other case
        ("alice@example.com", "x@example.com"),  # username equal to someone's email
    ],
)
async def test_duplicate_username_or_email_is_refused(
    client: httpx.AsyncClient, username: str, email: str
) -> None:
    await register(client, "alice", "alice@example.com")
    response = await client.post(
        "/api/auth/local/register",
        json={"username": username, "email": email, "password": PASSWORD},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["name"] == "ApplicationError"
    assert error["message"] == "Email or Username are already taken"
    assert error["details"] == {}


async def test_email_used_as_someone_elses_username_is_refused(client: httpx.AsyncClient) -> None:
    await register(client, "bob@example.com", "bob1@example.com")
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "bobby", "email": "BOB@example.com", "password": PASSWORD},
    )
    assert error_of(response)["message"] == "Email or Username are already taken"


async def test_usernames_are_case_sensitive(client: httpx.AsyncClient) -> None:
    await register(client, "alice", "alice@example.com")
    body = await register(client, "Alice", "alice2@example.com")
    assert body["user"]["username"] == "Alice"


def _errors(response: httpx.Response) -> list[tuple[list[str], str]]:
    error = error_of(response)
    assert error["name"] == "ValidationError"
    return [(e["path"], e["message"]) for e in error["details"]["errors"]]


@pytest.mark.parametrize(
    ("body", "message", "errors"),
    [
        (
            {},
            "3 errors occurred",
            [
                (["username"], "username is a required field"),
                (["email"], "email is a required field"),
                (["password"], "password is a required field"),
            ],
        ),
        (
            {"username": "alice", "email": "not-an-email", "password": PASSWORD},
            "email must be a valid email",
            [(["email"], "email must be a valid email")],
        ),
        (
            {"username": "alice", "email": "alice@example.com", "password": "x" * 73},
            "Password must be less than 73 bytes",
            [(["password"], "Password must be less than 73 bytes")],
        ),
        (
            # 37 two-byte characters: 74 bytes, though only 37 characters
            {"username": "alice", "email": "alice@example.com", "password": "é" * 37},
            "Password must be less than 73 bytes",
            [(["password"], "Password must be less than 73 bytes")],
        ),
        (
            {"username": 12, "email": "alice@example.com", "password": PASSWORD},
            "username must be a `string` type, but the final value was: `12`.",
            [(["username"], "username must be a `string` type, but the final value was: `12`.")],
        ),
        (
            {"username": "", "email": "alice@example.com", "password": PASSWORD},
            "username is a required field",
            [(["username"], "username is a required field")],
        ),
        (
            {"username": "ab", "email": "a@b.c", "password": "12345"},
            "3 errors occurred",
            [
                (["username"], "username must be at least 3 characters"),
                (["email"], "email must be at least 6 characters"),
                (["password"], "password must be at least 6 characters"),
            ],
        ),
        (
            {"username": "u" * 256, "email": "alice@example.com", "password": PASSWORD},
            "username must be at most 255 characters",
            [(["username"], "username must be at most 255 characters")],
        ),
    ],
)
async def test_validation_messages(
    client: httpx.AsyncClient, body: dict[str, object], message: str, errors: list[object]
) -> None:
    response = await client.post("/api/auth/local/register", json=body)
    assert response.status_code == 400
    assert error_of(response)["message"] == message
    assert _errors(response) == errors


async def test_a_72_byte_password_is_accepted(client: httpx.AsyncClient) -> None:
    await register(client, password="é" * 36)  # exactly 72 bytes


async def test_unknown_fields_are_named_in_body_order(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/local/register",
        json={
            "username": "alice",
            "foo": 1,
            "email": "alice@example.com",
            "password": PASSWORD,
            "provider": "github",
        },
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["name"] == "ValidationError"
    assert error["message"] == "Invalid parameters: foo, provider"
    assert error["details"] == {}


async def test_registration_can_be_switched_off(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(allow_register=False))
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["name"], error["message"]) == (
        "ApplicationError",
        "Register action is currently disabled",
    )


async def test_password_minimum_is_configurable(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(password_min_length=12))
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": "elevenchars"},
    )
    assert error_of(response)["message"] == "password must be at least 12 characters"


async def test_the_password_is_stored_as_argon2id_only(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client)
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT password_hash FROM users"))).scalar_one()
    await engine.dispose()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


async def test_concurrent_registrations_all_succeed_without_lock_errors(
    harness: Harness, settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    import asyncio

    # Thirty clients behind a trusted proxy: one address alone has a budget of 10 per minute (contract §6).
    client = await harness.client(settings_factory(trusted_proxies="203.0.113.7"))
    clock.advance(timedelta(seconds=1))
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/auth/local/register",
                json={
                    "username": f"user{i}",
                    "email": f"user{i}@example.com",
                    "password": PASSWORD,
                },
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            for i in range(30)
        )
    )
    assert [r.status_code for r in responses] == [200] * 30
    assert len({r.json()["user"]["id"] for r in responses}) == 30


async def test_racing_duplicate_registrations_give_one_account(client: httpx.AsyncClient) -> None:
    import asyncio

    responses = await asyncio.gather(
        *(
            client.post(
                "/api/auth/local/register",
                json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
            )
            for _ in range(10)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 9
    for response in responses:
        if response.status_code == 400:
            assert error_of(response)["message"] == "Email or Username are already taken"


async def test_password_maximum_is_configurable_below_72_bytes(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(password_max_bytes=16))
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": "x" * 17},
    )
    assert error_of(response)["message"] == "Password must be less than 17 bytes"
    await register(client, password="x" * 16)


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "\ufdfa" * 20, "email": "long@example.com"},  # 20 typed, 360 stored
        {"username": "longmail", "email": "\ufdfa" * 15 + "@example.com"},  # 282 stored
    ],
)
async def test_a_name_too_long_once_normalized_is_a_400_not_a_500(
    client: httpx.AsyncClient, fields: dict[str, str]
) -> None:
    """Names are stored in NFKC form, which can be longer than what was typed: the column's limit holds for it."""
    response = await client.post(
        "/api/auth/local/register", json={**fields, "password": "Secret-pass-123"}
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["name"] == "ValidationError"
    too_long = "username" if len(fields["username"]) == 20 else "email"
    assert error["message"] == f"{too_long} is invalid"


@pytest.mark.parametrize(
    "identifier",
    ["\ufdfa" * 20, "\ufdfa" * 15 + "@example.com"],  # 360 and 282 characters once normalized
)
async def test_login_with_an_identifier_too_long_once_normalized_is_a_400(
    client: httpx.AsyncClient, identifier: str
) -> None:
    """The look-up of a name longer than its column once normalized finds no account; it does not 500."""
    await register(client)
    login = await client.post(
        "/api/auth/local", json={"identifier": identifier, "password": PASSWORD}
    )
    assert login.status_code == 400, login.text
    assert error_of(login)["name"] == "ValidationError"
    assert error_of(login)["message"] == "Invalid identifier or password"


@pytest.mark.parametrize("route", ["forgot-password", "send-email-confirmation"])
async def test_email_routes_refuse_an_email_too_long_once_normalized_with_a_400(
    client: httpx.AsyncClient, route: str
) -> None:
    response = await client.post(
        f"/api/auth/{route}", json={"email": "\ufdfa" * 15 + "@example.com"}
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["name"] == "ValidationError"
    assert error_of(response)["message"] == "email is invalid"
