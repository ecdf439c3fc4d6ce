"""Housekeeping: delete what can never be used again, in small batches.

Each batch is one DELETE committed on its own, chosen through an index, followed by a pause twice as long as it
took: the purge holds the database's write lock (SQLite) or its I/O (PostgreSQL) only while a statement runs, at
most a third of the time, so live traffic gets its turn between batches instead of waiting behind one long
delete, a run of back-to-back batches, or a transaction kept open across round trips. Inside the server the
pause is a sleep on a busy event loop, which lasts longer: under load the purge slows down and leaves the
requests their time (bench/README.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Delete, Select, delete, or_, select

from app.models import AccountToken, AuditEvent, Session

# Commits one batch on its own and returns the rows it deleted: ``Database.write_alone`` for a job of its own (the
# CLI), the hot path's ``write_alone`` inside the server, beside the requests (on SQLite, between their writes).
Writer = Callable[[Delete], Awaitable[int]]

# Pause after each batch, per second the batch took. Measured on SQLite, refresh under load while 300,000 sessions
# were purged (bench/README.md): 1 (half the time) gave p99 98 ms at 1,285 req/s and 5,467 purged/s; 2 gave
# 80 ms at 1,449 req/s and 3,598/s; 3 gave no better (81 ms) at 2,241/s.
PAUSE_PER_BATCH_TIME = 2.0


def dead_sessions(now: datetime, access_ttl: timedelta) -> list[ColumnElement[bool]]:
    """Revoked, past their absolute end, or idle-expired for longer than an access token can live: one condition
    per index, so that each batch is an index range scan (an OR of the three would scan the table on SQLite,
    or build a bitmap of every dead row per batch on PostgreSQL). Revocation times are never in the future, so
    ``revoked_at <= now`` is "revoked", as a range SQLite's planner takes through the index (it scans the table
    for ``IS NOT NULL``)."""
    return [
        Session.revoked_at <= now,
        Session.expires_at <= now,
        Session.refresh_expires_at <= now - access_ttl,
    ]


PurgedTable = type[Session] | type[AccountToken] | type[AuditEvent]


def batch_ids(table: PurgedTable, condition: ColumnElement[bool], batch_size: int) -> Select[Any]:
    """The ids one batch deletes."""
    return select(table.id).where(condition).limit(batch_size)


async def _delete_in_batches(
    write: Writer,
    table: PurgedTable,
    conditions: Sequence[ColumnElement[bool]],
    *,
    batch_size: int,
    max_batches: int | None = None,
) -> int:
    """Rows matching any of ``conditions``, deleted a condition at a time; ``max_batches`` caps the batches that
    deleted something, over all the conditions."""
    total = 0
    batches = 0
    took = 0.0
    for condition in conditions:
        while max_batches is None or batches < max_batches:
            # Pacing after the previous batch (see the module's docstring); 0 before the first.
            await asyncio.sleep(took * PAUSE_PER_BATCH_TIME)
            started = time.monotonic()
            ids = batch_ids(table, condition, batch_size).scalar_subquery()
            deleted = await write(
                delete(table).where(table.id.in_(ids)).execution_options(synchronize_session=False)
            )
            took = time.monotonic() - started
            total += deleted
            batches += deleted > 0
            if deleted < batch_size:
                break
    return total


async def purge_sessions(
    write: Writer,
    *,
    now: datetime,
    access_ttl: timedelta,
    batch_size: int,
    max_batches: int | None = None,
) -> int:
    """Delete dead sessions batch by batch; returns how many rows went."""
    return await _delete_in_batches(
        write,
        Session,
        dead_sessions(now, access_ttl),
        batch_size=batch_size,
        max_batches=max_batches,
    )


async def purge_codes(write: Writer, *, now: datetime, batch_size: int) -> int:
    """Used or expired one-time codes."""
    # One condition: the table holds only short-lived codes, and a used code is rarely still unexpired.
    condition = or_(AccountToken.used_at.is_not(None), AccountToken.expires_at <= now)
    return await _delete_in_batches(write, AccountToken, [condition], batch_size=batch_size)


async def purge_audit(write: Writer, *, before: datetime, batch_size: int) -> int:
    """Audit events older than the retention."""
    return await _delete_in_batches(
        write, AuditEvent, [AuditEvent.at < before], batch_size=batch_size
    )


@dataclass(frozen=True)
class Purged:
    sessions: int
    codes: int
    audit_events: int


async def purge_all(
    write: Writer,
    *,
    now: datetime,
    access_ttl: timedelta,
    audit_retention: timedelta,
    batch_size: int,
) -> Purged:
    return Purged(
        sessions=await purge_sessions(write, now=now, access_ttl=access_ttl, batch_size=batch_size),
        codes=await purge_codes(write, now=now, batch_size=batch_size),
        audit_events=await purge_audit(write, before=now - audit_retention, batch_size=batch_size),
    )
