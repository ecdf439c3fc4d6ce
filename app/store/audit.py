"""The audit trail: security events, written atomically with the change they record. ``details`` hold reasons
and counts, never secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Insert,
    Integer,
    Select,
    String,
    bindparam,
    insert,
    select,
)

from app.models.audit import Event
from app.store.database import Runner
from app.store.records import AuditRecord
from app.store.tables import AUDIT, NOW

# The audit row of a change, valued from the change's own parameters (``sid``, ``uid``, ``now_``) and these.
AUDIT_VALUES: dict[str, ColumnElement[Any]] = {
    "at": NOW,
    "event": bindparam("event", type_=String()),
    "user_id": bindparam("uid", type_=Integer()),
    "session_id": bindparam("sid", type_=String()),
    "ip": bindparam("ip_", type_=String()),
    "user_agent": bindparam("ua", type_=String()),
    "details": bindparam("details", type_=JSON()),
}
AUDIT_INSERT: Insert = insert(AUDIT).values(**AUDIT_VALUES)


def audit_values(
    event: Event,
    *,
    now: datetime,
    user_id: int | None = None,
    session_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "now_": now,
        "event": event.value,
        "uid": user_id,
        "sid": session_id,
        "ip_": ip,
        "ua": user_agent,
        "details": details or None,
    }


_RECENT = select(AUDIT).order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc()).limit(bindparam("limit"))
_RECENT_OF_USER = (
    select(AUDIT)
    .where(AUDIT.c.user_id == bindparam("uid"))
    .order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc())
    .limit(bindparam("limit"))
)


class AuditTrail:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def record(
        self,
        event: Event,
        *,
        now: datetime,
        user_id: int | None = None,
        session_id: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        **details: Any,
    ) -> None:
        values = audit_values(
            event,
            now=now,
            user_id=user_id,
            session_id=session_id,
            ip=ip,
            user_agent=user_agent,
            details=details,
        )
        await self._runner.run(AUDIT_INSERT, values)

    async def recent(self, *, user_id: int | None = None, limit: int = 50) -> list[AuditRecord]:
        statement: Select[Any] = _RECENT if user_id is None else _RECENT_OF_USER
        rows = await self._runner.all(statement, {"uid": user_id, "limit": limit})
        return [AuditRecord(**row) for row in rows]
