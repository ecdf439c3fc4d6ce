"""The Strapi importer, from a real Strapi SQLite file and from a PostgreSQL source, into both target databases;
imported accounts then log in through the real app over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import bcrypt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Session, User
from app.services.importer import (
    ImportReport,
    StrapiSourceError,
    count_strapi_users,
    import_strapi,
    source_engine_url,
)
from app.settings import Settings
from app.store import Store
from tests.api.helpers import bearer, error_of, login, register
from tests.conftest import Harness
from tests.support import (
    STRAPI_FIXTURE,
    T0,
    asyncpg_dsn,
    insert_user,
    recreate_postgres_database,
)

PASSWORDS = {
    "alice": "Secret-pass-123",
    "bob": "pässwörd-ünïcode",
    "carol": "x" * 72,
    "dave": "Dave-pass-123",
}
OTHER_HASH = bcrypt.hashpw(b"someone-else", bcrypt.gensalt(4)).decode()
BLOCKED = "Your account has been blocked by an administrator"


def _fixture_rows() -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{STRAPI_FIXTURE}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM up_users ORDER BY id")]
    finally:
        db.close()


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Change a Strapi SQLite file the way an administrator's SQL would."""
    db = sqlite3.connect(path)
    try:
        for sql, params in statements:
            db.execute(sql, params)
        db.commit()
    finally:
        db.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the Strapi fixture that a test may change."""
    path = tmp_path / "strapi.sqlite"
    shutil.copyfile(STRAPI_FIXTURE, path)
    return path


async def _import(
    settings: Settings, source_url: str | Path, *, now: datetime = T0, **options: Any
) -> ImportReport:
    store = Store.open(settings)
    try:
        return await import_strapi(str(source_url), store, now=now, **options)
    finally:
        await store.close()


async def _users(database_url: str) -> list[dict[str, Any]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(User).order_by(User.id))).mappings()
            return [dict(row) for row in rows]
    finally:
        await engine.dispose()


async def _user(database_url: str, username: str) -> dict[str, Any]:
    return next(u for u in await _users(database_url) if u["username"] == username)


def _counts(report: ImportReport) -> dict[str, int]:
    counts = {
        "read": report.read,
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "kept_newer": report.kept_newer,
        "skipped_other_provider": report.skipped_other_provider,
        "conflicts": len(report.conflicts),
    }
    # Every row read lands in exactly one count.
    assert sum(counts.values()) == 2 * report.read
    return counts


def _expect(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(
        (
            "read",
            "created",
            "updated",
            "unchanged",
            "kept_newer",
            "skipped_other_provider",
            "conflicts",
        ),
        0,
    )
    return base | counts


async def test_imported_strapi_users_log_in(
    harness: Harness, settings: Settings, database_url: str
) -> None:
    before = _sha256(STRAPI_FIXTURE)
    report = await _import(settings, STRAPI_FIXTURE)
    assert _counts(report) == _expect(read=4, created=4)
    assert not report.dry_run
    assert _sha256(STRAPI_FIXTURE) == before  # the source is opened read-only

    rows = _fixture_rows()
    stored = await _users(database_url)
    assert [(u["id"], u["document_id"], u["username"], u["email"]) for u in stored] == [
        (r["id"], r["document_id"], r["username"], r["email"].lower()) for r in rows
    ]
    for user, row in zip(stored, rows, strict=True):
        assert user["password_hash"] == row["password"]  # copied, not recomputed
        assert user["confirmed"] is True
        assert user["blocked"] is bool(row["blocked"])
        assert user["created_at"] == _from_ms(row["created_at"])
        assert user["updated_at"] == _from_ms(row["updated_at"])
        assert user["published_at"] == _from_ms(row["published_at"])

    client = await harness.client(settings)
    for identifier, password, username in [
        ("ALICE@example.com", PASSWORDS["alice"], "alice"),
        ("bob", PASSWORDS["bob"], "bob"),
        ("carol", "x" * 72, "carol"),
        ("carol@example.com", "x" * 80, "carol"),
    ]:
        response = await login(client, identifier, password)
        assert response.status_code == 200, response.text
        body = response.json()["user"]
        row = next(r for r in rows if r["username"] == username)
        assert (body["id"], body["documentId"]) == (row["id"], row["document_id"])
        assert body["createdAt"].endswith(f".{row['created_at'] % 1000:03d}Z")
    assert (await login(client, "carol", "x" * 71)).status_code == 400
    blocked = await login(client, "dave", PASSWORDS["dave"])
    assert blocked.status_code == 400
    assert error_of(blocked)["message"] == BLOCKED


async def test_reimport_is_idempotent_and_applies_source_changes(
    harness: Harness, settings: Settings, database_url: str, source: Path
) -> None:
    first = await _import(settings, source, batch_size=3)
    assert _counts(first) == _expect(read=4, created=4)
    again = await _import(settings, f"sqlite:///{source}", batch_size=3)
    assert _counts(again) == _expect(read=4, unchanged=4)
    assert len(await _users(database_url)) == 4

    client = await harness.client(settings)
    signed_in = await login(client, "bob", PASSWORDS["bob"], requestRefresh=True)
    assert signed_in.status_code == 200
    # An administrator blocks bob in Strapi (as the fixture's dave was: updated_at untouched).
    _edit(source, ("UPDATE up_users SET blocked = 1 WHERE username = ?", ("bob",)))
    changed = await _import(settings, source, batch_size=3)
    assert _counts(changed) == _expect(read=4, updated=1, unchanged=3)
    assert len(await _users(database_url)) == 4
    assert (await _user(database_url, "bob"))["blocked"] is True

    assert error_of(await login(client, "bob", PASSWORDS["bob"]))["message"] == BLOCKED
    me = await client.get("/api/users/me", headers=bearer(signed_in.json()["jwt"]))
    assert me.status_code == 401
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        reasons = (await conn.scalars(select(Session.revoked_reason))).all()
    await engine.dispose()
    assert reasons == ["user_blocked"]

    assert _counts(await _import(settings, source)) == _expect(read=4, unchanged=4)


async def test_a_password_changed_in_strapi_replaces_the_old_one(
    harness: Harness, settings: Settings, database_url: str, source: Path
) -> None:
    await _import(settings, source)
    new_hash = bcrypt.hashpw(b"New-strapi-pass", bcrypt.gensalt(4, prefix=b"2a")).decode()
    later = 1795824546257 + 60_000
    _edit(
        source,
        (
            "UPDATE up_users SET password = ?, updated_at = ? WHERE username = ?",
            (new_hash, later, "alice"),
        ),
    )
    report = await _import(settings, source)
    assert _counts(report) == _expect(read=4, updated=1, unchanged=3)
    alice = await _user(database_url, "alice")
    assert (alice["password_hash"], alice["updated_at"]) == (new_hash, _from_ms(later))
    client = await harness.client(settings)
    assert (await login(client, "alice", "New-strapi-pass")).status_code == 200
    assert (await login(client, "alice", PASSWORDS["alice"])).status_code == 400


async def test_reimport_keeps_what_refreshd_changed_since(
    harness: Harness, settings: Settings, database_url: str, source: Path
) -> None:
    await _import(settings, source)
    client = await harness.client(settings)
    # A login re-hashes bob's bcrypt hash to argon2id (updated_at untouched): the same password, kept.
    assert (await login(client, "bob", PASSWORDS["bob"])).status_code == 200
    assert (await _user(database_url, "bob"))["password_hash"].startswith("$argon2id$")
    # alice changes her password here: refreshd's row is newer than Strapi's.
    signed_in = await login(client, "alice", PASSWORDS["alice"])
    changed = await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": PASSWORDS["alice"],
            "password": "Changed-here-456",
            "passwordConfirmation": "Changed-here-456",
        },
        headers=bearer(signed_in.json()["jwt"]),
    )
    assert changed.status_code == 200, changed.text

    report = await _import(settings, source)
    assert _counts(report) == _expect(read=4, unchanged=3, kept_newer=1)
    assert (await _user(database_url, "bob"))["password_hash"].startswith("$argon2id$")
    assert (await login(client, "alice", "Changed-here-456")).status_code == 200
    assert (await login(client, "alice", PASSWORDS["alice"])).status_code == 400
    assert (await login(client, "bob", PASSWORDS["bob"])).status_code == 200


async def test_dry_run_writes_nothing(settings: Settings, database_url: str, source: Path) -> None:
    report = await _import(settings, source, dry_run=True)
    assert report.dry_run
    assert _counts(report) == _expect(read=4, created=4)
    assert await _users(database_url) == []

    await _import(settings, source)
    before = await _users(database_url)
    _edit(source, ("UPDATE up_users SET blocked = 1, confirmed = 0 WHERE id IN (1, 2)", ()))
    preview = await _import(settings, source, dry_run=True)
    assert _counts(preview) == _expect(read=4, updated=2, unchanged=2)
    assert "dry run" in preview.summary()
    assert await _users(database_url) == before


async def test_conflicts_are_reported_and_skipped(
    harness: Harness, settings: Settings, database_url: str
) -> None:
    # Accounts made here before the import: one holds alice's email, one holds carol's id.
    await insert_user(
        database_url,
        id=10,
        document_id="h" * 24,
        username="alice-here",
        email="alice@example.com",
        password_hash=OTHER_HASH,
    )
    await insert_user(
        database_url,
        id=3,
        document_id="k" * 24,
        username="karl",
        email="karl@example.com",
        password_hash=OTHER_HASH,
    )
    report = await _import(settings, STRAPI_FIXTURE)
    assert _counts(report) == _expect(read=4, created=2, conflicts=2)
    reasons = dict(report.conflicts)
    assert set(reasons) == {1, 3}
    assert "email 'alice@example.com' belongs to user 10" in reasons[1]
    assert "id 3 belongs to a different user" in reasons[3]
    assert "id 1: email" in report.summary()

    stored = {u["id"]: u["username"] for u in await _users(database_url)}
    assert stored == {2: "bob", 3: "karl", 4: "dave", 10: "alice-here"}
    client = await harness.client(settings)
    assert (await login(client, "bob", PASSWORDS["bob"])).status_code == 200
    assert (await login(client, "alice@example.com", PASSWORDS["alice"])).status_code == 400

    # Still in conflict on a re-run, and still nothing duplicated.
    again = await _import(settings, STRAPI_FIXTURE)
    assert _counts(again) == _expect(read=4, unchanged=2, conflicts=2)
    assert len(await _users(database_url)) == 4


async def test_other_providers_bad_rows_and_source_duplicates(
    harness: Harness, settings: Settings, database_url: str, source: Path
) -> None:
    good_hash = bcrypt.hashpw(b"Erin-pass-123", bcrypt.gensalt(4, prefix=b"2b")).decode()
    row = (
        "INSERT INTO up_users (id, document_id, username, email, provider, password,"
        " reset_password_token, confirmation_token, confirmed, blocked, created_at, updated_at,"
        " published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    ms = 1795824600000
    _edit(
        source,
        # A social login: no password, skipped and counted.
        (
            row,
            (5, "g" * 24, "gina", "gina@example.com", "github", None, None, None, 1, 0, ms, ms, ms),
        ),
        # Not a bcrypt hash.
        (
            row,
            (
                6,
                "m" * 24,
                "mal",
                "mal@example.com",
                "local",
                "md5$abc",
                None,
                None,
                1,
                0,
                ms,
                ms,
                ms,
            ),
        ),
        # bob's email again, in another case: the lower id keeps it.
        (
            row,
            (
                7,
                "b" * 24,
                "bob2",
                "BOB@example.com",
                "local",
                good_hash,
                None,
                None,
                1,
                0,
                ms,
                ms,
                ms,
            ),
        ),
        # A local user with no password.
        (
            row,
            (
                8,
                "n" * 24,
                "nopass",
                "nopass@example.com",
                "local",
                None,
                None,
                None,
                1,
                0,
                ms,
                ms,
                ms,
            ),
        ),
        # ISO timestamps, no published_at, a reset token (never imported), a mixed-case email.
        (
            row,
            (
                9,
                "e" * 24,
                "erin",
                "Erin@Example.COM",
                "local",
                good_hash,
                "plaintext-reset-token",
                "plaintext-confirmation",
                0,
                0,
                "2026-11-20 08:30:00.125",
                "2026-11-21T09:00:00.5Z",
                None,
            ),
        ),
        # An unreadable timestamp.
        (
            row,
            (
                11,
                "t" * 24,
                "tim",
                "tim@example.com",
                "local",
                good_hash,
                None,
                None,
                1,
                0,
                "soon",
                ms,
                ms,
            ),
        ),
    )
    assert await count_strapi_users(str(source)) == 10
    report = await _import(settings, source)
    assert _counts(report) == _expect(read=10, created=5, skipped_other_provider=1, conflicts=4)
    reasons = dict(report.conflicts)
    assert set(reasons) == {6, 7, 8, 11}
    assert "malformed password hash" in reasons[6]
    assert "duplicate email 'bob@example.com' in the source (user 2 keeps it)" in reasons[7]
    assert "without a password hash" in reasons[8]
    assert "unreadable created_at" in reasons[11]

    erin = await _user(database_url, "erin")
    assert erin["email"] == "erin@example.com"
    assert erin["confirmed"] is False
    assert erin["created_at"] == datetime(2026, 11, 20, 8, 30, 0, 125000, tzinfo=UTC)
    assert erin["updated_at"] == datetime(2026, 11, 21, 9, 0, 0, 500000, tzinfo=UTC)
    assert erin["published_at"] == erin["created_at"]
    client = await harness.client(settings)
    assert (await login(client, "Erin@example.com", "Erin-pass-123")).status_code == 200
    assert (await login(client, "gina", "")).status_code == 400


async def test_registration_after_import_gets_a_new_id(
    harness: Harness, settings: Settings, source: Path
) -> None:
    _edit(source, ("UPDATE up_users SET id = 1000 WHERE username = ?", ("dave",)))
    await _import(settings, source)
    client = await harness.client(settings)
    body = await register(client, "erin", "erin@example.com")
    assert body["user"]["id"] == 1001
    assert body["user"]["documentId"] not in {r["document_id"] for r in _fixture_rows()}
    taken = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": "Whatever-123"},
    )
    assert taken.status_code == 400
    # A later import leaves the newcomer alone.
    report = await _import(settings, source)
    assert _counts(report) == _expect(read=4, unchanged=4)
    assert (await login(client, "erin", "Secret-pass-123")).status_code == 200


async def test_an_interrupted_import_leaves_whole_batches(
    settings: Settings, database_url: str, source: Path
) -> None:
    class Interrupted(Exception):
        pass

    def stop_after_first_batch(rows: int) -> None:
        assert rows == 3
        raise Interrupted

    with pytest.raises(Interrupted):
        await _import(settings, source, batch_size=3, progress=stop_after_first_batch)
    assert [u["username"] for u in await _users(database_url)] == ["alice", "bob", "carol"]

    seen: list[int] = []
    report = await _import(settings, source, batch_size=3, progress=seen.append)
    assert seen == [3, 1]
    assert _counts(report) == _expect(read=4, created=1, unchanged=3)


def test_source_urls() -> None:
    plain = source_engine_url(str(STRAPI_FIXTURE))
    assert plain.drivername == "sqlite+aiosqlite"
    assert plain.query == {"mode": "ro", "uri": "true"}
    assert plain.database == f"file:{STRAPI_FIXTURE.resolve()}"
    assert source_engine_url(f"sqlite:///{STRAPI_FIXTURE}") == plain
    assert source_engine_url(f"sqlite+aiosqlite:///{STRAPI_FIXTURE}") == plain
    pg = source_engine_url("postgresql://strapi:pw@db:5432/strapi")
    assert pg.render_as_string(hide_password=False) == (
        "postgresql+asyncpg://strapi:pw@db:5432/strapi"
    )
    assert source_engine_url("postgres://db/strapi").drivername == "postgresql+asyncpg"
    with pytest.raises(StrapiSourceError, match="no Strapi database"):
        source_engine_url("/nonexistent/strapi.sqlite")
    with pytest.raises(StrapiSourceError, match="unsupported source"):
        source_engine_url("mysql://db/strapi")


async def test_a_file_without_up_users_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    with pytest.raises(StrapiSourceError, match="up_users"):
        await count_strapi_users(str(empty))


def test_summary_lists_counts_and_conflicts() -> None:
    report = ImportReport(read=30, created=5, conflicts=[(n, "why") for n in range(25)])
    text = report.summary()
    assert text.splitlines()[0] == "Strapi import"
    assert "created" in text
    assert "id 19: why" in text
    assert "id 20: why" not in text
    assert "... and 5 more" in text


# --- a PostgreSQL Strapi ----------------------------------------------------------------------------------------

# Strapi 5's up_users as its PostgreSQL migrations make it.
STRAPI_PG_SCHEMA = """
CREATE TABLE up_users (
    id serial PRIMARY KEY,
    document_id varchar(255),
    username varchar(255),
    email varchar(255),
    provider varchar(255),
    password varchar(255),
    reset_password_token varchar(255),
    confirmation_token varchar(255),
    confirmed boolean,
    blocked boolean,
    created_at timestamp(6),
    updated_at timestamp(6),
    published_at timestamp(6),
    created_by_id integer,
    updated_by_id integer,
    locale varchar(255)
);
CREATE INDEX up_users_documents_idx ON up_users (document_id, locale, published_at);
"""
PG_CREATED = datetime(2026, 10, 1, 7, 15, 30, 123456)  # naive: PostgreSQL Strapi writes UTC
PG_USERS: list[tuple[int, str, str, str, str, bytes | None, bool]] = [
    # id, username, email, provider, password, hash prefix (None: no password), blocked
    (3, "erin", "Erin@Example.com", "local", "Erin-pass-123", b"2a", False),
    (7, "frank", "frank@example.com", "local", "fränk-pässwörd", b"2b", False),
    (8, "grace", "grace@example.com", "local", "g" * 80, b"2y", False),
    (9, "heidi", "heidi@example.com", "local", "Heidi-pass-123", b"2a", True),
    (12, "ivan", "ivan@example.com", "google", "", None, False),
]


def _bcrypt_hash(password: str, prefix: bytes) -> str:
    # bcrypt writes $2a$ and $2b$; $2y$ (PHP's name) is the same algorithm, as bcryptjs reads it.
    made = bcrypt.hashpw(
        password.encode()[:72], bcrypt.gensalt(4, prefix=b"2b" if prefix == b"2y" else prefix)
    )
    return (b"$2y$" + made[4:] if prefix == b"2y" else made).decode()


async def _fill_strapi_postgres(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(STRAPI_PG_SCHEMA)
        for user_id, username, email, provider, password, prefix, blocked in PG_USERS:
            await conn.execute(
                "INSERT INTO up_users (id, document_id, username, email, provider, password,"
                " reset_password_token, confirmed, blocked, created_at, updated_at, published_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8, $9, $10, $11)",
                user_id,
                f"{username[0]}pg{user_id:021d}",
                username,
                email,
                provider,
                _bcrypt_hash(password, prefix) if prefix else None,
                "plaintext-reset",
                blocked,
                PG_CREATED,
                PG_CREATED + timedelta(minutes=user_id),
                None if user_id == 7 else PG_CREATED + timedelta(seconds=1),
            )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def strapi_postgres() -> str:
    url = recreate_postgres_database("strapi_source")
    asyncio.run(_fill_strapi_postgres(url))
    return url


@pytest.mark.parametrize("scheme", ["postgresql://", "postgres://"])
async def test_import_from_a_postgresql_strapi(
    harness: Harness,
    settings: Settings,
    database_url: str,
    strapi_postgres: str,
    scheme: str,
) -> None:
    source_url = strapi_postgres.replace("postgresql+asyncpg://", scheme)
    report = await _import(settings, source_url, batch_size=2)
    assert _counts(report) == _expect(read=5, created=4, skipped_other_provider=1)

    stored = {u["username"]: u for u in await _users(database_url)}
    assert sorted(stored) == ["erin", "frank", "grace", "heidi"]
    assert [stored[name]["id"] for name in ("erin", "frank", "grace", "heidi")] == [3, 7, 8, 9]
    assert stored["erin"]["email"] == "erin@example.com"
    assert stored["erin"]["document_id"] == "epg000000000000000000003"
    assert [stored[n]["password_hash"][:4] for n in ("erin", "frank", "grace")] == [
        "$2a$",
        "$2b$",
        "$2y$",
    ]
    # Naive timestamps are UTC; kept to the millisecond clients see; no published_at means created_at.
    created = PG_CREATED.replace(microsecond=123000, tzinfo=UTC)
    assert stored["erin"]["created_at"] == created
    assert stored["erin"]["updated_at"] == created + timedelta(minutes=3)
    assert stored["frank"]["published_at"] == created

    client = await harness.client(settings)
    for identifier, password in [
        ("ERIN@example.com", "Erin-pass-123"),
        ("frank", "fränk-pässwörd"),
        ("grace", "g" * 72),
        ("grace@example.com", "g" * 80),
    ]:
        response = await login(client, identifier, password)
        assert response.status_code == 200, (identifier, response.text)
    assert error_of(await login(client, "heidi", "Heidi-pass-123"))["message"] == BLOCKED
    body = await register(client, "judy", "judy@example.com")
    assert body["user"]["id"] == 10

    again = await _import(settings, source_url)
    assert _counts(again) == _expect(read=5, unchanged=4, skipped_other_provider=1)
