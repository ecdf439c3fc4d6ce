"""Engine, sessions and transactions.

SQLite and PostgreSQL behave the same from the services' point of view:
- every request runs at most one write transaction, committed by the route before its response leaves;
- on SQLite, write transactions start with ``BEGIN IMMEDIATE`` and queue on an in-process lock, so concurrent
  writers wait their turn instead of failing with ``database is locked`` (a deferred transaction that reads,
  then writes, cannot be retried by SQLite's busy handler once another writer committed);
- reads never wait for writers (WAL mode).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Executable, MetaData, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from app.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone: re-attach it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_engine(settings: Settings, *, autocommit: bool = False) -> AsyncEngine:
    """The engine; ``autocommit`` for the read pool, whose connections never hold a transaction (so nothing
    needs resetting when they go back to the pool: no ROLLBACK round trip per request)."""
    url = settings.database_url
    options: dict[str, Any] = {}
    if autocommit:
        options = {
            "isolation_level": "AUTOCOMMIT",
            "pool_reset_on_return": None,
            "skip_autocommit_rollback": True,
        }
    if settings.is_sqlite:
        engine = create_async_engine(url, pool_size=4, max_overflow=0, pool_timeout=30, **options)
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms, transactions=not autocommit)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=10,
        pool_recycle=1800,
        # Fail fast instead of hanging when the server is gone or stuck: a request then gets a 503.
        connect_args={"timeout": 5, "command_timeout": 15},
        **options,
    )


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int, *, transactions: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    if not transactions:
        return  # the read pool: each statement is its own snapshot, no BEGIN/ROLLBACK round trips

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Owns the engine; hands out read and write transactions."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        # Single statements, each its own transaction: reads (autocommit spares each one a BEGIN and a ROLLBACK
        # round trip) and the batches of housekeeping jobs (see ``write_alone``).
        self.autocommit_engine = create_engine(settings, autocommit=True)
        self.is_sqlite = settings.is_sqlite
        self._reader = async_sessionmaker(
            self.autocommit_engine, expire_on_commit=False, autoflush=False
        )
        writer_bind = (
            self.engine.execution_options(sqlite_immediate=True) if self.is_sqlite else self.engine
        )
        self._writer = async_sessionmaker(writer_bind, expire_on_commit=False, autoflush=False)
        # One writer at a time per process on SQLite; PostgreSQL needs no such gate.
        self.write_gate: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Reads in autocommit mode: each statement sees the latest committed state. Never write here."""
        async with self._reader() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed when the block exits cleanly, rolled back otherwise."""
        gate = self.write_gate or contextlib.nullcontext()
        async with gate, self._writer() as session, session.begin():
            yield session

    async def write_alone(self, statement: Executable) -> int:
        """One write statement committed on its own; how many rows it changed. The database's write lock (SQLite)
        is held only while the statement runs inside the database, never across the round trips of a BEGIN ...
        COMMIT. For batch jobs that must give live traffic its turn between batches."""
        gate = self.write_gate or contextlib.nullcontext()
        async with gate, self.autocommit_engine.connect() as connection:
            result = await connection.execute(statement)
            return int(getattr(result, "rowcount", 0))

    async def dispose(self) -> None:
        await self.autocommit_engine.dispose()
        await self.engine.dispose()


def utc_ms(value: datetime) -> datetime:
    """Truncate to milliseconds, the precision clients see (``2026-11-27T23:38:04.597Z``)."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
