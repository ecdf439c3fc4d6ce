"""Sessions: one row per login, every state change one conditional statement on it.

A refresh token is not stored: it names its session and generation. The row keeps the current generation, when
the last three generations were issued (for the reuse grace), its expiries and its revocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    bindparam,
    case,
    func,
    insert,
    select,
    update,
)

from app.db import UTCDateTime
from app.models.audit import Event
from app.store.database import Runner
from app.store.predicates import (
    IN_REUSE_GRACE,
    PRESENTED,
    SESSION_LISTED,
    SESSION_LIVE,
    SESSION_REFRESHABLE,
)
from app.store.records import SessionRecord
from app.store.tables import GRACE_START, NOW, SESSIONS, USERS

S = SESSIONS.c
SID = bindparam("sid", type_=String())
UID = bindparam("uid", type_=Integer())
_CANDIDATE = bindparam("candidate", type_=UTCDateTime())  # now + REFRESH_TOKEN_EXPIRES_IN
THIS_SESSION = (S.id == SID) & (S.user_id == UID)

# The next generation, as SET clauses: refresh_expires_at = min(now + idle, expires_at), so the idle expiry slides
# and the absolute one never moves; the issue times shift along (SET reads the row as it was), so the row knows
# when its last three generations were issued; a rotation more than the grace after the previous one starts a new
# burst.
NEXT_GENERATION: dict[str, ColumnElement[Any]] = {
    "generation": S.generation + 1,
    "rotated_at": NOW,
    "previous_rotated_at": S.rotated_at,
    "earlier_rotated_at": S.previous_rotated_at,
    "burst_generation": case(
        (S.rotated_at > GRACE_START, S.burst_generation), else_=S.generation + 1
    ),
    "refresh_expires_at": case((S.expires_at < _CANDIDATE, S.expires_at), else_=_CANDIDATE),
    "last_active_at": NOW,
}
_AT_PRESENTED_GENERATION = THIS_SESSION & (S.generation == PRESENTED) & SESSION_REFRESHABLE
_ROTATE = (
    update(SESSIONS)
    .where(_AT_PRESENTED_GENERATION)
    .values(**NEXT_GENERATION, ip=bindparam("ip_"))
    .returning(S.generation, S.refresh_expires_at)
)
_TOUCH = (
    update(SESSIONS)
    .where(_AT_PRESENTED_GENERATION)
    .values(last_active_at=NOW, ip=bindparam("ip_"))
    .returning(S.generation)
)
# After a password change: the session that asked gets the next generation, and every earlier one loses its grace.
_ROTATE_CURRENT = (
    update(SESSIONS)
    .where(THIS_SESSION, S.generation > 0, SESSION_LIVE)
    .values(**NEXT_GENERATION, grace_floor=S.generation + 1)
    .returning(S.generation, S.refresh_expires_at)
)
# A login's session, started only if the account still has the hash that was verified and is not blocked, so a
# password change, reset or block that lands while the hash was being checked wins (PostgreSQL locks the account
# row for it; SQLite's writes are serialized anyway).
_SESSION_VALUES: dict[str, ColumnElement[Any]] = {
    "id": SID,
    "user_id": USERS.c.id,
    "generation": bindparam("generation", type_=Integer()),
    "rotated_at": bindparam("rotated_at", type_=UTCDateTime()),
    "refresh_expires_at": bindparam("refresh_expires_at", type_=UTCDateTime()),
    "expires_at": bindparam("expires_at", type_=UTCDateTime()),
    "created_at": NOW,
    "last_active_at": NOW,
    "ip": bindparam("ip_", type_=String()),
    "user_agent": bindparam("ua", type_=String()),
    "device_name": bindparam("device", type_=String()),
    "device_id": bindparam("device_id", type_=String()),
}
_START = (
    insert(SESSIONS)
    .from_select(
        list(_SESSION_VALUES),
        select(*_SESSION_VALUES.values())
        .where(
            USERS.c.id == UID,
            USERS.c.password_hash == bindparam("verified"),
            USERS.c.blocked.is_(False),
        )
        .with_for_update(),
    )
    .returning(S.id)
)
# The row a refresh that missed is judged on, locked until the verdict commits, with the rules' own answers.
_VERDICT = (
    select(
        SESSIONS,
        USERS.c.blocked,
        IN_REUSE_GRACE.label("in_grace"),
    )
    .join(USERS, USERS.c.id == S.user_id)
    .where(THIS_SESSION)
    .with_for_update(of=SESSIONS)
)
_NAMED = select(SESSIONS, SESSION_LIVE.label("live"), IN_REUSE_GRACE.label("in_grace")).where(
    THIS_SESSION
)
_NOT_REVOKED = S.revoked_at.is_(None)
_REVOKE_VALUES = {"revoked_at": NOW, "revoked_reason": bindparam("reason", type_=String())}
_REVOKE_ONE = update(SESSIONS).where(S.id == SID, _NOT_REVOKED).values(**_REVOKE_VALUES)
_REVOKE_ONE_OF_USER = update(SESSIONS).where(THIS_SESSION, _NOT_REVOKED).values(**_REVOKE_VALUES)
_REVOKE_ALL = update(SESSIONS).where(S.user_id == UID, _NOT_REVOKED).values(**_REVOKE_VALUES)
_REVOKE_DEVICE = (
    update(SESSIONS)
    .where(S.user_id == UID, S.device_id == bindparam("device_id"), _NOT_REVOKED)
    .values(**_REVOKE_VALUES)
)
_REVOKE_OTHERS = (
    update(SESSIONS)
    .where(S.user_id == UID, S.id != bindparam("keep"), _NOT_REVOKED)
    .values(**_REVOKE_VALUES)
)
_LISTED = select(SESSIONS).where(S.user_id == UID, SESSION_LISTED)
_COUNT_LISTED = select(func.count().label("count")).where(S.user_id == UID, SESSION_LISTED)
_ALL_OF_USER = (
    select(SESSIONS, SESSION_LISTED.label("listed"))
    .where(S.user_id == UID)
    .order_by(S.last_active_at.desc())
)
_LISTED_OF_USER = _ALL_OF_USER.where(SESSION_LISTED)
_NEW_ACCESS_EXPIRY = bindparam("access_expiry", type_=UTCDateTime())
_EXTEND_ACCESS_ONLY = (
    update(SESSIONS)
    .where(S.id == SID, S.generation == 0, S.expires_at < _NEW_ACCESS_EXPIRY)
    .values(expires_at=_NEW_ACCESS_EXPIRY, last_active_at=NOW)
)


@dataclass(frozen=True, slots=True)
class RefreshQuery:
    """A refresh's parameters, and what its audit row records."""

    session_id: str
    user_id: int
    generation: int
    now: datetime
    candidate_expiry: datetime  # now + REFRESH_TOKEN_EXPIRES_IN
    grace_start: datetime  # now - REFRESH_TOKEN_REUSE_GRACE
    ip: str | None
    user_agent: str | None

    def values(self, *, rotated: bool) -> dict[str, Any]:
        return {
            "sid": self.session_id,
            "uid": self.user_id,
            "gen": self.generation,
            "now_": self.now,
            "candidate": self.candidate_expiry,
            "grace_start": self.grace_start,
            "ip_": self.ip,
            "ua": self.user_agent,
            "event": Event.REFRESHED.value,
            "details": {"rotated": rotated},
        }


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session row to start, and what a login's audit row records."""

    session_id: str
    user_id: int
    verified_hash: str  # the hash the password was checked against: the account must still have it
    generation: int
    now: datetime
    expires_at: datetime
    refresh_expires_at: datetime | None
    ip: str | None
    user_agent: str | None
    device_name: str | None
    # The client's own name for its device (Strapi core's ``deviceId``).
    device_id: str | None = None

    def values(self) -> dict[str, Any]:
        with_refresh = self.refresh_expires_at is not None
        return {
            "sid": self.session_id,
            "uid": self.user_id,
            "verified": self.verified_hash,
            "generation": self.generation,
            "now_": self.now,
            "rotated_at": self.now if with_refresh else None,
            "refresh_expires_at": self.refresh_expires_at,
            "expires_at": self.expires_at,
            "ip_": self.ip,
            "ua": self.user_agent,
            "device": self.device_name,
            "device_id": self.device_id,
            "event": Event.LOGIN_SUCCEEDED.value,
            "details": {"refresh_token": with_refresh},
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """A session row as a refresh that missed is judged on."""

    row: SessionRecord
    user_blocked: bool
    in_grace: bool


@dataclass(frozen=True, slots=True)
class NamedSession:
    """The session a credential names, with what the rules say of it."""

    row: SessionRecord
    live: bool
    in_grace: bool  # of the generation the credential named


@dataclass(frozen=True, slots=True)
class SessionState:
    row: SessionRecord
    listed: bool


class Sessions:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def rotate(self, query: RefreshQuery) -> tuple[int, datetime] | None:
        """Move a refreshable session at the presented generation to the next one, audited; the new generation
        and its idle expiry, or None (nothing written)."""
        row = await self._runner.audited(_ROTATE, query.values(rotated=True))
        return None if row is None else (row["generation"], row["refresh_expires_at"])

    async def touch(self, query: RefreshQuery) -> bool:
        """Rotation off: mark a refreshable session at the presented generation active, audited."""
        return await self._runner.audited(_TOUCH, query.values(rotated=False)) is not None

    async def start(self, new: NewSession, *, audited: bool = True) -> bool:
        """Insert a session (audited as a login) if the account still has the verified hash and is not blocked;
        False (nothing written) otherwise."""
        values = new.values()
        if audited:
            return await self._runner.audited(_START, values) is not None
        return await self._runner.one(_START, values) is not None

    async def for_verdict(
        self,
        session_id: str,
        user_id: int,
        generation: int,
        *,
        now: datetime,
        grace_start: datetime,
    ) -> Verdict | None:
        """The session row locked until the caller's transaction ends (PostgreSQL; SQLite's writers are
        serialized), whether its user is blocked, and whether ``generation`` is in its reuse grace."""
        values = {
            "sid": session_id,
            "uid": user_id,
            "gen": generation,
            "now_": now,
            "grace_start": grace_start,
        }
        row = await self._runner.one(_VERDICT, values)
        if row is None:
            return None
        blocked, in_grace = bool(row.pop("blocked")), bool(row.pop("in_grace"))
        return Verdict(SessionRecord(**row), blocked, in_grace)

    async def named(
        self,
        session_id: str,
        user_id: int,
        generation: int | None,
        *,
        now: datetime,
        grace_start: datetime,
    ) -> NamedSession | None:
        values = {
            "sid": session_id,
            "uid": user_id,
            "gen": -1 if generation is None else generation,
            "now_": now,
            "grace_start": grace_start,
        }
        row = await self._runner.one(_NAMED, values)
        if row is None:
            return None
        live, in_grace = bool(row.pop("live")), bool(row.pop("in_grace"))
        return NamedSession(SessionRecord(**row), live, in_grace)

    async def revoke(
        self, session_id: str, *, reason: str, now: datetime, user_id: int | None = None
    ) -> bool:
        """Revoke one session (of ``user_id``, if given) unless it already is; whether it was."""
        values = {"sid": session_id, "uid": user_id, "reason": reason, "now_": now}
        statement = _REVOKE_ONE if user_id is None else _REVOKE_ONE_OF_USER
        return bool(await self._runner.run(statement, values))

    async def revoke_all(
        self, user_id: int, *, reason: str, now: datetime, keep: str | None = None
    ) -> int:
        """Revoke every session of a user not yet revoked, except ``keep``; how many."""
        values = {"uid": user_id, "keep": keep, "reason": reason, "now_": now}
        return await self._runner.run(_REVOKE_ALL if keep is None else _REVOKE_OTHERS, values)

    async def revoke_device(
        self, user_id: int, device_id: str, *, reason: str, now: datetime
    ) -> int:
        """Revoke every session of a user that its client started under ``device_id``; how many."""
        values = {"uid": user_id, "device_id": device_id, "reason": reason, "now_": now}
        return await self._runner.run(_REVOKE_DEVICE, values)

    async def listed(
        self, user_id: int, *, now: datetime, access_cutoff: datetime
    ) -> list[SessionRecord]:
        values = {"uid": user_id, "now_": now, "access_cutoff": access_cutoff}
        return [SessionRecord(**row) for row in await self._runner.all(_LISTED, values)]

    async def count_listed(self, user_id: int, *, now: datetime, access_cutoff: datetime) -> int:
        values = {"uid": user_id, "now_": now, "access_cutoff": access_cutoff}
        row = await self._runner.one(_COUNT_LISTED, values)
        return int(row["count"]) if row else 0

    async def of_user(
        self, user_id: int, *, now: datetime, access_cutoff: datetime, only_listed: bool
    ) -> list[SessionState]:
        """A user's sessions, most recently active first, each with whether it is listed."""
        values = {"uid": user_id, "now_": now, "access_cutoff": access_cutoff}
        statement = _LISTED_OF_USER if only_listed else _ALL_OF_USER
        states = []
        for row in await self._runner.all(statement, values):
            listed = bool(row.pop("listed"))
            states.append(SessionState(SessionRecord(**row), listed))
        return states

    async def rotate_current(
        self,
        session_id: str,
        user_id: int,
        *,
        now: datetime,
        candidate_expiry: datetime,
        grace_start: datetime,
    ) -> tuple[int, datetime] | None:
        """After a password change: the next generation for the session that asked, if it has refresh tokens;
        every earlier generation loses its reuse grace."""
        values = {
            "sid": session_id,
            "uid": user_id,
            "now_": now,
            "candidate": candidate_expiry,
            "grace_start": grace_start,
        }
        row = await self._runner.one(_ROTATE_CURRENT, values)
        return None if row is None else (row["generation"], row["refresh_expires_at"])

    async def extend_access_only(
        self, session_id: str, *, now: datetime, access_expiry: datetime
    ) -> None:
        """A session without refresh tokens lives as long as its newest access token."""
        values = {"sid": session_id, "now_": now, "access_expiry": access_expiry}
        await self._runner.run(_EXTEND_ACCESS_ONLY, values)
