from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class AuditEvent(Base):
    """A security event, written in the same transaction as what it records. No secrets, ever: ids, addresses
    and reasons only."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(Integer)  # kept after the user is deleted
    session_id: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_user_id_at", "user_id", "at"),
    )


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
    USER_DELETED = "user.deleted"
    PASSWORD_SET = "password.set_by_admin"  # noqa: S105
