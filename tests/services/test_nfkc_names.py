"""Usernames and emails compared in Unicode NFKC form: two spellings of one name are one account."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import User
from app.services.importer import import_strapi
from app.settings import Settings
from app.store import Store
from tests.api.helpers import PASSWORD, error_of, login, register
from tests.cli_support import run_cli
from tests.support import (
    STRAPI_FIXTURE,
    T0,
    downgrade,
    insert_user,
    migrate,
    recreate_postgres_database,
)

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")
FULL_WIDTH = "\uff2a\uff4f\uff53\u00e9"  # "José" in full-width letters
FULL_WIDTH_BOB = "\uff42\uff4f\uff42"
TAKEN = "Email or Username are already taken"


def test_the_spellings_differ() -> None:
    assert len({NFC, NFD, FULL_WIDTH}) == 3
    assert {unicodedata.normalize("NFKC", s) for s in (NFC, NFD, FULL_WIDTH)} == {NFC}


async def _users(database_url: str) -> list[tuple[int, str, str]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(User.id, User.username, User.email).order_by(User.id))
            return [(int(i), str(u), str(e)) for i, u, e in rows]
    finally:
        await engine.dispose()


async def test_register_and_login_compare_nfkc(
    client: httpx.AsyncClient, database_url: str
) -> None:
    user = (await register(client, NFD, f"{NFD}@example.com"))["user"]
    assert (user["username"], user["email"]) == (NFC, f"{NFC.lower()}@example.com")
    assert await _users(database_url) == [(1, NFC, f"{NFC.lower()}@example.com")]
    for username, email in (
        (NFC, "other@example.com"),
        (FULL_WIDTH, "other@example.com"),
        ("someone", f"{FULL_WIDTH}@EXAMPLE.com"),
    ):
        response = await client.post(
            "/api/auth/local/register",
            json={"username": username, "email": email, "password": PASSWORD},
        )
        assert response.status_code == 400, (username, email)
        assert error_of(response)["message"] == TAKEN
    for identifier in (NFC, NFD, FULL_WIDTH, f"{FULL_WIDTH.upper()}@example.com"):
        response = await login(client, identifier)
        assert response.status_code == 200, identifier
        assert response.json()["user"]["id"] == 1
    assert len(await _users(database_url)) == 1


def _strapi_row(user_id: int, username: str, email: str) -> tuple[Any, ...]:
    password = bcrypt.hashpw(b"Strapi-pass-123", bcrypt.gensalt(4, prefix=b"2b")).decode()
    ms = 1795824600000
    return (
        user_id,
        chr(96 + user_id % 26) * 24,
        username,
        email,
        "local",
        password,
        1,
        0,
        ms,
        ms,
        ms,
    )


async def test_the_importer_compares_nfkc(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    await insert_user(  # NFC, here already (an id the Strapi fixture does not use)
        database_url,
        id=500,
        document_id="r" * 24,
        username="Renée",
        email="renee@example.com",
        password_hash="x",
    )
    source = tmp_path / "strapi.sqlite"
    shutil.copyfile(STRAPI_FIXTURE, source)
    db = sqlite3.connect(source)
    try:
        db.executemany(
            "INSERT INTO up_users (id, document_id, username, email, provider, password, confirmed,"
            " blocked, created_at, updated_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                _strapi_row(20, NFD, "jose@example.com"),
                _strapi_row(21, NFC, "jose2@example.com"),  # one name with user 20's
                _strapi_row(22, "zoe", f"{FULL_WIDTH}@example.com"),
                _strapi_row(23, unicodedata.normalize("NFD", "Renée"), "renee2@example.com"),
            ],
        )
        db.commit()
    finally:
        db.close()
    target = Store.open(settings)
    try:
        report = await import_strapi(str(source), target, now=T0)
    finally:
        await target.close()
    reasons = dict(report.conflicts)
    assert set(reasons) == {21, 23}
    assert reasons[21] == f"duplicate username {NFC!r} in the source (user 20 keeps it)"
    assert "username" in reasons[23]
    assert "500" in reasons[23]
    imported = {i: (u, e) for i, u, e in await _users(database_url)}
    assert imported[20] == (NFC, "jose@example.com")
    assert imported[22] == ("zoe", f"{NFC.lower()}@example.com")
    assert 21 not in imported
    assert 23 not in imported


@pytest.fixture
def database_at_0005(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'nfkc.db'}"
    else:
        url = recreate_postgres_database("nfkc")
    migrate(url, "0005")
    return url


async def test_migration_normalizes_rows_and_reports_collisions(
    database_at_0005: str, settings_factory: Callable[..., Settings]
) -> None:
    url = database_at_0005
    rows = [
        (1, NFD, "plain@example.com"),  # alone: rewritten
        (2, "ann", f"{FULL_WIDTH}@Example.com"),  # alone: rewritten, lower-cased
        (3, "Zoë", "zoe@example.com"),  # NFC already: untouched
        (4, unicodedata.normalize("NFD", "Zoë"), "zoe2@example.com"),  # one name with 3
        (5, "bob", "bob@example.com"),
        (6, FULL_WIDTH_BOB, "bob2@example.com"),  # full-width: one name with 5
    ]
    for user_id, username, email in rows:
        await insert_user(
            url,
            id=user_id,
            document_id=chr(96 + user_id) * 24,
            username=username,
            email=email,
            password_hash="x",
        )
    await asyncio.to_thread(migrate, url)
    after = await _users(url)
    assert after == [
        (1, NFC, "plain@example.com"),
        (2, "ann", f"{NFC.lower()}@example.com"),
        *rows[2:],  # nothing merged, nothing renamed into a clash
    ]

    listed = run_cli(url, "user", "collisions")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("username 'Zoë': user 3 ('Zoë', 'zoe@example.com'), user 4 (")
    assert lines[1] == (
        f"username 'bob': user 5 ('bob', 'bob@example.com'), user 6 ('{FULL_WIDTH_BOB}', 'bob2@example.com')"
    )
    await asyncio.to_thread(downgrade, url, "0005")  # and up again: nothing changes
    await asyncio.to_thread(migrate, url)
    assert await _users(url) == after


def test_no_collisions_is_said(database_at_0005: str) -> None:
    migrate(database_at_0005)
    listed = run_cli(database_at_0005, "user", "collisions")
    assert (listed.returncode, listed.stdout.strip()) == (0, "no collisions")
