"""Alembic is the only source of the schema: it goes up, down and up again, and matches the models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.models  # noqa: F401 - registers the tables
from app.db import Base
from app.migrations_info import SCHEMA_HEAD
from tests.support import alembic_config, downgrade, migrate, recreate_postgres_database

TABLES = {"users", "sessions", "account_tokens", "audit_events", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    return recreate_postgres_database("migrations")


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _diff(url: str) -> list[object]:
    def compare(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async def run() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    migrate(empty_database)
    assert _tables(empty_database) == TABLES
    assert _diff(empty_database) == []
    downgrade(empty_database)
    assert _tables(empty_database) <= {"alembic_version"}
    migrate(empty_database)
    assert _tables(empty_database) == TABLES
    assert _diff(empty_database) == []


def test_single_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert script.get_heads() == [SCHEMA_HEAD]  # update app.migrations_info with each new migration
