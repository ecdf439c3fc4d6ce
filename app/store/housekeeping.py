"""What the purge deletes, a batch at a time: each pass is one DELETE of at most ``batch`` rows matching one
condition, chosen through an index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Delete, Integer, Table, bindparam, delete, or_, select

from app.db import UTCDateTime
from app.store import predicates
from app.store.tables import AUDIT, CODES, NOW, SESSIONS

BATCH = bindparam("batch", type_=Integer())
# Audit events older than this go.
AUDIT_CUTOFF = bindparam("audit_cutoff", type_=UTCDateTime())


def batch_ids(table: Table, condition: ColumnElement[bool]) -> Any:
    """The ids one batch deletes."""
    return select(table.c.id).where(condition).limit(BATCH)


def _batch(table: Table, condition: ColumnElement[bool]) -> Delete:
    return delete(table).where(table.c.id.in_(batch_ids(table, condition).scalar_subquery()))


@dataclass(frozen=True)
class Pass:
    """One purge pass: a condition, and the batch DELETE that goes through it."""

    condition: ColumnElement[bool]
    statement: Delete


def _passes(table: Table, conditions: list[ColumnElement[bool]]) -> tuple[Pass, ...]:
    return tuple(Pass(condition, _batch(table, condition)) for condition in conditions)


# Dead sessions, a pass per index (``predicates.dead``).
SESSION_PASSES = _passes(SESSIONS, predicates.dead())
# One condition: the table holds only short-lived codes, and a used code is rarely still unexpired.
CODE_PASSES = _passes(CODES, [or_(CODES.c.used_at.is_not(None), CODES.c.expires_at <= NOW)])
AUDIT_PASSES = _passes(AUDIT, [AUDIT.c.at < AUDIT_CUTOFF])
