from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import User
from app.security.passwords import Argon2Params, build_context, hash_password
from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, login, register
from tests.conftest import Harness
from tests.support import insert_user


async def _block(database_url: str, username: str) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(update(User).where(User.username == username).values(blocked=True))
    await engine.dispose()


async def test_login_by_username_and_by_email_in_any_case(client: httpx.AsyncClient) -> None:
    registered = await register(client, "alice", "alice@example.com")
    for identifier in ("alice", "alice@example.com", "ALICE@Example.COM"):
        response = await login(client, identifier)
        assert response.status_code == 200, identifier
        body = response.json()
        assert list(body) == ["jwt", "user"]
        assert body["user"] == registered["user"]
        me = await client.get("/api/users/me", headers=bearer(body["jwt"]))
        assert me.json()["id"] == registered["user"]["id"]


async def test_username_match_is_case_sensitive(client: httpx.AsyncClient) -> None:
    await register(client, "alice", "alice@example.com")
    response = await login(client, "Alice")
    assert response.status_code == 400
    assert error_of(response)["message"] == "Invalid identifier or password"


@pytest.mark.parametrize("identifier", ["alice", "nobody", "nobody@example.com"])
async def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: httpx.AsyncClient, identifier: str
) -> None:
    await register(client)
    response = await login(client, identifier, "wrong-password")
    assert response.status_code == 400
    error = error_of(response)
    assert error == {
        "status": 400,
        "name": "ValidationError",
        "message": "Invalid identifier or password",
        "details": {},
    }


async def test_blocked_user_is_refused_only_after_the_password_check(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await register(client)
    await _block(database_url, "alice")
    wrong = await login(client, "alice", "wrong-password")
    assert error_of(wrong)["message"] == "Invalid identifier or password"
    right = await login(client, "alice")
    assert right.status_code == 400
    error = error_of(right)
    assert (error["name"], error["message"]) == (
        "ApplicationError",
        "Your account has been blocked by an administrator",
    )


async def test_unconfirmed_user_is_refused_when_confirmation_is_on(
    harness: Harness, settings_factory: Callable[..., Settings], database_url: str
) -> None:
    client = await harness.client(settings_factory(email_confirmation=True))
    # Registration with confirmation on is the lifecycle issue's; make the row directly.
    await insert_user(
        database_url,
        document_id="abcdefghijklmnopqrstuvwx",
        username="carol",
        email="carol@example.com",
        password_hash=await _hash(PASSWORD),
        confirmed=False,
    )
    wrong = await login(client, "carol", "wrong-password")
    assert error_of(wrong)["message"] == "Invalid identifier or password"
    response = await login(client, "carol")
    error = error_of(response)
    assert (error["name"], error["message"]) == (
        "ApplicationError",
        "Your account email is not confirmed",
    )


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hash_password, build_context(Argon2Params()), password)


@pytest.mark.parametrize(
    ("body", "message", "paths"),
    [
        ({}, "2 errors occurred", [["identifier"], ["password"]]),
        ({"identifier": "alice"}, "password is a required field", [["password"]]),
        ({"identifier": "", "password": "x"}, "identifier is a required field", [["identifier"]]),
        ({"identifier": None, "password": "x"}, "identifier is a required field", [["identifier"]]),
        (
            {"identifier": 123, "password": "x"},
            "identifier must be a `string` type, but the final value was: `123`.",
            [["identifier"]],
        ),
        (
            {"identifier": "alice", "password": ["x"]},
            # Never echoed, whatever its type (tests/api/test_hygiene.py).
            "password must be a `string` type, but the final value was: `[redacted]`.",
            [["password"]],
        ),
        (
            {"identifier": {"$ne": ""}, "password": "x"},
            'identifier must be a `string` type, but the final value was: `{\n  "$ne": ""\n}`.',
            [["identifier"]],
        ),
        (
            {"identifier": "alice", "password": "x", "requestRefresh": "maybe"},
            'requestRefresh must be a `boolean` type, but the final value was: `"maybe"`.',
            [["requestRefresh"]],
        ),
    ],
)
async def test_login_validation(
    client: httpx.AsyncClient, body: dict[str, object], message: str, paths: list[list[str]]
) -> None:
    response = await client.post("/api/auth/local", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["name"] == "ValidationError"
    assert error["message"] == message
    assert [e["path"] for e in error["details"]["errors"]] == paths


async def test_request_refresh_must_be_a_json_boolean(client: httpx.AsyncClient) -> None:
    """Found by the schema fuzzer: a lax boolean took 0, "yes", "false"... where the contract wants a 400."""
    await register(client)
    for value in ("true", "false", 0, 1):
        response = await login(client, requestRefresh=value)
        assert response.status_code == 400
        assert error_of(response)["message"].startswith("requestRefresh must be a `boolean` type")
    assert "refreshToken" in (await login(client, requestRefresh=True)).json()


async def test_unknown_keys_are_ignored_on_login(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await login(client, deviceId="x", anything={"nested": 1})
    assert response.status_code == 200


async def test_passwords_longer_than_72_bytes_are_cut_like_bcryptjs(
    client: httpx.AsyncClient,
) -> None:
    await register(client, password="x" * 72)
    assert (await login(client, password="x" * 80)).status_code == 200
    assert (await login(client, password="x" * 71)).status_code == 400


async def test_every_login_starts_its_own_session(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await register(client)
    first = (await login(client)).json()["jwt"]
    second = (await login(client)).json()["jwt"]
    assert first != second
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT ip, user_agent FROM sessions"))).all()
    await engine.dispose()
    assert len(rows) == 3  # register + two logins
    assert all(row.ip == "203.0.113.7" for row in rows)


async def test_hashing_runs_off_the_event_loop(client: httpx.AsyncClient) -> None:
    """While logins hash, the loop still serves other requests: a cheap request finishes first."""
    await register(client)
    logins = [asyncio.create_task(login(client)) for _ in range(4)]
    await asyncio.sleep(0)  # let the logins reach the hashing pool
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert not all(task.done() for task in logins)
    assert [r.status_code for r in await asyncio.gather(*logins)] == [200] * 4
