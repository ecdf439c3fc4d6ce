"""The audit trail: security events, written in the same transaction as the change they record."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditEvent
from app.services.sessions import USER_AGENT_MAX, Client


class Event(StrEnum):
    REGISTERED = "user.registered"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    REFRESHED = "token.refreshed"
    REUSE_DETECTED = "token.reuse_detected"
    LOGGED_OUT = "session.logout"
    SESSION_REVOKED = "session.revoked"
    PASSWORD_CHANGED = "password.changed"  # noqa: S105 - an event name
    PASSWORD_RESET = "password.reset"  # noqa: S105
    EMAIL_CONFIRMED = "email.confirmed"
    USER_BLOCKED = "user.blocked"
    USER_UNBLOCKED = "user.unblocked"
    USER_CREATED = "user.created"
    PASSWORD_SET = "password.set_by_admin"  # noqa: S105


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
            "user_agent": _user_agent(client),
            "details": details or None,
        },
    )


_AUDIT_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]  # declared models map to Tables
_INSERT = insert(_AUDIT_EVENTS)


def _user_agent(client: Client | None) -> str | None:
    if client is None or not client.user_agent:
        return None
    return client.user_agent[:USER_AGENT_MAX]


async def recent(
    session: AsyncSession, *, user_id: int | None = None, limit: int = 50
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    return list((await session.scalars(query)).all())
