"""Housekeeping: delete what can never be used again, in small batches.

Each batch is its own short transaction, followed by a pause as long as the batch took: the purge holds the
database's write lock (SQLite) or its I/O (PostgreSQL) at most half the time, so live traffic gets its turn between
batches instead of waiting behind one long delete, or behind a run of back-to-back batches.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select

from app.db import Database
from app.models import AccountToken, AuditEvent, Session


def dead_sessions(now: datetime, access_ttl: timedelta) -> ColumnElement[bool]:
    """Revoked, past their absolute end, or idle-expired for longer than an access token can live."""
    return or_(
        Session.revoked_at.is_not(None),
        Session.expires_at <= now,
        Session.refresh_expires_at <= now - access_ttl,
    )


async def _delete_in_batches(
    db: Database,
    table: type[Session] | type[AccountToken] | type[AuditEvent],
    condition: ColumnElement[bool],
    *,
    batch_size: int,
    max_batches: int | None = None,
) -> int:
    total = 0
    batches = 0
    took = 0.0
    while max_batches is None or batches < max_batches:
        # Pacing after the previous batch (see the module's docstring); 0 before the first.
        await asyncio.sleep(took)
        started = time.monotonic()
        async with db.write() as session:
            ids = select(table.id).where(condition).limit(batch_size).scalar_subquery()
            result = await session.execute(
                delete(table).where(table.id.in_(ids)).execution_options(synchronize_session=False)
            )
        took = time.monotonic() - started
        deleted = int(getattr(result, "rowcount", 0))
        total += deleted
        batches += 1
        if deleted < batch_size:
            break
    return total


async def purge_sessions(
    db: Database,
    *,
    now: datetime,
    access_ttl: timedelta,
    batch_size: int,
    max_batches: int | None = None,
) -> int:
    """Delete dead sessions batch by batch; returns how many rows went."""
    return await _delete_in_batches(
        db,
        Session,
        dead_sessions(now, access_ttl),
        batch_size=batch_size,
        max_batches=max_batches,
    )


async def purge_codes(db: Database, *, now: datetime, batch_size: int) -> int:
    """Used or expired one-time codes."""
    condition = or_(AccountToken.used_at.is_not(None), AccountToken.expires_at <= now)
    return await _delete_in_batches(db, AccountToken, condition, batch_size=batch_size)


async def purge_audit(db: Database, *, before: datetime, batch_size: int) -> int:
    """Audit events older than the retention."""
    return await _delete_in_batches(db, AuditEvent, AuditEvent.at < before, batch_size=batch_size)


@dataclass(frozen=True)
class Purged:
    sessions: int
    codes: int
    audit_events: int


async def purge_all(
    db: Database,
    *,
    now: datetime,
    access_ttl: timedelta,
    audit_retention: timedelta,
    batch_size: int,
) -> Purged:
    return Purged(
        sessions=await purge_sessions(db, now=now, access_ttl=access_ttl, batch_size=batch_size),
        codes=await purge_codes(db, now=now, batch_size=batch_size),
        audit_events=await purge_audit(db, before=now - audit_retention, batch_size=batch_size),
    )
