"""The audit trail: security events, written in the same transaction as the change they record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditEvent
from app.models.audit import Event
from app.services.client import Client

__all__ = ["Event", "recent", "record"]


async def record(
    session: AsyncSession,
    event: Event,
    *,
    now: datetime,
    user_id: int | None = None,
    session_id: str | None = None,
    client: Client | None = None,
    **details: Any,
) -> None:
    """Add an event to the caller's transaction. ``details`` hold reasons and counts, never secrets.

    A prepared Core insert: no ORM unit of work and no statement building for a row nobody reads back (it runs
    on every refresh)."""
    await session.execute(
        _INSERT,
        {
            "at": now,
            "event": event.value,
            "user_id": user_id,
            "session_id": session_id,
            "ip": client.ip if client else None,
            "user_agent": client.short_user_agent if client else None,
            "details": details or None,
        },
    )


_AUDIT_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]  # declared models map to Tables
_INSERT = insert(_AUDIT_EVENTS)


async def recent(
    session: AsyncSession, *, user_id: int | None = None, limit: int = 50
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    return list((await session.scalars(query)).all())
