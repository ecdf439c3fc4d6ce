"""What the store asks of a database: run a compiled statement, alone or inside a transaction.

Two implementations, one per database, each on its driver directly (``app.store.postgres``, ``app.store.sqlite``).
Both translate the driver's failures the same way: an outage (server gone, SQLite locked past the busy timeout)
is ``DatabaseUnavailable`` (503, nothing half-written), a unique index refusing a row is ``Conflict``, anything
else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy import Insert, Update
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase

from app.store.compiled import Row

Values = Mapping[str, Any]


class Conflict(Exception):
    """A unique index refused the row (two registrations racing for one name, say)."""


class Runner(Protocol):
    """Runs statements: on its own (each statement its own transaction) or inside the caller's transaction."""

    async def one(self, statement: ClauseElement, values: Values | None = None) -> Row | None:
        """The first row (a SELECT, or a write's RETURNING), or None."""

    async def all(self, statement: ClauseElement, values: Values | None = None) -> list[Row]:
        """Every row."""

    async def run(self, statement: ClauseElement, values: Values | None = None) -> int:
        """A write without RETURNING; how many rows it changed."""

    async def audited(self, change: Update | Insert, values: Values) -> Row | None:
        """``change`` (an UPDATE or INSERT ... RETURNING one row) and, if it wrote the row, the audit row its
        values describe (``app.store.audit.AUDIT_VALUES``), atomically; the row it returned, or None."""


class Database(Runner, Protocol):
    is_sqlite: bool

    def prepare(self, statement: ClauseElement, *, audited: bool = False) -> None:
        """Compile ``statement`` now (``audited``: as ``audited()`` will run it), not at its first use."""

    def transaction(self) -> AbstractAsyncContextManager[Runner]:
        """A transaction for a use case of several statements: committed when the block exits cleanly, rolled
        back otherwise. Keep the block to the statements: no network calls, no password hashing inside."""

    async def write_alone(self, statement: UpdateBase, values: Values | None = None) -> int:
        """A housekeeping batch, committed on its own beside the requests; how many rows it changed."""

    async def close(self) -> None: ...
