"""The benchmark's databases: created, migrated with Alembic, seeded with users and sessions, bulk-loaded.

Sessions are written straight into the table and their tokens minted with the service's own encoder and the
secrets the bench gives the server, exactly as a login would have issued them (a login costs an argon2 verify:
minting lets every scenario start from fresh sessions in milliseconds).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sqlite3
import string
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import asyncpg
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.models import Session, User
from app.security import tokens
from app.security.passwords import Argon2Params, build_context, hash_password
from app.security.tokens import SigningKeys
from app.settings import normalize_database_url
from perf import ROOT

BackendName = Literal["sqlite", "postgresql"]

POSTGRES_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
POSTGRES_DATABASE = "refreshd_bench"
BENCH_PASSWORD = "Bench-pass-123"
ACCESS_TTL = timedelta(minutes=15)  # the service's default JWT_EXPIRES_IN
REFRESH_IDLE = timedelta(days=30)  # REFRESH_TOKEN_EXPIRES_IN
SESSION_MAX = timedelta(days=90)  # SESSION_MAX_AGE
ALGORITHM = "HS256"
BULK_CHUNK = 100_000
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime on SQLite


@dataclass(frozen=True)
class Secrets:
    """Two distinct 48-character keys, as production requires."""

    access: str
    refresh: str

    @classmethod
    def generate(cls) -> Secrets:
        return cls(secrets.token_urlsafe(36), secrets.token_urlsafe(36))


@dataclass(frozen=True)
class Backend:
    name: BackendName
    url: str  # as an operator writes DATABASE_URL: sqlite:///path or postgresql://...

    @property
    def label(self) -> str:
        return "SQLite" if self.name == "sqlite" else "PostgreSQL"

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))


@dataclass(frozen=True)
class SessionRef:
    """Enough to mint the tokens of a stored session."""

    user_id: int
    session_id: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class Tokens:
    access: list[str]
    refresh: list[str]


def _engine(backend: Backend) -> AsyncEngine:
    return create_async_engine(normalize_database_url(backend.url))


_DROP = f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)'


async def _on_server(*statements: str) -> None:
    """Statements run on the PostgreSQL server's maintenance database, in order."""
    conn = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _recreate_postgres() -> None:
    await _on_server(_DROP, f'CREATE DATABASE "{POSTGRES_DATABASE}"')


async def drop_postgres() -> None:
    """Drop the bench's PostgreSQL database, whoever is still connected."""
    await _on_server(_DROP)


def create(name: BackendName, workdir: Path) -> Backend:
    """A new, empty database, migrated with ``uv run --frozen alembic upgrade head``."""
    if name == "sqlite":
        path = workdir / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        backend = Backend("sqlite", f"sqlite:///{path}")
    else:
        asyncio.run(_recreate_postgres())
        backend = Backend("postgresql", f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}")
    subprocess.run(
        ["uv", "run", "--frozen", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": backend.url},
        check=True,
        capture_output=True,
    )
    return backend


def username(index: int) -> str:
    return f"bench{index}"


def _document_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(24))


async def _seed_users(backend: Backend, count: int) -> None:
    # One real argon2id hash with the service's default parameters, shared: every login verifies at full cost.
    password_hash = hash_password(build_context(Argon2Params()), BENCH_PASSWORD)
    now = datetime.now(UTC)
    rows = [
        {
            "document_id": _document_id(),
            "username": username(i),
            "email": f"{username(i)}@example.com",
            "provider": "local",
            "password_hash": password_hash,
            "confirmed": True,
            "blocked": False,
            "created_at": now,
            "updated_at": now,
            "published_at": now,
        }
        for i in range(1, count + 1)
    ]
    engine = _engine(backend)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(User), rows)
    finally:
        await engine.dispose()


def seed_users(backend: Backend, count: int) -> None:
    asyncio.run(_seed_users(backend, count))


def _live_values(user_id: int, session_id: str, now: datetime, marker: str) -> dict[str, object]:
    return {
        "id": session_id,
        "user_id": user_id,
        "generation": 1,
        "rotated_at": now,
        "refresh_expires_at": now + REFRESH_IDLE,
        "expires_at": now + SESSION_MAX,
        "created_at": now,
        "last_active_at": now,
        "ip": "127.0.0.1",
        "user_agent": marker,
        "device_name": "Other",
    }


async def _add_sessions(backend: Backend, count: int, users: int, marker: str) -> list[SessionRef]:
    now = datetime.now(UTC)
    rows = [
        _live_values(random.randint(1, users), secrets.token_hex(16), now, marker)
        for _ in range(count)
    ]
    engine = _engine(backend)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Session), rows)
    finally:
        await engine.dispose()
    return [SessionRef(int(str(r["user_id"])), str(r["id"]), now + REFRESH_IDLE) for r in rows]


def add_sessions(backend: Backend, count: int, users: int, marker: str) -> list[SessionRef]:
    """``count`` fresh live sessions (generation 1, as right after a login with a refresh token)."""
    return asyncio.run(_add_sessions(backend, count, users, marker))


def mint(refs: list[SessionRef], keys: Secrets, *, access: SigningKeys | None = None) -> Tokens:
    """The access and refresh tokens the service would have issued for these sessions. Access tokens are signed
    with ``access`` (a server's ES256 or RS256 key set) or, by default, the HS256 secret ``keys.access``; refresh
    tokens are HS256 with ``keys.refresh`` whatever signs access tokens, as the service issues them."""
    now = datetime.now(UTC)
    access_keys = access or SigningKeys.hmac(keys.access, ALGORITHM)
    refresh_keys = SigningKeys.hmac(keys.refresh, ALGORITHM)
    return Tokens(
        access_tokens(refs, access_keys, now=now),
        [
            tokens.encode_refresh_token(
                user_id=r.user_id,
                session_id=r.session_id,
                generation=1,
                issued_at=now,
                expires_at=r.refresh_expires_at,
                keys=refresh_keys,
            )
            for r in refs
        ],
    )


def access_tokens(
    refs: list[SessionRef], keys: SigningKeys, *, now: datetime | None = None, per_session: int = 1
) -> list[str]:
    """Access tokens for these sessions signed with ``keys``: ``per_session`` distinct ones each (issued a second
    apart, so that even an HMAC token differs), the sessions interleaved (the first token of every session, then the
    second...)."""
    now = now or datetime.now(UTC)
    return [
        tokens.encode_access_token(
            user_id=r.user_id,
            session_id=r.session_id,
            issued_at=now - timedelta(seconds=age),
            expires_at=now - timedelta(seconds=age) + ACCESS_TTL,
            keys=keys,
        )
        for age in range(per_session)
        for r in refs
    ]


@dataclass(frozen=True)
class BulkLoad:
    rows: int
    seconds: float
    sample: list[SessionRef]  # every ``sample_every``-th row, to aim load at the whole table


COLUMNS = (
    "id",
    "user_id",
    "generation",
    "rotated_at",
    "refresh_expires_at",
    "expires_at",
    "created_at",
    "last_active_at",
    "revoked_at",
    "revoked_reason",
    "ip",
    "user_agent",
    "device_name",
)


def _bulk_rows(
    count: int, users: int, *, expired: bool, marker: str, now: datetime
) -> Iterator[tuple[str, int, int, datetime, datetime, datetime, datetime, datetime]]:
    """(id, user_id, generation, rotated_at, refresh_expires_at, expires_at, created_at, last_active_at)."""
    rng = random.Random(marker)
    for i in range(count):
        if expired:
            # Logged in ~4 months ago: past its absolute end (and its idle expiry) for weeks.
            created = now - timedelta(days=120, seconds=rng.randint(0, 86_400 * 20))
            rotated = created + timedelta(days=10)
            generation = 3
        else:
            created = now - timedelta(seconds=rng.randint(0, 86_400 * 20))
            rotated = created + timedelta(seconds=i % 3600)
            generation = 1
        yield (
            secrets.token_hex(16),
            rng.randint(1, users),
            generation,
            rotated,
            rotated + REFRESH_IDLE,
            created + SESSION_MAX,
            created,
            rotated,
        )


def bulk_insert(
    backend: Backend,
    count: int,
    users: int,
    *,
    expired: bool,
    marker: str,
    sample_every: int = 0,
) -> BulkLoad:
    """``count`` session rows written directly: COPY on PostgreSQL, executemany in big transactions on SQLite."""
    now = datetime.now(UTC)
    sample: list[SessionRef] = []
    started = time.perf_counter()
    rows = _bulk_rows(count, users, expired=expired, marker=marker, now=now)

    tail = (
        None,
        None,
        "10.0.0.1",
        marker,
        "Other",
    )  # revoked_at, revoked_reason, ip, user_agent, device

    def chunks() -> Iterator[list[tuple[object, ...]]]:
        chunk: list[tuple[object, ...]] = []
        for index, row in enumerate(rows):
            sid, uid, gen, rotated, refresh_exp, exp, created, active = row
            if sample_every and index % sample_every == 0 and gen == 1:
                sample.append(SessionRef(uid, sid, refresh_exp))
            chunk.append((sid, uid, gen, rotated, refresh_exp, exp, created, active, *tail))
            if len(chunk) >= BULK_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    if backend.name == "sqlite":
        _sqlite_bulk(backend.sqlite_path, chunks())
    else:
        asyncio.run(_postgres_bulk(backend.url, chunks()))
    return BulkLoad(count, time.perf_counter() - started, sample)


def _sqlite_stamp(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime(SQLITE_TIME_FORMAT)
    return value


def _sqlite_bulk(path: Path, chunks: Iterator[list[tuple[object, ...]]]) -> None:
    placeholders = ", ".join("?" for _ in COLUMNS)
    statement = f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES ({placeholders})"  # noqa: S608
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        for chunk in chunks:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(statement, [tuple(_sqlite_stamp(v) for v in row) for row in chunk])
            conn.execute("COMMIT")
    finally:
        conn.close()


async def _postgres_bulk(url: str, chunks: Iterator[list[tuple[object, ...]]]) -> None:
    conn = await asyncpg.connect(url)
    try:
        for chunk in chunks:
            await conn.copy_records_to_table("sessions", records=chunk, columns=list(COLUMNS))
        await _settle(conn)
    finally:
        await conn.close()


async def _settle(conn: asyncpg.Connection) -> None:
    """After a million sessions were written or deleted in a minute, not over months: what autovacuum does after
    such a change (its vacuum sets hint bits and the visibility map and reclaims dead rows, its analyze the
    statistics; this machine's PostgreSQL runs with autovacuum off, so without it a purged million stays as dead
    rows under every later scenario), then a checkpoint, so that the next measurement does not include the
    change's own aftermath (pages dirtied by the first reads, then flushed by the next checkpoint). SQLite gets
    none (the service never runs ANALYZE or VACUUM), so each backend is measured as it would be deployed."""
    await conn.execute("VACUUM (ANALYZE) sessions")
    await conn.execute("CHECKPOINT")


async def _settle_backend(backend: Backend) -> None:
    conn = await asyncpg.connect(backend.url)
    try:
        await _settle(conn)
    finally:
        await conn.close()


def settle(backend: Backend) -> None:
    """On PostgreSQL, ``_settle``; nothing on SQLite."""
    if backend.name == "postgresql":
        asyncio.run(_settle_backend(backend))


async def _count(backend: Backend, *, marker: str | None, expired_before: datetime | None) -> int:
    engine = _engine(backend)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).select_from(Session)
            if marker is not None:
                query = query.where(Session.user_agent == marker)
            if expired_before is not None:
                query = query.where(Session.expires_at <= expired_before)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


def count_sessions(
    backend: Backend, *, marker: str | None = None, expired_before: datetime | None = None
) -> int:
    return asyncio.run(_count(backend, marker=marker, expired_before=expired_before))


async def _delete_marked(backend: Backend, marker: str) -> int:
    engine = _engine(backend)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(delete(Session).where(Session.user_agent == marker))
            return int(result.rowcount)
    finally:
        await engine.dispose()


def delete_marked(backend: Backend, marker: str) -> int:
    """Remove a bulk load again, so the next scenario starts from the small table."""
    deleted = asyncio.run(_delete_marked(backend, marker))
    settle(backend)
    return deleted


async def _server_version(backend: Backend) -> str:
    if backend.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    conn = await asyncpg.connect(backend.url)
    try:
        return str(await conn.fetchval("SHOW server_version")).split(" ")[0]
    finally:
        await conn.close()


def server_version(backend: Backend) -> str:
    version = asyncio.run(_server_version(backend))
    return version if backend.name == "sqlite" else f"PostgreSQL {version}"
