"""Rows as the store hands them out: frozen records built from a row by column name (``Record(**row)``), so a
column added to a query or moved in it can never shift a value into the wrong field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    document_id: str
    username: str
    email: str
    provider: str
    password_hash: str | None
    confirmed: bool
    blocked: bool
    created_at: datetime
    updated_at: datetime
    published_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    user_id: int
    generation: int
    rotated_at: datetime | None
    previous_rotated_at: datetime | None
    earlier_rotated_at: datetime | None
    burst_generation: int
    grace_floor: int
    refresh_expires_at: datetime | None
    expires_at: datetime
    created_at: datetime
    last_active_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    device_name: str | None
    user_agent: str | None
    ip: str | None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    event: str
    user_id: int | None
    session_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any] | None
