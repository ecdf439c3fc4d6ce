"""Every statement of the store, compiled when the process starts.

So that no request pays for a compilation, and so that what compiling builds (tens of thousands of objects) exists
before the app freezes its start-up objects out of the garbage collector's reach (``app.main``): compiled lazily,
they stayed in every full collection's scan, a few per cent of /users/me's CPU on SQLite
(bench/results/ab.md, "One store")."""

from __future__ import annotations

from types import ModuleType

from sqlalchemy import Insert, Select, Update
from sqlalchemy.sql.dml import UpdateBase

from app.store import audit, codes, housekeeping, sessions, tables, users
from app.store.database import Database

_MODULES: tuple[ModuleType, ...] = (users, sessions, codes, audit, tables)
# The changes that run with their audit row (``Runner.audited``).
AUDITED: tuple[Update | Insert, ...] = (sessions._ROTATE, sessions._TOUCH, sessions._START)


def warm(database: Database) -> int:
    """Compile the store's statements for ``database``; how many."""
    statements = [
        value
        for module in _MODULES
        for value in vars(module).values()
        if isinstance(value, Select | UpdateBase)
    ]
    statements += [each.statement for each in housekeeping.SESSION_PASSES]
    statements += [each.statement for each in housekeeping.CODE_PASSES + housekeeping.AUDIT_PASSES]
    for statement in statements:
        database.prepare(statement)
    for change in AUDITED:
        database.prepare(change, audited=True)
    return len(statements) + len(AUDITED)
