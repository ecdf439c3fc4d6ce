"""One-time codes (password reset, email confirmation): only a keyed hash of each is stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, bindparam, delete, insert, select, update

from app.db import UTCDateTime
from app.store.database import Runner
from app.store.tables import CODES, NOW

C = CODES.c
_PURPOSE = bindparam("purpose", type_=String())
_USABLE = (
    (C.token_hash == bindparam("hash"))
    & (C.purpose == _PURPOSE)
    & C.used_at.is_(None)
    & (C.expires_at > NOW)
)
_RETIRE_UNUSED = delete(CODES).where(
    C.user_id == bindparam("uid"), C.purpose == _PURPOSE, C.used_at.is_(None)
)
_ISSUE = insert(CODES).values(
    user_id=bindparam("uid", type_=Integer()),
    purpose=_PURPOSE,
    token_hash=bindparam("hash", type_=String()),
    created_at=NOW,
    expires_at=bindparam("expires_at", type_=UTCDateTime()),
)
_VALID = select(C.id).where(_USABLE)
_CONSUME = update(CODES).where(_USABLE).values(used_at=NOW).returning(C.user_id)


class Codes:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def issue(
        self, user_id: int, purpose: str, code_hash: str, *, now: datetime, expires_at: datetime
    ) -> None:
        """Store a new code's hash; any earlier unused code of the same purpose stops working. Two statements:
        call inside a transaction."""
        await self._runner.run(_RETIRE_UNUSED, {"uid": user_id, "purpose": purpose})
        values = {
            "uid": user_id,
            "purpose": purpose,
            "hash": code_hash,
            "now_": now,
            "expires_at": expires_at,
        }
        await self._runner.run(_ISSUE, values)

    async def usable(self, code_hash: str, purpose: str, *, now: datetime) -> bool:
        values = {"hash": code_hash, "purpose": purpose, "now_": now}
        return await self._runner.one(_VALID, values) is not None

    async def consume(self, code_hash: str, purpose: str, *, now: datetime) -> int | None:
        """The user a usable code belongs to, marking it used (one conditional UPDATE); None otherwise."""
        values = {"hash": code_hash, "purpose": purpose, "now_": now}
        row = await self._runner.one(_CONSUME, values)
        return None if row is None else int(row["user_id"])
