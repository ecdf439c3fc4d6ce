"""Accounts carried over from a real Strapi database log in with their old passwords and are re-hashed."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import User
from tests.api.helpers import error_of, login
from tests.support import STRAPI_FIXTURE, insert_user

PASSWORDS = {
    "alice": "Secret-pass-123",
    "bob": "pässwörd-ünïcode",
    "carol": "x" * 72,
    "dave": "Dave-pass-123",
}


def _strapi_users() -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{STRAPI_FIXTURE}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM up_users ORDER BY id").fetchall()
    finally:
        db.close()


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@pytest.fixture
async def strapi_users(database_url: str) -> list[sqlite3.Row]:
    rows = _strapi_users()
    for row in rows:
        await insert_user(
            database_url,
            id=row["id"],
            document_id=row["document_id"],
            username=row["username"],
            email=row["email"].lower(),
            provider=row["provider"],
            password_hash=row["password"],
            confirmed=bool(row["confirmed"]),
            blocked=bool(row["blocked"]),
            created_at=_from_ms(row["created_at"]),
            updated_at=_from_ms(row["updated_at"]),
            published_at=_from_ms(row["published_at"]),
        )
    return rows


async def _stored_hash(database_url: str, username: str) -> str:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        value = await conn.scalar(select(User.password_hash).where(User.username == username))
    await engine.dispose()
    assert value is not None
    return str(value)


async def test_fixture_holds_bcryptjs_hashes(strapi_users: list[sqlite3.Row]) -> None:
    assert [row["username"] for row in strapi_users] == ["alice", "bob", "carol", "dave"]
    assert all(row["password"].startswith("$2a$10$") for row in strapi_users)


@pytest.mark.parametrize(
    ("username", "identifier", "password"),
    [
        ("alice", "ALICE@example.com", PASSWORDS["alice"]),
        ("bob", "bob", PASSWORDS["bob"]),
        ("carol", "carol", "x" * 72),
        ("carol", "carol@example.com", "x" * 80),
    ],
)
async def test_strapi_password_logs_in_and_is_rehashed(
    client: httpx.AsyncClient,
    database_url: str,
    strapi_users: list[sqlite3.Row],
    username: str,
    identifier: str,
    password: str,
) -> None:
    row = next(r for r in strapi_users if r["username"] == username)
    response = await login(client, identifier, password)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert user["id"] == row["id"]
    assert user["documentId"] == row["document_id"]
    assert user["createdAt"] == _from_ms(row["created_at"]).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{row['created_at'] % 1000:03d}Z"
    )
    rehashed = await _stored_hash(database_url, username)
    assert rehashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # The new hash is of what bcrypt checked, so the same typed password keeps working.
    assert (await login(client, identifier, password)).status_code == 200
    assert (await login(client, username, PASSWORDS[username])).status_code == 200


async def test_bcrypt_ignores_bytes_past_72_but_not_fewer(
    client: httpx.AsyncClient, strapi_users: list[sqlite3.Row]
) -> None:
    assert strapi_users
    response = await login(client, "carol", "x" * 71)
    assert error_of(response)["message"] == "Invalid identifier or password"


async def test_wrong_password_leaves_the_bcrypt_hash_alone(
    client: httpx.AsyncClient, database_url: str, strapi_users: list[sqlite3.Row]
) -> None:
    response = await login(client, "alice", "not-her-password")
    assert error_of(response)["message"] == "Invalid identifier or password"
    original = next(r["password"] for r in strapi_users if r["username"] == "alice")
    assert await _stored_hash(database_url, "alice") == original


async def test_blocked_strapi_user_gets_strapis_message(
    client: httpx.AsyncClient, database_url: str, strapi_users: list[sqlite3.Row]
) -> None:
    response = await login(client, "dave", PASSWORDS["dave"])
    error = error_of(response)
    assert error["message"] == "Your account has been blocked by an administrator"
    assert (await _stored_hash(database_url, "dave")).startswith("$2a$")
    assert strapi_users
