"""Housekeeping: delete sessions that can never be used again, in small batches.

Each batch is its own short transaction, so live traffic (on SQLite, other writers) gets its turn between
batches instead of waiting behind one long delete.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select

from app.db import Database
from app.models import Session


def dead_sessions(now: datetime, access_ttl: timedelta) -> ColumnElement[bool]:
    """Revoked, past their absolute end, or idle-expired for longer than an access token can live."""
    return or_(
        Session.revoked_at.is_not(None),
        Session.expires_at <= now,
        Session.refresh_expires_at <= now - access_ttl,
    )


async def purge_sessions(
    db: Database,
    *,
    now: datetime,
    access_ttl: timedelta,
    batch_size: int,
    max_batches: int | None = None,
) -> int:
    """Delete dead sessions batch by batch; returns how many rows went."""
    condition = dead_sessions(now, access_ttl)
    total = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        async with db.write() as session:
            ids = select(Session.id).where(condition).limit(batch_size).scalar_subquery()
            result = await session.execute(
                delete(Session)
                .where(Session.id.in_(ids))
                .execution_options(synchronize_session=False)
            )
        deleted = int(getattr(result, "rowcount", 0))
        total += deleted
        batches += 1
        if deleted < batch_size:
            break
    return total
