"""The store: the only place SQL is written and run.

Statements are SQLAlchemy Core, written once in this package (the rules about a session's state once, in
``predicates``), compiled once per database and run on the driver directly: asyncpg for PostgreSQL, sqlite3 for
SQLite (``postgres``, ``sqlite``). Services use the repositories of a ``Store``:

- on the store itself, each call is one statement committed on its own (or, for a change and its audit row, one
  atomic unit): ``await store.sessions.rotate(query)``;
- inside ``async with store.transaction() as tx:``, every call of ``tx.users``, ``tx.sessions``, ... is part of one
  transaction, committed when the block exits cleanly and rolled back if it raises. The use case (a function in
  ``app.services``) owns that block; nothing else begins or commits.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.sql.dml import UpdateBase

from app.errors import DatabaseUnavailable
from app.settings import Settings
from app.store.audit import AuditTrail
from app.store.codes import Codes
from app.store.database import Conflict, Database, Runner, Values
from app.store.records import AuditRecord, SessionRecord, UserRecord
from app.store.sessions import Sessions
from app.store.tables import ALEMBIC_VERSION
from app.store.users import Users

__all__ = [
    "AuditRecord",
    "Conflict",
    "Repositories",
    "SessionRecord",
    "Store",
    "UserRecord",
    "open_database",
]


class Repositories:
    """The repositories, bound to one way of running statements (alone, or in one transaction)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.users = Users(runner)
        self.sessions = Sessions(runner)
        self.codes = Codes(runner)
        self.audit = AuditTrail(runner)


_SCHEMA_VERSION = select(ALEMBIC_VERSION.c.version_num)


class Store(Repositories):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.database = database

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """Connects lazily: nothing is opened before the first statement."""
        return cls(open_database(settings))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        async with self.database.transaction() as runner:
            yield Repositories(runner)

    async def write_alone(self, statement: UpdateBase, values: Values | None = None) -> int:
        """A housekeeping batch (``app.store.housekeeping``), committed on its own beside the requests."""
        return await self.database.write_alone(statement, values)

    async def schema_version(self) -> str | None:
        """The Alembic revision the database is at; None if it was never migrated (no ``alembic_version`` table,
        or an empty one). A database that cannot be reached raises, as any statement does."""
        try:
            row = await self.database.one(_SCHEMA_VERSION)
        except Exception as exc:
            if _no_such_table(exc):
                return None
            raise
        return None if row is None else str(row["version_num"])

    async def close(self) -> None:
        await self.database.close()


def _no_such_table(exc: Exception) -> bool:
    """SQLite's "no such table" (an OperationalError, which the store reports as unavailable) or PostgreSQL's
    undefined_table (SQLSTATE 42P01)."""
    if isinstance(exc, DatabaseUnavailable):
        return exc.reason.startswith("no such table")
    return getattr(exc, "sqlstate", None) == "42P01"


def open_database(settings: Settings) -> Database:
    if settings.is_sqlite:
        from app.store.sqlite import SqliteDatabase

        return SqliteDatabase(settings)
    from app.store.postgres import PostgresDatabase

    return PostgresDatabase(settings)
