"""Test helpers shared across the suite: databases, a controllable clock, the app over HTTP."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# A real database written by Strapi 5.54.0 (its README says how it was made, and the users' passwords).
STRAPI_FIXTURE = ROOT / "tests" / "fixtures" / "strapi-5.54.0.sqlite"
# The server of the machine (trust auth); tests make and own a database of their own in it.
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ACCESS_SECRET = "test-access-secret-" + "a" * 40
REFRESH_SECRET = "test-refresh-secret-" + "b" * 40
T0 = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)


@dataclass
class FakeClock:
    """The app's clock in tests: time moves only when a test says so."""

    now: datetime = field(default=T0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def postgres_url(database: str) -> str:
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}".replace("postgresql://", "postgresql+asyncpg://", 1)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# Several test runs may share one server (a developer's and a helper's): each names its databases apart.
DATABASE_PREFIX = os.environ.get("TEST_DATABASE_PREFIX", "refreshd")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _recreate_database(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def recreate_postgres_database(suffix: str) -> str:
    """Drop and create ``<prefix>_<suffix>``; returns its URL."""
    name = f"{DATABASE_PREFIX}_{suffix}"
    asyncio.run(_recreate_database(name))
    return postgres_url(name)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "jwt_secret": ACCESS_SECRET,
        "refresh_jwt_secret": REFRESH_SECRET,
        "hash_workers": 2,
        # Measuring the padding floor costs a few hashes per app; the padding has tests of its own.
        "login_failure_floor_ms": 0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def insert_user(database_url: str, **fields: Any) -> None:
    """Write a user row directly, as an importer or an administrator would."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.models import User

    values: dict[str, Any] = {
        "provider": "local",
        "confirmed": True,
        "blocked": False,
        "created_at": T0,
        "updated_at": T0,
        "published_at": T0,
    }
    values.update(fields)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(User).values(**values))
    finally:
        await engine.dispose()
